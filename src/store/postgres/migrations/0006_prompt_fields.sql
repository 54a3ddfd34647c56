-- What Phoenix keeps on the prompt rather than on a version: its description and metadata
-- (PATCH /v1/prompts/{id} changes them); archiving instead of deleting (an archived prompt is
-- hidden from lists and lookups, and keeps every version and tag event); the provider a version
-- was written for (before this it was a `model_provider` key inside the version's metadata); and
-- the append-only history of prompt-level changes.

ALTER TABLE prompts ADD COLUMN description TEXT;
ALTER TABLE prompts ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE prompts ADD COLUMN archived_at TEXT COLLATE "C";
ALTER TABLE prompt_versions ADD COLUMN provider TEXT;

-- The prompt takes what its newest version said of it.
UPDATE prompts SET
    description = (SELECT v.description FROM prompt_versions v WHERE v.prompt_id = prompts.id
                   ORDER BY v.seq DESC LIMIT 1),
    metadata = COALESCE((SELECT (v.metadata::jsonb - 'model_provider')::text FROM prompt_versions v
                         WHERE v.prompt_id = prompts.id ORDER BY v.seq DESC LIMIT 1), '{}');

CREATE TABLE prompt_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prompt_id  BIGINT NOT NULL REFERENCES prompts(id),
    action     TEXT NOT NULL CHECK (action IN ('update', 'archive', 'restore')),
    actor      TEXT NOT NULL,
    at         TEXT NOT NULL
);

CREATE INDEX prompt_events_by_prompt ON prompt_events (prompt_id, id);

CREATE TRIGGER prompt_events_no_update BEFORE UPDATE ON prompt_events
    FOR EACH ROW EXECUTE FUNCTION runner_refuse('prompt history is append-only');
CREATE TRIGGER prompt_events_no_delete BEFORE DELETE ON prompt_events
    FOR EACH ROW EXECUTE FUNCTION runner_refuse('prompt history is append-only');
CREATE TRIGGER prompt_events_no_truncate BEFORE TRUNCATE ON prompt_events
    FOR EACH STATEMENT EXECUTE FUNCTION runner_refuse('prompt history is append-only');
