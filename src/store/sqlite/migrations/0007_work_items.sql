-- An experiment planned with `--detach` is shared by workers: every row × repetition is a work
-- item that one worker at a time leases, renews while it works and completes in the
-- transaction that writes its result. An item whose lease ran out is claimed again; a worker
-- whose lease was taken over completes nothing (the owner check in the completing UPDATE).
-- `detach_key` makes planning idempotent: N jobs planning with one key get one experiment.

ALTER TABLE experiments ADD COLUMN detach_key TEXT;

CREATE UNIQUE INDEX experiments_by_detach_key ON experiments (detach_key)
    WHERE detach_key IS NOT NULL;

CREATE TABLE work_items (
    experiment_id TEXT NOT NULL REFERENCES experiments(id),
    row_index     INTEGER NOT NULL,
    repetition    INTEGER NOT NULL,
    row_id        TEXT NOT NULL,
    row_values    TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'leased', 'done')),
    lease_owner   TEXT,
    -- Milliseconds since the epoch by the clock of the machines (one machine, for SQLite).
    lease_until   INTEGER,
    -- How many times the item was leased: more than once means a lease ran out (a worker died).
    claims        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (experiment_id, row_index, repetition)
) WITHOUT ROWID;

CREATE INDEX work_items_by_state ON work_items (experiment_id, state, row_index, repetition);
