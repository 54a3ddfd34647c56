-- Prompts, immutable versions, movable tags and the append-only history of tag moves.
-- Text compares byte by byte (COLLATE "C"), as in the SQLite store, so every listing sorts
-- the same on both backends whatever the database's locale.

CREATE TABLE prompts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  TEXT COLLATE "C" NOT NULL
);

CREATE TABLE prompt_versions (
    id            TEXT COLLATE "C" PRIMARY KEY,
    prompt_id     BIGINT NOT NULL REFERENCES prompts(id),
    seq           BIGINT NOT NULL CHECK (seq >= 1),
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
    created_at    TEXT COLLATE "C" NOT NULL,
    UNIQUE (prompt_id, seq)
);

-- Versions are immutable and append-only, whatever program connects.
CREATE FUNCTION runner_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER prompt_versions_no_update BEFORE UPDATE ON prompt_versions
    FOR EACH ROW EXECUTE FUNCTION runner_refuse('prompt versions are immutable');
CREATE TRIGGER prompt_versions_no_delete BEFORE DELETE ON prompt_versions
    FOR EACH ROW EXECUTE FUNCTION runner_refuse('prompt versions are append-only');
CREATE TRIGGER prompt_versions_no_truncate BEFORE TRUNCATE ON prompt_versions
    FOR EACH STATEMENT EXECUTE FUNCTION runner_refuse('prompt versions are append-only');

CREATE TABLE tags (
    prompt_id   BIGINT NOT NULL REFERENCES prompts(id),
    name        TEXT COLLATE "C" NOT NULL,
    version_id  TEXT COLLATE "C" NOT NULL REFERENCES prompt_versions(id),
    updated_at  TEXT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (prompt_id, name)
);

CREATE TABLE tag_events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prompt_id       BIGINT NOT NULL REFERENCES prompts(id),
    tag             TEXT COLLATE "C" NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('set', 'move', 'delete', 'rollback', 'promote')),
    from_version_id TEXT COLLATE "C" REFERENCES prompt_versions(id),
    to_version_id   TEXT COLLATE "C" REFERENCES prompt_versions(id),
    actor           TEXT NOT NULL,
    message         TEXT,
    at              TEXT NOT NULL,
    forced          BOOLEAN NOT NULL DEFAULT FALSE,
    evidence        TEXT
);

CREATE INDEX tag_events_by_tag ON tag_events (prompt_id, tag, id);

CREATE TRIGGER tag_events_no_update BEFORE UPDATE ON tag_events
    FOR EACH ROW EXECUTE FUNCTION runner_refuse('tag history is append-only');
CREATE TRIGGER tag_events_no_delete BEFORE DELETE ON tag_events
    FOR EACH ROW EXECUTE FUNCTION runner_refuse('tag history is append-only');
CREATE TRIGGER tag_events_no_truncate BEFORE TRUNCATE ON tag_events
    FOR EACH STATEMENT EXECUTE FUNCTION runner_refuse('tag history is append-only');
