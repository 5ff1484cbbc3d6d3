-- Per-channel question-answering contexts (a thread is a channel of its own).
CREATE TABLE qa_contexts (
    channel_id  INTEGER PRIMARY KEY,
    guild_id    INTEGER,
    body        TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    author_id   INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_by  INTEGER NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE INDEX qa_contexts_guild ON qa_contexts (guild_id);
