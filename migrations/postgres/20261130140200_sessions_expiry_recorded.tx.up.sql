-- SESSION_EXPIRED is recorded by housekeeping, in the transaction that sets
-- this mark, once per session whose refresh token expired while it was live
-- (auth/housekeeping.go). Sessions that had expired before are recorded by
-- the first round after the upgrade.
ALTER TABLE sessions ADD COLUMN expiry_recorded boolean NOT NULL DEFAULT false;

--bun:split

-- The sessions housekeeping looks through: live or expired, not yet recorded.
CREATE INDEX sessions_unrecorded_expiry_idx ON sessions (refresh_expires_at)
    WHERE revoked_at IS NULL AND NOT expiry_recorded;
