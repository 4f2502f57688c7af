-- See postgres/20261130140200_sessions_expiry_recorded.
ALTER TABLE sessions ADD COLUMN expiry_recorded integer NOT NULL DEFAULT 0;

--bun:split

CREATE INDEX sessions_unrecorded_expiry_idx ON sessions (refresh_expires_at)
    WHERE revoked_at IS NULL AND NOT expiry_recorded;
