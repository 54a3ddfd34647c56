-- Prompts, immutable versions, movable tags and the append-only history of tag moves.

CREATE TABLE prompts (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE prompt_versions (
    id            TEXT PRIMARY KEY,
    prompt_id     INTEGER NOT NULL REFERENCES prompts(id),
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    template_type TEXT NOT NULL CHECK (template_type IN ('str', 'chat')),
    format        TEXT NOT NULL CHECK (format IN ('mustache', 'fstring', 'none')),
    template      TEXT NOT NULL,
    model         TEXT,
    params        TEXT NOT NULL,
    metadata      TEXT NOT NULL,
    description   TEXT,
    message       TEXT,
    author        TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    UNIQUE (prompt_id, seq)
);

-- Versions are immutable and append-only, whatever program writes to the file.
CREATE TRIGGER prompt_versions_no_update BEFORE UPDATE ON prompt_versions
BEGIN
    SELECT RAISE(ABORT, 'prompt versions are immutable');
END;
CREATE TRIGGER prompt_versions_no_delete BEFORE DELETE ON prompt_versions
BEGIN
    SELECT RAISE(ABORT, 'prompt versions are append-only');
END;

CREATE TABLE tags (
    prompt_id   INTEGER NOT NULL REFERENCES prompts(id),
    name        TEXT NOT NULL,
    version_id  TEXT NOT NULL REFERENCES prompt_versions(id),
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (prompt_id, name)
);

CREATE TABLE tag_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id       INTEGER NOT NULL REFERENCES prompts(id),
    tag             TEXT NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('set', 'move', 'delete', 'rollback', 'promote')),
    from_version_id TEXT REFERENCES prompt_versions(id),
    to_version_id   TEXT REFERENCES prompt_versions(id),
    actor           TEXT NOT NULL,
    message         TEXT,
    at              TEXT NOT NULL,
    forced          INTEGER NOT NULL DEFAULT 0,
    evidence        TEXT
);

CREATE INDEX tag_events_by_tag ON tag_events (prompt_id, tag, id);

CREATE TRIGGER tag_events_no_update BEFORE UPDATE ON tag_events
BEGIN
    SELECT RAISE(ABORT, 'tag history is append-only');
END;
CREATE TRIGGER tag_events_no_delete BEFORE DELETE ON tag_events
BEGIN
    SELECT RAISE(ABORT, 'tag history is append-only');
END;
