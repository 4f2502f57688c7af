ALTER TABLE retired_refresh_tokens DROP COLUMN IF EXISTS sealed;

--bun:split

ALTER TABLE retired_refresh_tokens DROP COLUMN IF EXISTS rotated_at;
