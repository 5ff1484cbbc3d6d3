from __future__ import annotations

import logging
from typing import Any

import pytest
from discord import app_commands

from bot import errors
from bot.checks import NotAdmin
from bot.errors import UserFacingError, describe_error
from tests.support.fakes import FakeInteraction


class FakeCommand:
    name = "sentiment"
    qualified_name = "sentiment"


class FakeUser:
    id = 42


def invoke_error(exc: Exception) -> app_commands.CommandInvokeError:
    return app_commands.CommandInvokeError(FakeCommand(), exc)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (app_commands.CommandOnCooldown(app_commands.Cooldown(1, 5), 3.2), "try again in 4 s"),
        (app_commands.NoPrivateMessage(), "only works in a server"),
        (
            app_commands.MissingPermissions(["manage_messages"]),
            "You need the manage messages permission",
        ),
        (
            app_commands.BotMissingPermissions(["attach_files"]),
            "I need the attach files permission",
        ),
        (NotAdmin("Only server administrators can do that."), "Only server administrators"),
        (app_commands.CheckFailure(), "You can't use this command here."),
        (invoke_error(UserFacingError("That file is empty.")), "That file is empty."),
    ],
)
def test_expected_errors_become_sentences(error: Exception, expected: str) -> None:
    text, unexpected = describe_error(error)
    assert expected in text
    assert not unexpected


def test_model_errors_show_their_sentence() -> None:
    model_errors = pytest.importorskip("models.errors")
    text, unexpected = describe_error(invoke_error(model_errors.ModelError("The model is busy.")))
    assert (text, unexpected) == ("The model is busy.", False)


def test_unexpected_errors_are_flagged() -> None:
    assert describe_error(invoke_error(ZeroDivisionError("boom")))[1] is True


async def test_unexpected_error_is_logged_with_an_id_the_user_sees(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inter: Any = FakeInteraction()
    inter.command = FakeCommand()
    inter.user = FakeUser()
    inter.guild_id = 7
    with caplog.at_level(logging.ERROR, logger="bot.errors"):
        await errors.report_error(inter, invoke_error(RuntimeError("secret internals")))
    ((name, kwargs),) = inter.rec.calls
    assert name == "response.send_message" and kwargs["ephemeral"] is True
    assert "secret internals" not in kwargs["content"]
    assert "Traceback" not in kwargs["content"]
    error_id = kwargs["content"].split("`")[1]
    record = caplog.records[-1]
    assert error_id in record.getMessage()
    assert record.exc_info is not None  # the traceback goes to the log
