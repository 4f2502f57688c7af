DROP TRIGGER sessions_invalidate_update ON sessions;

--bun:split

CREATE TRIGGER sessions_invalidate_update AFTER UPDATE ON sessions FOR EACH ROW
    WHEN (OLD.access_hash IS DISTINCT FROM NEW.access_hash OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.access_expires_at IS DISTINCT FROM NEW.access_expires_at
          OR OLD.refresh_expires_at IS DISTINCT FROM NEW.refresh_expires_at)
    EXECUTE FUNCTION sessionauth_notify_session();
