-- Each score's foreign key is checked with one lookup of its result by (experiment_id,
-- row_index, repetition). PostgreSQL plans that lookup once per connection, and planned while
-- the results table was still nearly empty it could pick any index that starts with
-- experiment_id (every estimate is one row), then match on experiment_id alone and read every
-- result of the experiment for each score: a 10,000-row experiment spent seconds per batch in
-- those checks. Partial indexes that the lookup cannot use leave it the primary key, whatever
-- the statistics say; the queries they serve name their predicate.

DROP INDEX results_by_latency;
CREATE INDEX results_ok_by_latency ON results (experiment_id, latency_ms) WHERE status = 'ok';

DROP INDEX results_by_row_id;
CREATE INDEX results_by_row_id ON results (experiment_id, row_id, repetition)
    WHERE row_id IS NOT NULL;
