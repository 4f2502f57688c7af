-- SQLite's version of postgres/20261130100000_create_device_tokens: device
-- proofs, stored only as the SHA-256 of their token (auth/device.go).
CREATE TABLE device_tokens (
    token_hash   blob    PRIMARY KEY NOT NULL,
    user_id      text    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   text    NOT NULL CHECK (length(created_at) = 32),
    expires_at   text    NOT NULL CHECK (length(expires_at) = 32),
    failures     integer NOT NULL DEFAULT 0,
    window_start text    NOT NULL CHECK (length(window_start) = 32)
) STRICT;
CREATE INDEX device_tokens_user_id_idx ON device_tokens (user_id);
CREATE INDEX device_tokens_expires_at_idx ON device_tokens (expires_at);
