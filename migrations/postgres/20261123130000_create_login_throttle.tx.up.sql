-- Failed-login counters shared by every instance: one row per email key
-- ("email:<canonical email>") and per client address ("ip:<address>").
CREATE TABLE login_throttle (
    key          text        PRIMARY KEY,
    failures     integer     NOT NULL,
    window_start timestamptz NOT NULL
);
CREATE INDEX login_throttle_window_start_idx ON login_throttle (window_start);
