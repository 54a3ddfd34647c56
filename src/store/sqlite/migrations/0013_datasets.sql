-- Datasets in the store: named, with numbered versions that never change. A version keeps the
-- file exactly as it was pushed (its bytes hash to what an experiment on that file records),
-- with its format, row count and columns.

CREATE TABLE datasets (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL
);

CREATE TABLE dataset_versions (
    id          TEXT PRIMARY KEY,
    dataset_id  TEXT NOT NULL REFERENCES datasets(id),
    seq         INTEGER NOT NULL,
    format      TEXT NOT NULL CHECK (format IN ('csv', 'jsonl')),
    content     TEXT NOT NULL,
    hash        TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    columns     TEXT NOT NULL,
    message     TEXT,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    UNIQUE (dataset_id, seq)
);
CREATE INDEX dataset_versions_hash ON dataset_versions (hash);
