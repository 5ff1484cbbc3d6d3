"""bench/soak.py: the rules its metrics follow, then a bounded soak held to issue 10's targets.

The bounded soak runs ``python bench/soak.py --json`` as the lead would (20 s, 8 users: the
real bot in its own process, a fine-tune job, a SIGKILL and a restart), once per module; each
target is its own test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from bench.soak_record import (
    ContextOp,
    Sent,
    error_records,
    exception_line,
    foreign_refs,
    is_eligible,
    lost_contexts,
    nearest_rank,
)
from bot.sim import DiscordEmulator
from tests.support import hostile_inputs as hostile

REPO_ROOT = Path(__file__).resolve().parents[2]
SOAK_ARGS = ("--seconds", "20", "--users", "8", "--seed", "3", "--kill-wait", "60")

# ----------------------------------------------------------------------- the metric rules


def sent(run: int | None, created: float, acked: float | None) -> Sent:
    inter: Any = SimpleNamespace(created_at=created, acknowledged_at=acked)
    return Sent(inter, "test", run)


def test_an_interaction_is_measured_unless_the_kill_cut_it_off() -> None:
    kill = 100.0
    assert is_eligible(sent(1, 96.0, None), kill)  # the killed bot had its 3 s
    assert is_eligible(sent(1, 98.0, 98.5), kill)  # acknowledged before it died
    assert not is_eligible(sent(1, 98.0, None), kill)  # killed 2 s after it arrived
    assert is_eligible(sent(2, 105.0, None), kill)  # the restarted bot: always measured
    assert not is_eligible(sent(None, 99.0, None), kill)  # no bot was up
    assert is_eligible(sent(1, 99.0, None), None)  # no kill (yet)


def op(kind: str, channel: int, marker: str | None) -> ContextOp:
    return ContextOp(kind, channel, marker, inter=None)  # type: ignore[arg-type]


def test_a_context_confirmed_before_the_kill_must_be_there_after_it() -> None:
    kept, gone, replaced = op("set", 1, "m1"), op("set", 2, "m2"), op("append", 3, "m3")
    states = {id(kept): "confirmed", id(gone): "confirmed", id(replaced): "confirmed"}
    contexts = {1: "m1 Paris", 3: "m0 older text only"}
    checked, lost = lost_contexts([kept, gone, replaced], states, contexts)
    assert checked == 3
    assert lost == [
        "channel 2: /context set confirmed, then no context",
        "channel 3: /context append confirmed, then a context without m3",
    ]


def test_a_write_pending_at_the_kill_may_have_replaced_the_confirmed_one() -> None:
    first, cleared = op("set", 1, "m1"), op("clear", 1, None)
    second, replacing = op("set", 2, "m2"), op("upload", 2, "m3")
    refused, third = op("set", 3, "m4"), op("set", 3, "m5")
    states = {
        id(first): "confirmed",
        id(cleared): "pending",  # sent, unanswered at the kill: it may have cleared it
        id(second): "confirmed",
        id(replacing): "pending",
        id(refused): "confirmed",
        id(third): "answered",  # refused before the kill: it cannot explain a change
    }
    contexts = {2: "m3 from the file", 3: "m5 written anyway"}
    checked, lost = lost_contexts(
        [first, cleared, second, replacing, refused, third], states, contexts
    )
    assert checked == 3
    assert lost == ["channel 3: /context set confirmed, then a context without m4"]


def test_nothing_is_expected_after_a_clear_or_an_unmarked_write() -> None:
    written, cleared, blank = op("set", 1, "m1"), op("clear", 1, None), op("set", 2, None)
    states = {id(written): "confirmed", id(cleared): "confirmed", id(blank): "confirmed"}
    assert lost_contexts([written, cleared, blank], states, {}) == (0, [])


def test_error_records_are_error_and_critical_lines_with_their_tracebacks() -> None:
    log = "\n".join(
        [
            "2026-01-01 10:00:00 INFO    bot: logged in",
            "2026-01-01 10:00:01 ERROR   bot.errors: error 0badc0de in command 'ask' (user 1)",
            "Traceback (most recent call last):",
            "ValueError: shown to the user as an error id",
            "2026-01-01 10:00:02 WARNING bot.x: a warning with a traceback is not an error",
            "Traceback (most recent call last):",
            "2026-01-01 10:00:03 ERROR   asyncio: Task exception was never retrieved",
            "Traceback (most recent call last):",
            "RuntimeError: boom",
            "2026-01-01 10:00:04 CRITICAL bot: out of memory",
        ]
    )
    records = error_records(log, known_ids={"0badc0de"})
    assert [r.splitlines()[0][20:40] for r in records] == [
        "ERROR   asyncio: Tas",
        "CRITICAL bot: out of",
    ]
    assert records[0].endswith("RuntimeError: boom")
    assert len(error_records(log)) == 3
    assert exception_line(records[0]) == "RuntimeError: boom"
    assert exception_line(records[1]) == records[1]  # no traceback: the record itself


def test_a_job_may_not_start_from_another_servers_model_or_a_local_dataset(
    tmp_path: Path,
) -> None:
    data, cwd = tmp_path / "data", tmp_path / "cwd"
    hub = '{"train": {"path": "train.data", "hub_name": null}}'
    jobs = [
        (1, 100, "owner/model", hub),  # a hub id and an upload: fine
        (2, 100, str(data / "models" / "1"), hub),  # its own server's model: fine
        (3, 200, str(data / "models" / "1" / "sub"), hub),  # server 100's model
        (4, 200, "../data", hub),  # the data folder itself, by a relative climb
        (5, 200, "owner/model", '{"train": {"hub_name": "../host-files"}}'),
        (6, 200, "hf://x/y", '{"validation": {"hub_name": "https://e.example/d.csv"}}'),
        (7, 200, "owner/model", '{"train": {"hub_name": "glue"}}'),  # a hub dataset: fine
    ]
    assert foreign_refs(jobs, data, cwd) == [
        f"job 3: base model {data}/models/1/sub: another server's model",
        "job 4: base model ../data: inside the data folder",
        "job 5: train dataset ../host-files: not a hub dataset id",
        "job 6: base model hf://x/y: a URL or scheme; "
        "validation dataset https://e.example/d.csv: not a hub dataset id",
    ]


async def test_every_hostile_upload_reaches_the_bot_byte_for_byte() -> None:
    """(Else the soak would measure the emulator's URL handling, not the bot's parsing.)"""
    files = hostile.training_files(big_bytes=1000) + hostile.context_files(cap_bytes=10)
    async with DiscordEmulator() as emu, aiohttp.ClientSession() as session:
        for file in files:
            attachment = emu.attachment(file.filename, file.data)
            async with session.get(attachment.url) as response:
                assert response.status == 200, file.what
                assert await response.read() == file.data, file.what


def test_p99_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 201)]
    assert nearest_rank(values, 99) == 198.0
    assert nearest_rank([5.0], 99) == 5.0


# ------------------------------------------------------------------------ the bounded soak


@pytest.fixture(scope="module")
def report(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_models_root: Path,
    tiny_gpt2_dir: Path,
    tiny_sentiment_dir: Path,
    tiny_ner_dir: Path,
    tiny_qa_dir: Path,
) -> dict[str, Any]:
    """The bounded soak's JSON (the tiny models the session built are reused). Its logs and
    transcript.jsonl stay in the run folder printed on failure."""
    run_dir = tmp_path_factory.mktemp("soak")
    command = [
        sys.executable,
        str(REPO_ROOT / "bench" / "soak.py"),
        "--json",
        *SOAK_ARGS,
        "--models-dir",
        str(tiny_models_root),
        "--run-dir",
        str(run_dir),
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=840, check=False
    )
    (run_dir / "soak.stderr").write_text(done.stderr)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr[-4000:]}"
    found: dict[str, Any] = json.loads(done.stdout)
    found["run_dir"] = str(run_dir)
    return found


def explain(report: dict[str, Any], *keys: str) -> str:
    shown = {key: report.get(key) for key in keys}
    return json.dumps(shown | {"run_dir": report["run_dir"]}, indent=1, ensure_ascii=False)


@pytest.mark.timeout(900)
def test_the_soak_killed_a_training_bot_and_restarted_it(report: dict[str, Any]) -> None:
    why = explain(
        report,
        "job_at_kill",
        "restart_s",
        "interactions",
        "contexts_checked",
        "problems",
    )
    assert report["interactions"] >= 30, why
    assert report["eligible"] >= 20, why
    assert report["job_at_kill"] and report["job_at_kill"]["status"] == "running", why
    assert report["jobs_checked_after_restart"] >= 1, why
    assert report["contexts_checked"] >= 1, why  # (else: has the bot's confirmation changed?)
    assert report["restart_s"] is not None and report["bot_crashes"] == 0, why
    assert report["unhandled_routes"] == 0 and report["problems"] == [], why


@pytest.mark.timeout(900)
def test_every_interaction_is_acknowledged_within_3_s(report: dict[str, Any]) -> None:
    why = explain(report, "acked_within_3s_pct", "ack_p99_ms", "not_acknowledged")
    assert report["acked_within_3s_pct"] == 100.0, why


@pytest.mark.timeout(900)
def test_no_unhandled_error(report: dict[str, Any]) -> None:
    why = explain(
        report,
        "unhandled_errors",
        "unhandled_errors_by_action",
        "unhandled_error_exceptions",
        "error_samples",
    )
    assert report["unhandled_errors"] == 0, why


@pytest.mark.timeout(900)
def test_no_context_confirmed_before_the_kill_is_lost(report: dict[str, Any]) -> None:
    why = explain(report, "lost_contexts", "lost_context_samples", "contexts_checked")
    assert report["lost_contexts"] == 0, why


@pytest.mark.timeout(900)
def test_promotions_are_served_again_after_the_restart(report: dict[str, Any]) -> None:
    why = explain(report, "promotions_lost", "lost_promotion_samples", "promotions_checked")
    assert report["promotions_lost"] == 0, why


@pytest.mark.timeout(900)
def test_every_job_ends(report: dict[str, Any]) -> None:
    why = explain(report, "jobs_not_terminal", "not_terminal_jobs", "jobs_by_status")
    assert report["jobs_not_terminal"] == 0, why


@pytest.mark.timeout(900)
def test_no_reply_can_ping(report: dict[str, Any]) -> None:
    assert report["mention_leaks"] == 0, explain(report, "mention_leaks")


@pytest.mark.timeout(900)
def test_no_reply_shows_the_host(report: dict[str, Any]) -> None:
    why = explain(report, "host_leaks", "host_leaks_by_kind", "host_leak_samples")
    assert report["host_leaks"] == 0, why


@pytest.mark.timeout(900)
def test_no_job_uses_another_servers_model_or_a_host_path(report: dict[str, Any]) -> None:
    why = explain(report, "foreign_refs_accepted", "foreign_ref_samples")
    assert report["foreign_refs_accepted"] == 0, why


@pytest.mark.timeout(900)
def test_no_training_process_outlives_its_bot(report: dict[str, Any]) -> None:
    why = explain(report, "orphan_workers", "workers_left_after_stop", "job_at_kill")
    assert report["orphan_workers"] == 0 and report["workers_left_after_stop"] == 0, why


@pytest.mark.timeout(900)
def test_the_bot_stops_cleanly_with_nothing_left_hanging(report: dict[str, Any]) -> None:
    why = explain(report, "clean_exit", "stuck_thinking", "rejected_requests")
    assert report["clean_exit"] and report["stuck_thinking"] == 0, why
    assert report["rejected_requests"] == {}, why
