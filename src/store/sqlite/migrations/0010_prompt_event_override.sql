-- Archiving a prompt that holds a protected tag takes that tag offline for every consumer: it
-- needs force or the deploy role, and the prompt's history records which, as tag events do.
-- Earlier events were made before archiving was guarded, so none of them is either.

ALTER TABLE prompt_events ADD COLUMN forced INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prompt_events ADD COLUMN deploy INTEGER NOT NULL DEFAULT 0 CHECK (NOT (forced AND deploy));
