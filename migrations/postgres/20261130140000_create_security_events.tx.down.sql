DROP TABLE security_event_outbox;

--bun:split

DROP FUNCTION sessionauth_notify_events();

--bun:split

DROP TABLE security_events;
