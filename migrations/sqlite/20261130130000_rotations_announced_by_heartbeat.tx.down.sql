-- PostgreSQL announces session changes to other instances' caches here. An
-- embedded SQLite file has one process and no session cache, so there is
-- nothing to announce; the migration exists to keep both histories alike.
SELECT 1;
