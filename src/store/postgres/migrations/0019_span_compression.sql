-- A span's texts (its attributes, messages and variables: about 5 KB) are compressed by LZ4
-- instead of PostgreSQL's default pglz, which took half the server's CPU during span ingest.
-- Only new values are compressed so; a server built without LZ4 (or older than 14, which
-- cannot choose) keeps pglz, and the migration goes on.
DO $$
BEGIN
    ALTER TABLE spans
        ALTER COLUMN attributes SET COMPRESSION lz4,
        ALTER COLUMN input SET COMPRESSION lz4,
        ALTER COLUMN output SET COMPRESSION lz4,
        ALTER COLUMN variables SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'spans keep the server''s default compression: %', SQLERRM;
END
$$;
