-- An experiment your own code ran through the Phoenix client may name no prompt version: it
-- is runner's experiment all the same (listed, shown, compared), with no prompt and no version.
-- (Such experiments stored before this migration stay as they were: served on Phoenix's routes.)

ALTER TABLE experiments ALTER COLUMN prompt_id DROP NOT NULL;
ALTER TABLE experiments ALTER COLUMN version_id DROP NOT NULL;
ALTER TABLE experiments ADD CONSTRAINT experiments_link
    CHECK ((prompt_id IS NULL) = (version_id IS NULL));
