-- Attempts counted before their password is checked (auth/throttle.go): a
-- key's failures and its attempts still in flight together never exceed
-- its limit, so concurrent attempts cannot verify more passwords than the
-- limit allows; an in-flight attempt with the right password gives its
-- place back instead of becoming a failure.
ALTER TABLE login_throttle ADD COLUMN pending integer NOT NULL DEFAULT 0;
