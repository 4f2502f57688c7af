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

// Housekeep deletes expired login counters and long-ended sessions (with
// their retired refresh tokens) and returns how many rows it deleted.
// Errors: SERVICE_UNAVAILABLE, or an internal database error.
func (s *Service) Housekeep(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := deleteExpiredThrottles(ctx, s.db, s.cfg.Throttle.Window, housekeepingBatch)
		total += n
		if err != nil {
			return total, dbError(err)
		}
		m, err := deleteEndedSessions(ctx, s.db, endedRetention, housekeepingBatch)
		total += m
		if err != nil {
			return total, dbError(err)
		}
		if n < housekeepingBatch && m < housekeepingBatch {
			return total, nil
		}
	}
}

func deleteEndedSessions(ctx context.Context, db bun.IDB, retention time.Duration, batch int) (int, error) {
	cutoff := sqlNow + " - ? * interval '1 microsecond'"
	ended := db.NewSelect().Model((*models.Session)(nil)).Column("id").
		WhereOr("revoked_at < "+cutoff, retention.Microseconds()).
		WhereOr("refresh_expires_at < "+cutoff, retention.Microseconds()).
		Limit(int64(batch)).For("UPDATE SKIP LOCKED")
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
