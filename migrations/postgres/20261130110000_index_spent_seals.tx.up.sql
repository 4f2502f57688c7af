-- A sealed pair is erased soon after no retry may ask for it any more: once
-- its pair was used and the reuse window has passed (auth/token.go, sealPair;
-- auth/housekeeping.go, eraseSpentSeals, every few seconds). These partial
-- indexes hold only the rows that sweep may have to erase, a few seconds'
-- worth of rotations, so it never reads the rest of either table.
CREATE INDEX sessions_spent_seal_idx ON sessions (prev_rotated_at)
    WHERE prev_sealed IS NOT NULL AND successor_used;

--bun:split

CREATE INDEX retired_refresh_tokens_sealed_idx ON retired_refresh_tokens (rotated_at)
    WHERE sealed IS NOT NULL;
