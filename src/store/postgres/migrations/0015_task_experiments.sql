-- Experiments run by your own code through the Phoenix client: the experiment on a dataset
-- version, each task run (one per example and repetition; an errored run may be replaced, a
-- successful one never), and each evaluation of a run (one per name, replaced when sent
-- again). An experiment whose metadata names a prompt version is linked: it is also an
-- experiment of runner's own (same id), its runs results and its evaluations scores, so
-- compare, promote and the web UI take it as evidence.

CREATE TABLE task_experiments (
    id                 TEXT PRIMARY KEY,
    dataset_id         TEXT NOT NULL REFERENCES datasets(id),
    dataset_version_id TEXT NOT NULL REFERENCES dataset_versions(id),
    name               TEXT NOT NULL,
    description        TEXT,
    metadata           TEXT NOT NULL,
    repetitions        INTEGER NOT NULL CHECK (repetitions >= 1),
    linked             INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL,
    created_by         TEXT NOT NULL
);
CREATE INDEX task_experiments_by_dataset ON task_experiments (dataset_id, id);

CREATE TABLE task_runs (
    id            TEXT PRIMARY KEY,
    experiment_id TEXT NOT NULL REFERENCES task_experiments(id),
    example_key   TEXT NOT NULL,
    repetition    INTEGER NOT NULL CHECK (repetition >= 1),
    output        TEXT NOT NULL,
    error         TEXT,
    start_time    TEXT NOT NULL,
    end_time      TEXT NOT NULL,
    trace_id      TEXT,
    UNIQUE (experiment_id, example_key, repetition)
);

CREATE TABLE task_evaluations (
    id             TEXT PRIMARY KEY,
    run_id         TEXT NOT NULL REFERENCES task_runs(id),
    name           TEXT NOT NULL,
    annotator_kind TEXT NOT NULL CHECK (annotator_kind IN ('LLM', 'CODE', 'HUMAN')),
    label          TEXT,
    score          DOUBLE PRECISION,
    explanation    TEXT,
    error          TEXT,
    metadata       TEXT NOT NULL,
    start_time     TEXT NOT NULL,
    end_time       TEXT NOT NULL,
    trace_id       TEXT,
    UNIQUE (run_id, name)
);
