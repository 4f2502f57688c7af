-- Housekeeping finds ended sessions by these; partial where it can be.
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

--bun:split

CREATE INDEX sessions_refresh_expires_at_idx ON sessions (refresh_expires_at);
