-- Documents per channel (a thread is a channel of its own) replace the one context per channel:
-- each becomes a document named "notes". Documents are split into passages (character spans of
-- the body); passages_fts holds each passage's text for bm25 (rowid = passages.id, `channel` is
-- the token c<channel id> so a search stays in its channel). Passage vectors live in a
-- sqlite-vec table that bot/documents creates for the embedding model's dimension.
CREATE TABLE documents (
    id          INTEGER PRIMARY KEY,
    channel_id  INTEGER NOT NULL,
    guild_id    INTEGER,
    name        TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    chars       INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    author_id   INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_by  INTEGER NOT NULL,
    updated_at  TEXT    NOT NULL,
    -- bumped by every write (a change computed outside a transaction checks it)
    version     INTEGER NOT NULL DEFAULT 0,
    -- the passage rules the document was split under, NULL until it is split
    chunker     TEXT,
    UNIQUE (channel_id, name)
);
CREATE INDEX documents_guild ON documents (guild_id);

CREATE TABLE passages (
    id          INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents (id),
    channel_id  INTEGER NOT NULL,
    guild_id    INTEGER,
    start_char  INTEGER NOT NULL,
    end_char    INTEGER NOT NULL,
    digest      TEXT    NOT NULL,
    embedded    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX passages_document ON passages (document_id, start_char);
CREATE INDEX passages_pending ON passages (embedded, id);
CREATE INDEX passages_digest ON passages (digest, guild_id);

CREATE VIRTUAL TABLE passages_fts USING fts5(channel, body, tokenize = 'porter unicode61');

-- The embedding model the stored vectors came from, and their dimension.
CREATE TABLE document_index_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO documents (channel_id, guild_id, name, body, chars, source, author_id, created_at,
                       updated_by, updated_at)
SELECT channel_id, guild_id, 'notes', body, length(body), source, author_id, created_at,
       updated_by, updated_at
FROM qa_contexts;

DROP TABLE qa_contexts;
