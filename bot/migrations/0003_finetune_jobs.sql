-- Fine-tuning jobs started from Discord, and the models promoted per server (with history).
CREATE TABLE finetune_jobs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id            INTEGER NOT NULL,
    channel_id          INTEGER NOT NULL,
    status_message_id   INTEGER,
    requested_by        INTEGER NOT NULL,
    task                TEXT    NOT NULL,
    base_model          TEXT    NOT NULL,
    data_source         TEXT    NOT NULL,
    params              TEXT    NOT NULL DEFAULT '{}',
    status              TEXT    NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled', 'interrupted')),
    phase               TEXT,
    step                INTEGER,
    max_steps           INTEGER,
    epoch               REAL,
    loss                REAL,
    eta_s               REAL,
    metrics             TEXT    NOT NULL DEFAULT '{}',
    output_dir          TEXT,
    plot_path           TEXT,
    error               TEXT,
    created_at          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at          TEXT,
    finished_at         TEXT,
    updated_at          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX finetune_jobs_guild ON finetune_jobs (guild_id, id);
CREATE INDEX finetune_jobs_status ON finetune_jobs (status);

-- One row per promotion. The model serving (guild, task) is its newest row not rolled back;
-- previous_id is the promotion it replaced, so a rollback walks back through history.
CREATE TABLE guild_models (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    guild_id        INTEGER NOT NULL,
    task            TEXT    NOT NULL,
    job_id          INTEGER REFERENCES finetune_jobs (id),
    model_path      TEXT    NOT NULL,
    promoted_by     INTEGER NOT NULL,
    promoted_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    previous_id     INTEGER REFERENCES guild_models (id),
    rolled_back_by  INTEGER,
    rolled_back_at  TEXT
);
CREATE INDEX guild_models_current ON guild_models (guild_id, task, rolled_back_at, id);
