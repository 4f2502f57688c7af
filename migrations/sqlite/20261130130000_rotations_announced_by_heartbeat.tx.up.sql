-- PostgreSQL stops NOTIFYing rotations here (instances announce them in their
-- heartbeats). An embedded SQLite file has one process and no session cache;
-- the migration exists to keep both histories alike.
SELECT 1;
