DROP INDEX sessions_unrecorded_expiry_idx;

--bun:split

ALTER TABLE sessions DROP COLUMN expiry_recorded;
