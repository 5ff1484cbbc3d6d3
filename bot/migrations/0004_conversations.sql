-- Conversations (bot/conversations/): personas per channel, chats opened with /chat, and the
-- bot's messages whose part in a conversation Discord alone cannot tell.

-- A channel's or thread's persona: the system prompt its conversations start with. A thread
-- without one uses its parent channel's; `/chat persona:` sets a new chat thread's own.
CREATE TABLE chat_personas (
    channel_id  INTEGER PRIMARY KEY,
    guild_id    INTEGER,
    text        TEXT    NOT NULL,
    set_by      INTEGER NOT NULL,
    set_at      TEXT    NOT NULL
);

-- A chat thread opened by /chat: who started it with what (the first turn, which lives in the
-- parent channel) and the model that last answered in it.
CREATE TABLE chat_conversations (
    thread_id           INTEGER PRIMARY KEY,
    guild_id            INTEGER NOT NULL,
    parent_id           INTEGER NOT NULL,
    starter_message_id  INTEGER NOT NULL,
    author_id           INTEGER NOT NULL,
    author_name         TEXT    NOT NULL,
    starter             TEXT    NOT NULL,
    model               TEXT,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL
);
CREATE INDEX chat_conversations_guild ON chat_conversations (guild_id);

-- Bot messages that are not the bot's own words: the echo of a /chat prompt (a person's turn,
-- whose text is kept here because the echo shows it formatted) and notes (refusals, errors),
-- which conversations leave out.
CREATE TABLE chat_messages (
    message_id   INTEGER PRIMARY KEY,
    channel_id   INTEGER NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('prompt', 'note')),
    author_id    INTEGER,
    author_name  TEXT,
    content      TEXT,
    created_at   TEXT    NOT NULL
);
CREATE INDEX chat_messages_channel ON chat_messages (channel_id);
