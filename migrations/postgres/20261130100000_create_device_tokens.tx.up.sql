-- Device proofs (OWASP "device cookies", auth/device.go): a device that proved
-- a user's password holds a random token, stored here only as its SHA-256,
-- that exempts its logins from the per-email and per-address lockouts.
-- Each proof has its own failure counter, in a fixed window like
-- login_throttle's; a proof that fails too often is deleted.
CREATE TABLE device_tokens (
    token_hash   bytea       PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    failures     integer     NOT NULL DEFAULT 0,
    window_start timestamptz NOT NULL
);
CREATE INDEX device_tokens_user_id_idx ON device_tokens (user_id);
CREATE INDEX device_tokens_expires_at_idx ON device_tokens (expires_at);
