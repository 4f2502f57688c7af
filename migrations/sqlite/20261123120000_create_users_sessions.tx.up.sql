-- SQLite's version of postgres/20261123120000_create_users_sessions. Ids are
-- UUIDs as canonical text and hashes are blobs. Times are text in one
-- fixed-width UTC layout, "2026-11-23 12:00:05.123000+00:00" (32 characters,
-- see internal/database), so that they compare correctly as strings; the
-- CHECKs hold every writer to it.
CREATE TABLE users (
    id            text PRIMARY KEY NOT NULL,
    email         text NOT NULL,
    email_key     text NOT NULL,
    password_hash text NOT NULL,
    created_at    text NOT NULL CHECK (length(created_at) = 32)
) STRICT;
CREATE UNIQUE INDEX users_email_key_idx ON users (email_key);

--bun:split

CREATE TABLE sessions (
    id                 text    PRIMARY KEY NOT NULL,
    user_id            text    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_name        text,
    user_agent         text,
    ip_address         text,
    created_at         text    NOT NULL CHECK (length(created_at) = 32),
    last_used_at       text    NOT NULL CHECK (length(last_used_at) = 32),
    access_hash        blob    NOT NULL,
    access_expires_at  text    NOT NULL CHECK (length(access_expires_at) = 32),
    refresh_hash       blob    NOT NULL,
    refresh_expires_at text    NOT NULL CHECK (length(refresh_expires_at) = 32),
    prev_refresh_hash  blob,
    prev_rotated_at    text    CHECK (length(prev_rotated_at) = 32),
    prev_sealed        blob,
    successor_used     integer NOT NULL DEFAULT 0,
    revoked_at         text    CHECK (length(revoked_at) = 32)
) STRICT;
CREATE UNIQUE INDEX sessions_access_hash_idx ON sessions (access_hash);
CREATE UNIQUE INDEX sessions_refresh_hash_idx ON sessions (refresh_hash);
CREATE UNIQUE INDEX sessions_prev_refresh_hash_idx ON sessions (prev_refresh_hash);
CREATE INDEX sessions_user_id_idx ON sessions (user_id, last_used_at DESC);

--bun:split

CREATE TABLE retired_refresh_tokens (
    token_hash blob PRIMARY KEY NOT NULL,
    session_id text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    retired_at text NOT NULL CHECK (length(retired_at) = 32)
) STRICT;
CREATE INDEX retired_refresh_tokens_session_id_idx ON retired_refresh_tokens (session_id);
