-- Attempts counted before their password is checked (auth/throttle.go): a
-- key's failures and its attempts still in flight together never exceed
-- its limit, so concurrent attempts cannot verify more passwords than the
-- limit allows; an in-flight attempt with the right password gives its
-- place back instead of becoming a failure.
ALTER TABLE login_throttle ADD COLUMN pending integer NOT NULL DEFAULT 0;

--bun:split

-- Sign-up attempts per client address (an IPv4 address, or an IPv6 /64),
-- counted like login_throttle's failures in SIGNUP_WINDOW.
CREATE TABLE signup_throttle (
    key          text    PRIMARY KEY NOT NULL,
    failures     integer NOT NULL,
    pending      integer NOT NULL DEFAULT 0,
    window_start text    NOT NULL CHECK (length(window_start) = 32)
) STRICT;
CREATE INDEX signup_throttle_window_start_idx ON signup_throttle (window_start);
