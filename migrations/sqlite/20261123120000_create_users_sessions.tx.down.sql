DROP TABLE IF EXISTS retired_refresh_tokens;

--bun:split

DROP TABLE IF EXISTS sessions;

--bun:split

DROP TABLE IF EXISTS users;
