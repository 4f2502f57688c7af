DROP INDEX IF EXISTS sessions_refresh_expires_at_idx;

--bun:split

DROP INDEX IF EXISTS sessions_revoked_at_idx;
