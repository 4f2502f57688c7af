-- The outbox's deliverers are woken by the notification that announces the
-- events to the subscriptions' streams (eventstream.go, one per user, at
-- commit), so the outbox's own trigger NOTIFYed a second time for the same
-- commit, and every listening connection of the database was signalled for
-- both.
DROP TRIGGER security_event_outbox_notify ON security_event_outbox;

--bun:split

DROP FUNCTION sessionauth_notify_events();
