-- Experiments: one run of a prompt version over a dataset, every result and score, and the
-- response cache.

CREATE TABLE experiments (
    id              TEXT COLLATE "C" PRIMARY KEY,
    -- Creation order, for listings of experiments created within the same instant.
    ord             BIGINT GENERATED ALWAYS AS IDENTITY,
    name            TEXT,
    prompt_id       BIGINT NOT NULL REFERENCES prompts(id),
    version_id      TEXT COLLATE "C" NOT NULL REFERENCES prompt_versions(id),
    tag             TEXT,
    dataset_path    TEXT NOT NULL,
    dataset_hash    TEXT COLLATE "C" NOT NULL,
    dataset_rows    BIGINT NOT NULL,
    dataset_columns TEXT NOT NULL,
    model           TEXT NOT NULL,
    base_url        TEXT NOT NULL,
    evaluators      TEXT NOT NULL,
    settings        TEXT NOT NULL,
    planned         BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('running', 'completed', 'interrupted', 'failed')),
    author          TEXT NOT NULL,
    created_at      TEXT COLLATE "C" NOT NULL,
    finished_at     TEXT,
    wall_ms         BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX experiments_by_version ON experiments (version_id, dataset_hash, created_at);
CREATE INDEX experiments_by_prompt ON experiments (prompt_id, created_at);

CREATE TABLE results (
    experiment_id     TEXT COLLATE "C" NOT NULL REFERENCES experiments(id),
    row_index         BIGINT NOT NULL,
    repetition        BIGINT NOT NULL,
    row_id            TEXT COLLATE "C" NOT NULL,
    vars              TEXT NOT NULL,
    expected          TEXT,
    messages          TEXT NOT NULL,
    output            TEXT,
    finish_reason     TEXT,
    status            TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error_kind        TEXT COLLATE "C",
    error_message     TEXT,
    http_status       INTEGER,
    attempts          BIGINT NOT NULL,
    latency_ms        DOUBLE PRECISION NOT NULL,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    cached            BOOLEAN NOT NULL DEFAULT FALSE,
    started_at        TEXT NOT NULL,
    finished_at       TEXT NOT NULL,
    PRIMARY KEY (experiment_id, row_index, repetition)
);

CREATE INDEX results_by_row_id ON results (experiment_id, row_id, repetition);

-- A successful result is final: a resumed run may replace an errored one, never an ok one.
CREATE TRIGGER results_ok_is_final BEFORE UPDATE ON results
    FOR EACH ROW WHEN (OLD.status = 'ok')
    EXECUTE FUNCTION runner_refuse('a successful result is never overwritten');

CREATE TABLE scores (
    experiment_id TEXT COLLATE "C" NOT NULL,
    row_index     BIGINT NOT NULL,
    repetition    BIGINT NOT NULL,
    evaluator     TEXT COLLATE "C" NOT NULL,
    score         DOUBLE PRECISION NOT NULL,
    pass          BOOLEAN NOT NULL,
    error         BOOLEAN NOT NULL,
    reason        TEXT NOT NULL,
    PRIMARY KEY (experiment_id, row_index, repetition, evaluator),
    FOREIGN KEY (experiment_id, row_index, repetition)
        REFERENCES results (experiment_id, row_index, repetition)
);

CREATE TABLE response_cache (
    key               TEXT COLLATE "C" PRIMARY KEY,
    output            TEXT NOT NULL,
    finish_reason     TEXT,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    http_status       INTEGER,
    latency_ms        DOUBLE PRECISION NOT NULL,
    created_at        TEXT NOT NULL
);
