-- Every change that must end a cached access token anywhere is announced on
-- the channel sessionauth_invalidate, from inside the changing transaction:
-- a rotated access token, a changed expiry, a revoked or deleted session, a
-- changed or deleted user. Instances LISTEN and evict (auth/cache.go).
CREATE FUNCTION sessionauth_notify_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sessionauth_invalidate', 's:' || OLD.id::text);
    RETURN NULL;
END
$$;

--bun:split

CREATE FUNCTION sessionauth_notify_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sessionauth_invalidate', 'u:' || OLD.id::text);
    RETURN NULL;
END
$$;

--bun:split

CREATE TRIGGER sessions_invalidate_update AFTER UPDATE ON sessions FOR EACH ROW
    WHEN (OLD.access_hash IS DISTINCT FROM NEW.access_hash OR OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
          OR OLD.access_expires_at IS DISTINCT FROM NEW.access_expires_at
          OR OLD.refresh_expires_at IS DISTINCT FROM NEW.refresh_expires_at)
    EXECUTE FUNCTION sessionauth_notify_session();

--bun:split

CREATE TRIGGER sessions_invalidate_delete AFTER DELETE ON sessions FOR EACH ROW
    EXECUTE FUNCTION sessionauth_notify_session();

--bun:split

CREATE TRIGGER users_invalidate AFTER UPDATE OR DELETE ON users FOR EACH ROW
    EXECUTE FUNCTION sessionauth_notify_user();
