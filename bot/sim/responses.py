"""Discord's rules for answering an interaction.

The bot must acknowledge within 3 seconds (else the user sees "The application did not respond"
and later answers get 10062), exactly once, with a callback type allowed for the interaction's
kind; after that its 15-minute token addresses the interaction's webhook, whose first followup
completes a deferred "thinking..." response.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.sim.entities import FLAG_EPHEMERAL, FLAG_LOADING, RecordedFile, SimMessage
from bot.sim.interaction import (
    APPLICATION_COMMAND,
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    MODAL,
    UPDATE_MESSAGE,
    InteractionRegistry,
    SimInteraction,
)
from bot.sim.messages import MessageService
from bot.sim.state import SimState
from bot.sim.validation import DiscordHTTPError, json_object, unknown

log = logging.getLogger(__name__)

# Callback types each interaction kind accepts (components may also update their message).
_COMMAND_CALLBACKS = {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL}
_COMPONENT_CALLBACKS = _COMMAND_CALLBACKS | {DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE}


class InteractionResponder:
    """Applies the bot's callbacks and webhook calls to interactions, enforcing the rules."""

    def __init__(
        self,
        state: SimState,
        *,
        interactions: InteractionRegistry,
        messages: MessageService,
        ack_deadline_s: float,
        token_ttl_s: float,
    ) -> None:
        self.state = state
        self.clock = state.clock
        self.interactions = interactions
        self.messages = messages
        self.ack_deadline_s = ack_deadline_s
        self.token_ttl_s = token_ttl_s

    # -- the acknowledgment deadline -------------------------------------------------------

    def watch(self, inter: SimInteraction) -> None:
        """Start the interaction's acknowledgment deadline (when it is sent to the bot)."""
        inter.start_deadline(self.ack_deadline_s, self._deadline_passed)

    def _deadline_passed(self, inter: SimInteraction) -> None:
        if not inter.acknowledged:
            log.info(
                "interaction %s (%s) not acknowledged within %.1f s",
                inter.id,
                inter.name,
                self.ack_deadline_s,
            )
            inter.fail()

    def _past_ack_deadline(self, inter: SimInteraction) -> bool:
        # Also by the clock, so a test's advance() counts without waiting for the timer.
        return self.clock.monotonic() - inter.created_at > self.ack_deadline_s

    # -- the callback ----------------------------------------------------------------------

    def for_callback(self, interaction_id: int, token: str) -> SimInteraction:
        """The interaction a callback URL names, or Discord's 10062."""
        inter = self.interactions.get(interaction_id)
        if inter is None or inter.token != token:
            raise unknown(10062, "interaction")
        return inter

    async def respond(
        self, inter: SimInteraction, body: Any, files: list[RecordedFile]
    ) -> dict[str, Any]:
        """Apply the bot's callback (the request's JSON ``body``); return Discord's answer to a
        callback made ``with_response``."""
        if not inter.acknowledged and self._past_ack_deadline(inter):
            inter.fail()
        if inter.failed:
            raise unknown(10062, "interaction")
        if inter.acknowledged:
            raise DiscordHTTPError(400, 40060, "Interaction has already been acknowledged.")
        callback = json_object(body)
        rtype = callback.get("type")
        data = callback.get("data") or {}
        allowed = _COMMAND_CALLBACKS if inter.type == APPLICATION_COMMAND else _COMPONENT_CALLBACKS
        if rtype not in allowed:
            raise DiscordHTTPError(
                400,
                50035,
                "Invalid Form Body",
                {
                    "type": {
                        "_errors": [
                            {
                                "code": "INTERACTION_RESPONSE_TYPE_INVALID",
                                "message": "Invalid interaction response type",
                            }
                        ]
                    }
                },
            )
        messages = self.messages
        message: SimMessage | None = None
        if rtype == CHANNEL_MESSAGE:
            message = await messages.create_interaction_message(inter, data, files, original=True)
        elif rtype == DEFERRED_CHANNEL_MESSAGE:
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            message = await messages.create_interaction_message(
                inter, {"flags": flags}, [], original=True, loading=True
            )
        elif rtype == UPDATE_MESSAGE:
            assert inter.target_message is not None
            message = await messages.edit(inter.target_message, data, files, inter=inter)
            inter.original = inter.target_message
        elif rtype == DEFERRED_UPDATE_MESSAGE:
            inter.original = inter.target_message
        self._acknowledge(inter, rtype, data)
        result: dict[str, Any] = {
            "interaction": {
                "id": str(inter.id),
                "type": inter.type,
                "response_message_id": str(message.id) if message else None,
                "response_message_loading": rtype == DEFERRED_CHANNEL_MESSAGE,
                "response_message_ephemeral": bool(message and message.ephemeral),
            },
            "resource": {"type": rtype},
        }
        if message is not None:
            result["resource"]["message"] = messages.to_json(message)
        return result

    def _acknowledge(self, inter: SimInteraction, rtype: int, data: dict[str, Any]) -> None:
        inter.response_type = rtype
        inter.response_data = data
        inter.acknowledged_at = self.clock.monotonic()
        inter.cancel_deadline()
        inter.touch()

    # -- the interaction's webhook ---------------------------------------------------------

    def for_webhook(self, application_id: int, token: str) -> SimInteraction:
        """The interaction a webhook URL names, or Discord's 10015."""
        if application_id != self.state.application_id:
            raise unknown(10015, "Webhook")
        inter = self.interactions.by_token(token)
        if inter is None:
            raise unknown(10015, "Webhook")
        return inter

    def check_webhook(self, inter: SimInteraction) -> None:
        """Refuse an expired token (50027) or a webhook that does not exist yet (10015)."""
        if self.clock.monotonic() - inter.created_at > self.token_ttl_s:
            raise DiscordHTTPError(401, 50027, "Invalid Webhook Token")
        if not inter.acknowledged:
            # The interaction webhook only exists once the interaction was acknowledged.
            raise unknown(10015, "Webhook")

    def message_of(self, inter: SimInteraction, message_id: int | None) -> SimMessage:
        """One of the interaction's live messages (None: ``@original``), or Discord's 10008."""
        if message_id is None:
            if inter.original is None or inter.original.deleted:
                raise unknown(10008, "Message")
            return inter.original
        for message in inter.messages:
            if message.id == message_id and not message.deleted:
                return message
        raise unknown(10008, "Message")

    async def followup(
        self, inter: SimInteraction, data: dict[str, Any], files: list[RecordedFile]
    ) -> SimMessage:
        """A followup message; the first after a deferred response completes that response."""
        original = inter.original
        if (
            inter.response_type == DEFERRED_CHANNEL_MESSAGE
            and original is not None
            and original.loading
            and not original.deleted
        ):
            # Discord: the first followup after a deferred response completes the "thinking"
            # message, keeping the defer's ephemeral choice.
            data = dict(data)
            data["flags"] = (int(data.get("flags") or 0) & ~FLAG_EPHEMERAL) | (
                original.flags & FLAG_EPHEMERAL
            )
            return await self.messages.edit(original, data, files, inter=inter, finish_loading=True)
        return await self.messages.create_interaction_message(inter, data, files, original=False)
