-- Latency percentiles of an experiment read one row at an offset of this index instead of
-- sorting every result.

CREATE INDEX results_by_latency ON results (experiment_id, status, latency_ms);
