-- Production traffic: the spans applications send over OTLP, each linked (when it names one) to
-- the prompt version that produced it; feedback and online scores on spans and traces; and the
-- tag lookups `runner serve` answered, rolled up per minute.

CREATE TABLE spans (
    trace_id       TEXT NOT NULL,
    span_id        TEXT NOT NULL,
    parent_id      TEXT,
    project        TEXT NOT NULL,
    -- True for the spans of an experiment run (Phoenix's `Experiment-…` projects): never production.
    experiment     BOOLEAN NOT NULL DEFAULT FALSE,
    service        TEXT,
    sender         TEXT,
    name           TEXT NOT NULL,
    kind           TEXT,
    start_ms       BIGINT NOT NULL,
    end_ms         BIGINT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('unset', 'ok', 'error')),
    error          TEXT,
    prompt         TEXT,
    version_id     TEXT,
    version_number BIGINT,
    tag            TEXT,
    link           TEXT,
    model          TEXT,
    input_tokens   BIGINT,
    output_tokens  BIGINT,
    variables      TEXT,
    input          TEXT,
    output         TEXT,
    attributes     TEXT NOT NULL,
    received_ms    BIGINT NOT NULL,
    PRIMARY KEY (span_id, trace_id)
);
CREATE INDEX spans_prompt_time ON spans (prompt, start_ms);
CREATE INDEX spans_version_time ON spans (version_id, start_ms);
CREATE INDEX spans_trace ON spans (trace_id);
CREATE INDEX spans_time ON spans (start_ms);

CREATE TABLE annotations (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target         TEXT NOT NULL CHECK (target IN ('span', 'trace')),
    target_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    annotator_kind TEXT NOT NULL,
    label          TEXT,
    score          DOUBLE PRECISION,
    explanation    TEXT,
    metadata       TEXT NOT NULL,
    identifier     TEXT NOT NULL,
    source         TEXT NOT NULL,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    UNIQUE (target, target_id, name, identifier)
);
CREATE INDEX annotations_time ON annotations (updated_ms);

CREATE TABLE lookups (
    minute      BIGINT NOT NULL,
    prompt      TEXT NOT NULL,
    tag         TEXT NOT NULL,
    version_id  TEXT NOT NULL,
    sender      TEXT NOT NULL,
    user_agent  TEXT NOT NULL,
    count       BIGINT NOT NULL,
    PRIMARY KEY (prompt, minute, tag, version_id, sender, user_agent)
);
CREATE INDEX lookups_time ON lookups (minute);
