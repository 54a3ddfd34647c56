-- A protected tag moved (rolled back, deleted) by a caller with the deploy role, a deploy token
-- of `runner serve`: allowed without force, so recorded apart from a forced change. Earlier
-- events were made before the role existed, so none of them is one.

ALTER TABLE tag_events ADD COLUMN deploy BOOLEAN NOT NULL DEFAULT FALSE CHECK (NOT (forced AND deploy));
