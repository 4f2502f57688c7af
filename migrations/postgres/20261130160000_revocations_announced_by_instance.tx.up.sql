-- A revocation the server makes no longer NOTIFYs from its transaction:
-- PostgreSQL holds one lock from a NOTIFYing transaction's commit through its
-- WAL flush, so such commits cannot share a flush, which capped logout at a
-- few hundred a second and made every instance's heartbeats queue behind it.
-- The instance that revokes announces it in its next heartbeat instead, as it
-- does rotations (auth/coherence.go), and marks its transaction with the
-- setting sessionauth.announced. The triggers stay for every other writer: an
-- operator's SQL, a command without the cache, an older instance.
CREATE OR REPLACE FUNCTION sessionauth_notify_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('sessionauth.announced', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('sessionauth_invalidate', 's:' || OLD.id::text);
    END IF;
    RETURN NULL;
END
$$;

--bun:split

CREATE OR REPLACE FUNCTION sessionauth_notify_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('sessionauth.announced', true) IS DISTINCT FROM 'on' THEN
        PERFORM pg_notify('sessionauth_invalidate', 'u:' || OLD.id::text);
    END IF;
    RETURN NULL;
END
$$;
