-- Nothing to change on SQLite: its foreign-key checks look the parent row up by the key they
-- reference, whatever other indexes exist. PostgreSQL's 0009 makes two indexes partial so its
-- planner cannot do otherwise; this one keeps both backends at the same schema version
-- (`GET /healthz` reports it).
SELECT 1;
