-- When the password was last proven on the session: its sign-in, or
-- reauthenticate. Existing sessions were signed in with a password at
-- created_at. The default serves raw inserts (cmd/loadtest's prefill); the
-- service always sets it.
ALTER TABLE sessions ADD COLUMN authenticated_at timestamptz;

--bun:split

UPDATE sessions SET authenticated_at = created_at;

--bun:split

ALTER TABLE sessions ALTER COLUMN authenticated_at SET NOT NULL;

--bun:split

ALTER TABLE sessions ALTER COLUMN authenticated_at SET DEFAULT now();
