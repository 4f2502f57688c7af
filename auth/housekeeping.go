package auth

import (
	"context"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// Housekeeping keeps the tables from growing without bound. It deletes in
// bounded batches, skipping rows another instance is deleting, so every
// instance may run it at once.
const (
	housekeepingBatch = 1000
	// endedRetention is how long an ended session (revoked, or its refresh
	// token expired) is kept: long enough that its tokens are still
	// recognised and answered precisely, then it goes with its history.
	endedRetention = 24 * time.Hour
)

// Housekeep deletes expired login counters, retired refresh tokens past any
// possible expiry, long-ended sessions (with what is left of their
// history), security events past SECURITY_EVENT_RETENTION and outbox rows
// no handler took within it, and returns how many rows it deleted.
// Errors: SERVICE_UNAVAILABLE, or an internal database error.
func (s *Service) Housekeep(ctx context.Context) (int, error) {
	steps := []func(context.Context) (int, error){
		func(ctx context.Context) (int, error) {
			return s.deleteExpiredThrottles(ctx, s.db, s.cfg.Throttle.Window, housekeepingBatch)
		},
		func(ctx context.Context) (int, error) {
			return s.deleteRetiredTokens(ctx, s.db, s.cfg.RefreshTTL, housekeepingBatch)
		},
		func(ctx context.Context) (int, error) {
			return s.deleteEndedSessions(ctx, s.db, endedRetention, housekeepingBatch)
		},
		func(ctx context.Context) (int, error) {
			return s.deleteOldEvents(ctx, s.db, s.eventRetention(), housekeepingBatch)
		},
		func(ctx context.Context) (int, error) {
			return s.deleteStaleOutbox(ctx, s.db, s.eventRetention(), housekeepingBatch)
		},
	}
	total := 0
	for more := true; more; {
		more = false
		for _, step := range steps {
			n, err := step(ctx)
			total += n
			if err != nil {
				return total, dbError(err)
			}
			more = more || n == housekeepingBatch
		}
	}
	return total, nil
}

// deleteRetiredTokens removes retired refresh tokens of live sessions once
// they have expired for certain: a token retired at t was issued before t,
// so it expired by t + ttl. A live session rotating for weeks would
// otherwise keep every token it ever had.
func (s *Service) deleteRetiredTokens(ctx context.Context, db bun.IDB, ttl time.Duration, batch int) (int, error) {
	cutoff, arg := s.dialect.NowMinus(ttl)
	old := db.NewSelect().Model((*models.RetiredRefreshToken)(nil)).Column("token_hash").
		Where("retired_at < "+cutoff, arg).
		Limit(int64(batch)).Apply(s.dialect.ForUpdateSkipLocked)
	res, err := db.NewDelete().Model((*models.RetiredRefreshToken)(nil)).Where("token_hash IN (?)", old).Exec(ctx)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (s *Service) deleteEndedSessions(ctx context.Context, db bun.IDB, retention time.Duration, batch int) (int, error) {
	cutoff, arg := s.dialect.NowMinus(retention)
	ended := db.NewSelect().Model((*models.Session)(nil)).Column("id").
		WhereOr("revoked_at < "+cutoff, arg).
		WhereOr("refresh_expires_at < "+cutoff, arg).
		Limit(int64(batch)).Apply(s.dialect.ForUpdateSkipLocked)
	res, err := db.NewDelete().Model((*models.Session)(nil)).Where("id IN (?)", ended).Exec(ctx)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// RunHousekeeping calls Housekeep every interval until ctx ends, logging
// failures; the next round retries.
func (s *Service) RunHousekeeping(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			round, cancel := context.WithTimeout(ctx, interval)
			n, err := s.Housekeep(round)
			cancel()
			if err != nil {
				s.log.WarnContext(ctx, "housekeeping", "err", err, "deleted", n)
			} else if n > 0 {
				s.log.InfoContext(ctx, "housekeeping", "deleted", n)
			}
		}
	}
}
