-- A refresh no longer NOTIFYs from its transaction: PostgreSQL serialises the
-- commits of NOTIFYing transactions through their WAL flush, which capped
-- refresh below 1,000/s. The instance that rotates a pair announces the
-- rotation in its next heartbeat instead (auth/coherence.go). So the trigger
-- stays silent for an UPDATE that is a rotation, recognised by its shape (the
-- replaced refresh token becomes prev_refresh_hash, and the session is not
-- revoked by it). Every other change of a token hash, an expiry or revoked_at
-- still NOTIFYs, as do deletes and user changes.
DROP TRIGGER sessions_invalidate_update ON sessions;

--bun:split

CREATE TRIGGER sessions_invalidate_update AFTER UPDATE ON sessions FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR ((OLD.access_hash IS DISTINCT FROM NEW.access_hash
               OR OLD.access_expires_at IS DISTINCT FROM NEW.access_expires_at
               OR OLD.refresh_expires_at IS DISTINCT FROM NEW.refresh_expires_at)
              AND NEW.prev_refresh_hash IS DISTINCT FROM OLD.refresh_hash))
    EXECUTE FUNCTION sessionauth_notify_session();
