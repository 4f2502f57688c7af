-- A refresh token retired more than one generation ago keeps, for the reuse
-- window, the pair it was rotated into (sealed under itself), so that a retry
-- within the window gets that same pair as API.md promises.
ALTER TABLE retired_refresh_tokens ADD COLUMN rotated_at text CHECK (length(rotated_at) = 32);

--bun:split

ALTER TABLE retired_refresh_tokens ADD COLUMN sealed blob;
