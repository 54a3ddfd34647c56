-- Experiments: one run of a prompt version over a dataset, every result and score, and the
-- response cache.

CREATE TABLE experiments (
    id              TEXT PRIMARY KEY,
    name            TEXT,
    prompt_id       INTEGER NOT NULL REFERENCES prompts(id),
    version_id      TEXT NOT NULL REFERENCES prompt_versions(id),
    tag             TEXT,
    dataset_path    TEXT NOT NULL,
    dataset_hash    TEXT NOT NULL,
    dataset_rows    INTEGER NOT NULL,
    dataset_columns TEXT NOT NULL,
    model           TEXT NOT NULL,
    base_url        TEXT NOT NULL,
    evaluators      TEXT NOT NULL,
    settings        TEXT NOT NULL,
    planned         INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('running', 'completed', 'interrupted', 'failed')),
    author          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    finished_at     TEXT,
    wall_ms         INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX experiments_by_version ON experiments (version_id, dataset_hash, created_at);
CREATE INDEX experiments_by_prompt ON experiments (prompt_id, created_at);

CREATE TABLE results (
    experiment_id     TEXT NOT NULL REFERENCES experiments(id),
    row_index         INTEGER NOT NULL,
    repetition        INTEGER NOT NULL,
    row_id            TEXT NOT NULL,
    vars              TEXT NOT NULL,
    expected          TEXT,
    messages          TEXT NOT NULL,
    output            TEXT,
    finish_reason     TEXT,
    status            TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error_kind        TEXT,
    error_message     TEXT,
    http_status       INTEGER,
    attempts          INTEGER NOT NULL,
    latency_ms        REAL NOT NULL,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    cached            INTEGER NOT NULL DEFAULT 0,
    started_at        TEXT NOT NULL,
    finished_at       TEXT NOT NULL,
    PRIMARY KEY (experiment_id, row_index, repetition)
) WITHOUT ROWID;

CREATE INDEX results_by_row_id ON results (experiment_id, row_id, repetition);

-- A successful result is final: a resumed run may replace an errored one, never an ok one.
CREATE TRIGGER results_ok_is_final BEFORE UPDATE ON results
WHEN OLD.status = 'ok'
BEGIN
    SELECT RAISE(ABORT, 'a successful result is never overwritten');
END;

CREATE TABLE scores (
    experiment_id TEXT NOT NULL,
    row_index     INTEGER NOT NULL,
    repetition    INTEGER NOT NULL,
    evaluator     TEXT NOT NULL,
    score         REAL NOT NULL,
    pass          INTEGER NOT NULL,
    error         INTEGER NOT NULL,
    reason        TEXT NOT NULL,
    PRIMARY KEY (experiment_id, row_index, repetition, evaluator),
    FOREIGN KEY (experiment_id, row_index, repetition)
        REFERENCES results (experiment_id, row_index, repetition)
) WITHOUT ROWID;

CREATE TABLE response_cache (
    key               TEXT PRIMARY KEY,
    output            TEXT NOT NULL,
    finish_reason     TEXT,
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    http_status       INTEGER,
    latency_ms        REAL NOT NULL,
    created_at        TEXT NOT NULL
) WITHOUT ROWID;
