-- The work queue's index by state (experiment, state, row, repetition) is dropped. Every
-- change of an item's state wrote a new entry into it, and the old one stayed until a vacuum:
-- mid-run, a claim read through the entries of every item claimed before it and sorted what
-- was left (32 ms a claim with four workers), and completing a batch walked every lease ever
-- taken, then matched the batch against each one (4–10 ms).
-- Two partial indexes take its place. A claim walks the items not done in row order from
-- where this store last claimed (and from the first row when that finds too few, never
-- reading the done ones); what looks for leases (renewals, hand-backs, the owners that share a
-- rate limit) reads the leases alone. A completion looks each item up by its primary key.
--
-- The owner is set exactly while an item is leased, so "leased by X" is "owner is X": the
-- completing UPDATE asks only the owner, and the planner has no index on state to prefer over
-- the key. Rows that break the rule (none that runner wrote) are put right first. The check
-- and the new indexes read every item once, holding off workers of the store meanwhile.

UPDATE work_items SET lease_owner = NULL, lease_until = NULL
    WHERE state <> 'leased' AND lease_owner IS NOT NULL;
UPDATE work_items SET state = 'pending', lease_until = NULL
    WHERE state = 'leased' AND lease_owner IS NULL;
ALTER TABLE work_items ADD CONSTRAINT work_items_owner_while_leased
    CHECK ((state = 'leased') = (lease_owner IS NOT NULL));

DROP INDEX work_items_by_state;
CREATE INDEX work_items_open ON work_items (experiment_id, row_index, repetition)
    WHERE state <> 'done';
CREATE INDEX work_items_leased ON work_items (experiment_id, lease_owner) WHERE state = 'leased';
