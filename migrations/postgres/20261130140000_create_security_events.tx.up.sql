-- What happened to each account (API.md, "Account security"), written in the
-- same transaction as the change. Deleted with the account; housekeeping
-- deletes rows older than SECURITY_EVENT_RETENTION. session_id and
-- by_session_id are not foreign keys: an event outlives the session it names
-- (ended sessions are deleted after a day).
CREATE TABLE security_events (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          text        NOT NULL,
    at            timestamptz NOT NULL,
    session_id    uuid,
    device_name   text,
    ip_address    text,
    user_agent    text,
    by_session_id uuid
);
-- mySecurityEvents: newest first per user, keyset on (at, id); also the
-- per-account count that caps failure events.
CREATE INDEX security_events_user_at_idx ON security_events (user_id, at DESC, id DESC);

--bun:split

-- Retention deletes.
CREATE INDEX security_events_at_idx ON security_events (at);

--bun:split

-- The transactional outbox: one row per (event, handler), inserted in the
-- event's transaction and deleted once that handler has taken it. It is not
-- tied to users, so it survives the account's deletion, and it holds ids
-- only: an event's device name, address and user agent are read from
-- security_events at delivery, and are gone with the account.
-- available_at is when the row may next be claimed: its insertion, the end
-- of a claim's lease, or the end of a failed attempt's backoff.
CREATE TABLE security_event_outbox (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handler       text        NOT NULL,
    event_id      uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    kind          text        NOT NULL,
    at            timestamptz NOT NULL,
    session_id    uuid,
    by_session_id uuid,
    attempts      integer     NOT NULL DEFAULT 0,
    available_at  timestamptz NOT NULL,
    claim         uuid
);
-- A row is deliverable only when it is the oldest of its (handler, user).
CREATE INDEX security_event_outbox_head_idx ON security_event_outbox (handler, user_id, id);

--bun:split

CREATE INDEX security_event_outbox_due_idx ON security_event_outbox (handler, available_at);

--bun:split

CREATE INDEX security_event_outbox_at_idx ON security_event_outbox (at);

--bun:split

-- Wakes every instance's deliverer when events commit (a NOTIFY leaves at
-- commit, and never for a rolled-back transaction).
CREATE FUNCTION sessionauth_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sessionauth_events', '');
    RETURN NULL;
END
$$;

--bun:split

CREATE TRIGGER security_event_outbox_notify AFTER INSERT ON security_event_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION sessionauth_notify_events();
