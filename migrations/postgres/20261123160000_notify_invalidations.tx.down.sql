DROP TRIGGER IF EXISTS users_invalidate ON users;

--bun:split

DROP TRIGGER IF EXISTS sessions_invalidate_delete ON sessions;

--bun:split

DROP TRIGGER IF EXISTS sessions_invalidate_update ON sessions;

--bun:split

DROP FUNCTION IF EXISTS sessionauth_notify_user();

--bun:split

DROP FUNCTION IF EXISTS sessionauth_notify_session();
