-- Failed-login counters: one row per email key ("email:<canonical email>")
-- and per client address ("ip:<address>").
CREATE TABLE login_throttle (
    key          text    PRIMARY KEY NOT NULL,
    failures     integer NOT NULL,
    window_start text    NOT NULL CHECK (length(window_start) = 32)
) STRICT;
CREATE INDEX login_throttle_window_start_idx ON login_throttle (window_start);
