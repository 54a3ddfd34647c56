-- An experiment your own code ran through the Phoenix client may name no prompt version: it
-- is runner's experiment all the same (listed, shown, compared), with no prompt and no version.
-- (Such experiments stored before this migration stay as they were: served on Phoenix's routes.)
-- SQLite cannot drop a NOT NULL constraint in place, so the table is rebuilt (the documented
-- procedure: foreign keys are off while migrations run and checked before they commit).
-- rowid is copied, so the insertion order the lists break ties by is kept.

CREATE TABLE experiments_new (
    id              TEXT PRIMARY KEY,
    name            TEXT,
    prompt_id       INTEGER REFERENCES prompts(id),
    version_id      TEXT REFERENCES prompt_versions(id),
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
    wall_ms         INTEGER NOT NULL DEFAULT 0,
    fingerprint     TEXT,
    lease_owner     TEXT,
    lease_until     TEXT,
    detach_key      TEXT,
    CHECK ((prompt_id IS NULL) = (version_id IS NULL))
);

INSERT INTO experiments_new (rowid, id, name, prompt_id, version_id, tag, dataset_path,
    dataset_hash, dataset_rows, dataset_columns, model, base_url, evaluators, settings, planned,
    status, author, created_at, finished_at, wall_ms, fingerprint, lease_owner, lease_until,
    detach_key)
SELECT rowid, id, name, prompt_id, version_id, tag, dataset_path, dataset_hash, dataset_rows,
    dataset_columns, model, base_url, evaluators, settings, planned, status, author, created_at,
    finished_at, wall_ms, fingerprint, lease_owner, lease_until, detach_key
FROM experiments;

DROP TABLE experiments;
ALTER TABLE experiments_new RENAME TO experiments;

CREATE INDEX experiments_by_version ON experiments (version_id, dataset_hash, created_at);
CREATE INDEX experiments_by_prompt ON experiments (prompt_id, created_at);
CREATE INDEX experiments_by_fingerprint ON experiments (fingerprint, created_at);
CREATE UNIQUE INDEX experiments_by_detach_key ON experiments (detach_key)
    WHERE detach_key IS NOT NULL;
