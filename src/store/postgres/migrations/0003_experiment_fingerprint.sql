-- What an experiment sent and how it scored, hashed: compare and promote reuse an experiment
-- only when this matches exactly.

ALTER TABLE experiments ADD COLUMN fingerprint TEXT COLLATE "C";

CREATE INDEX experiments_by_fingerprint ON experiments (fingerprint, created_at);
