-- Archiving a prompt that holds a protected tag takes that tag offline for every consumer: it
-- needs force or the deploy role, and the prompt's history records which, as tag events do.
-- Earlier events were made before archiving was guarded, so none of them is either.

ALTER TABLE prompt_events ADD COLUMN forced BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE prompt_events ADD COLUMN deploy BOOLEAN NOT NULL DEFAULT FALSE CHECK (NOT (forced AND deploy));
