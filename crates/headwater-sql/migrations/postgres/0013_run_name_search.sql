-- Search by run name (contains, any case) through a trigram index when the
-- server has pg_trgm (PostgreSQL's contrib; trusted, so the database owner
-- may create it). Without it the search still works, reading runs newest
-- first; the migration does not fail for a missing extension.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm;
            CREATE INDEX IF NOT EXISTS flow_runs_name_trgm ON flow_runs USING gin (name gin_trgm_ops);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'pg_trgm cannot be created here (%): run names are searched without an index', SQLERRM;
        END;
    END IF;
END $$;
