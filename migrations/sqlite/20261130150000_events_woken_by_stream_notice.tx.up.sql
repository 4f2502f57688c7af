-- PostgreSQL stops NOTIFYing the outbox separately here (the events'
-- announcement to the streams wakes the deliverers). An embedded SQLite file
-- wakes them in-process; the migration exists to keep both histories alike.
SELECT 1;
