-- Foundation: an audit trail of admin actions (fine-tune starts, promotions, context clears).
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    guild_id    INTEGER,
    user_id     INTEGER NOT NULL,
    action      TEXT    NOT NULL,
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_guild ON audit_log (guild_id, created_at);
