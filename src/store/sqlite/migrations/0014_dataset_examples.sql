-- Datasets written through the Phoenix dataset API: a description and metadata per dataset,
-- and the shape of each version. A `rows` version is a file as pushed (csv or jsonl); an
-- `examples` version is JSONL with one example a line, {"id", "input", "output", "metadata"}
-- (and "external_id" when the client gave one), in the order the examples were given.

ALTER TABLE datasets ADD COLUMN description TEXT;
ALTER TABLE datasets ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE dataset_versions ADD COLUMN shape TEXT NOT NULL DEFAULT 'rows'
    CHECK (shape IN ('rows', 'examples'));
