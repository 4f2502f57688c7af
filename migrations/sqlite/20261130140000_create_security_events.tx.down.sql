DROP TABLE security_event_outbox;

--bun:split

DROP TABLE security_events;
