CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL,
    email_key     text        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_email_key_idx ON users (email_key);

--bun:split

CREATE TABLE sessions (
    id                 uuid        PRIMARY KEY,
    user_id            uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_name        text,
    user_agent         text,
    ip_address         text,
    created_at         timestamptz NOT NULL,
    last_used_at       timestamptz NOT NULL,
    access_hash        bytea       NOT NULL,
    access_expires_at  timestamptz NOT NULL,
    refresh_hash       bytea       NOT NULL,
    refresh_expires_at timestamptz NOT NULL,
    prev_refresh_hash  bytea,
    prev_rotated_at    timestamptz,
    prev_sealed        bytea,
    successor_used     boolean     NOT NULL DEFAULT false,
    revoked_at         timestamptz
);
CREATE UNIQUE INDEX sessions_access_hash_idx ON sessions (access_hash);
CREATE UNIQUE INDEX sessions_refresh_hash_idx ON sessions (refresh_hash);
CREATE UNIQUE INDEX sessions_prev_refresh_hash_idx ON sessions (prev_refresh_hash);
CREATE INDEX sessions_user_id_idx ON sessions (user_id, last_used_at DESC);

--bun:split

CREATE TABLE retired_refresh_tokens (
    token_hash bytea       PRIMARY KEY,
    session_id uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    retired_at timestamptz NOT NULL
);
CREATE INDEX retired_refresh_tokens_session_id_idx ON retired_refresh_tokens (session_id);
