-- SQLite's version of postgres/20261130140000_create_security_events (see
-- there). Times are fixed-width UTC text (see 20261123120000).
CREATE TABLE security_events (
    id            text PRIMARY KEY NOT NULL,
    user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          text NOT NULL,
    at            text NOT NULL CHECK (length(at) = 32),
    session_id    text,
    device_name   text,
    ip_address    text,
    user_agent    text,
    by_session_id text
) STRICT;
CREATE INDEX security_events_user_at_idx ON security_events (user_id, at DESC, id DESC);

--bun:split

CREATE INDEX security_events_at_idx ON security_events (at);

--bun:split

-- AUTOINCREMENT: ids never go back, so they order a user's rows.
CREATE TABLE security_event_outbox (
    id            integer PRIMARY KEY AUTOINCREMENT,
    handler       text    NOT NULL,
    event_id      text    NOT NULL,
    user_id       text    NOT NULL,
    kind          text    NOT NULL,
    at            text    NOT NULL CHECK (length(at) = 32),
    session_id    text,
    by_session_id text,
    attempts      integer NOT NULL DEFAULT 0,
    available_at  text    NOT NULL CHECK (length(available_at) = 32),
    claim         text
) STRICT;
CREATE INDEX security_event_outbox_head_idx ON security_event_outbox (handler, user_id, id);

--bun:split

CREATE INDEX security_event_outbox_due_idx ON security_event_outbox (handler, available_at);

--bun:split

CREATE INDEX security_event_outbox_at_idx ON security_event_outbox (at);
