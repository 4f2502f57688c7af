DROP INDEX IF EXISTS retired_refresh_tokens_sealed_idx;

--bun:split

DROP INDEX IF EXISTS sessions_spent_seal_idx;
