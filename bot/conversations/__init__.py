"""Conversations: chat threads, mentions and reply chains, personas per channel.

- :mod:`~bot.conversations.records`: SQLite (migration 0004): personas, chats opened with /chat,
  the bot's messages that are not its words (prompt echoes, notes);
- :mod:`~bot.conversations.reading`: Discord's messages back (thread or DM history, reply
  chains), bounded and cached;
- :mod:`~bot.conversations.turns`: messages to roles (the bot's are ``assistant``, everyone
  else's ``user`` with their name);
- :mod:`~bot.conversations.fitting`: the request, trimmed from the oldest turn to the serving
  model's window as its own tokenizer and template count it;
- :mod:`~bot.conversations.limits`: conversations generating at once per server, one answer at
  a time per channel, notes at most so often per person;
- :mod:`~bot.conversations.service`: :class:`Conversations`, what the cogs use.
"""

from __future__ import annotations

from bot.conversations.limits import ServerBusy
from bot.conversations.reading import Excerpt, MessageReader
from bot.conversations.records import (
    Conversation,
    ConversationRecords,
    EffectivePersona,
    Persona,
    RecordedMessage,
)
from bot.conversations.service import ChatLimits, Conversations, Prepared

__all__ = [
    "ChatLimits",
    "Conversation",
    "ConversationRecords",
    "Conversations",
    "EffectivePersona",
    "Excerpt",
    "MessageReader",
    "Persona",
    "Prepared",
    "RecordedMessage",
    "ServerBusy",
]
