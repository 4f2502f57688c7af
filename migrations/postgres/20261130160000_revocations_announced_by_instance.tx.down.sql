CREATE OR REPLACE FUNCTION sessionauth_notify_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sessionauth_invalidate', 's:' || OLD.id::text);
    RETURN NULL;
END
$$;

--bun:split

CREATE OR REPLACE FUNCTION sessionauth_notify_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sessionauth_invalidate', 'u:' || OLD.id::text);
    RETURN NULL;
END
$$;
