-- What an experiment sent and how it scored, hashed: version, dataset content, model, endpoint,
-- evaluators and their files, repetitions, row limit, constants, renames, expected column and
-- judge model. compare and promote reuse an experiment only when this matches exactly.

ALTER TABLE experiments ADD COLUMN fingerprint TEXT;

CREATE INDEX experiments_by_fingerprint ON experiments (fingerprint, created_at);
