ALTER TABLE retired_refresh_tokens DROP COLUMN sealed;

--bun:split

ALTER TABLE retired_refresh_tokens DROP COLUMN rotated_at;
