CREATE FUNCTION sessionauth_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sessionauth_events', '');
    RETURN NULL;
END
$$;

--bun:split

CREATE TRIGGER security_event_outbox_notify AFTER INSERT ON security_event_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION sessionauth_notify_events();
