-- Canary rollouts: a tag served to a share of lookups, stepped up, completed or rolled back by
-- production evidence. The plan (steps, what ends a step, the unit header, the metrics, the
-- confidence) is JSON; the state is columns, so a decision is one compare-and-set.

CREATE TABLE rollouts (
    id              TEXT PRIMARY KEY,
    prompt          TEXT NOT NULL,
    tag             TEXT NOT NULL,
    canary_tag      TEXT NOT NULL,
    baseline_id     TEXT NOT NULL,
    candidate_id    TEXT NOT NULL,
    plan            TEXT NOT NULL,
    step            BIGINT NOT NULL,
    step_started_ms BIGINT NOT NULL,
    step_looks      BIGINT NOT NULL,
    looks           BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('running', 'completed', 'rolled_back', 'stopped')),
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    actor           TEXT NOT NULL,
    message         TEXT,
    last_look       TEXT
);
-- One rollout per tag at a time.
CREATE UNIQUE INDEX rollouts_running ON rollouts (prompt, tag) WHERE status = 'running';
CREATE INDEX rollouts_prompt ON rollouts (prompt, created_ms);
