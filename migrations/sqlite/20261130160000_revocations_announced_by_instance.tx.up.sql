-- PostgreSQL stops NOTIFYing the server's own revocations here (the instance
-- announces them in its heartbeats). An embedded SQLite file has one process
-- and no session cache; the migration exists to keep both histories alike.
SELECT 1;
