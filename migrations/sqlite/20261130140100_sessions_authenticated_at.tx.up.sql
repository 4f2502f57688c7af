-- See postgres/20261130140100_sessions_authenticated_at. SQLite adds a NOT
-- NULL column only with a constant default: the epoch, which a raw insert
-- that omits the column gets (its password proof then counts as long ago,
-- the safe side); the service always sets it.
ALTER TABLE sessions ADD COLUMN authenticated_at text NOT NULL
    DEFAULT '1970-01-01 00:00:00.000000+00:00' CHECK (length(authenticated_at) = 32);

--bun:split

UPDATE sessions SET authenticated_at = created_at;
