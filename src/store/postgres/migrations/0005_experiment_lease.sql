-- Who is running an experiment now: a run holds a lease it renews while it works, so a second
-- `resume` of the same experiment is refused instead of sending every missing row twice.

ALTER TABLE experiments ADD COLUMN lease_owner TEXT;
ALTER TABLE experiments ADD COLUMN lease_until TEXT COLLATE "C";
