package auth

import (
	"context"
	"sync"
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
	// sealSweepInterval is how often RunHousekeeping erases spent sealed
	// pairs (see eraseSpentSeals), and so how long at most, plus one sweep,
	// a sealed pair outlives the moment no retry may ask for it any more
	// (see sealPair).
	sealSweepInterval = 5 * time.Second
)

// Housekeep erases spent sealed pairs, records SESSION_EXPIRED for the
// sessions whose refresh token expired since the last round (recordExpiries),
// deletes expired login counters,
// retired refresh tokens past any possible expiry, long-ended sessions (with
// what is left of their history), security events past
// SECURITY_EVENT_RETENTION and outbox rows no handler took within it, and
// returns how many rows it deleted.
// Errors: SERVICE_UNAVAILABLE, or an internal database error.
func (s *Service) Housekeep(ctx context.Context) (int, error) {
	if _, err := s.eraseSpentSeals(ctx); err != nil {
		return 0, err
	}
	for {
		n, err := s.recordExpiries(ctx, housekeepingBatch)
		if err != nil {
			return 0, dbError(err)
		}
		if n < housekeepingBatch {
			break
		}
	}
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

// deleteEndedSessions deletes sessions that ended more than retention ago;
// an expired one only once its SESSION_EXPIRED is recorded.
func (s *Service) deleteEndedSessions(ctx context.Context, db bun.IDB, retention time.Duration, batch int) (int, error) {
	cutoff, arg := s.dialect.NowMinus(retention)
	ended := db.NewSelect().Model((*models.Session)(nil)).Column("id").
		WhereOr("revoked_at < "+cutoff, arg).
		WhereOr("refresh_expires_at < "+cutoff+" AND (revoked_at IS NOT NULL OR expiry_recorded)", arg).
		Limit(int64(batch)).Apply(s.dialect.ForUpdateSkipLocked)
	res, err := db.NewDelete().Model((*models.Session)(nil)).Where("id IN (?)", ended).Exec(ctx)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// recordExpiries records SESSION_EXPIRED for up to batch sessions whose
// refresh token expired while they were live, marking each (expiry_recorded)
// in the same transaction so that it is recorded once, and returns how many
// it recorded. It runs every housekeeping round (a minute in the server), so
// an expiry is recorded within about a minute of it, with the time it was
// recorded as the event's at, and no address or user agent (no request
// caused it). Other ends of a session (revoked_at) record their own event.
func (s *Service) recordExpiries(ctx context.Context, batch int) (int, error) {
	var n int
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		due := "revoked_at IS NULL AND NOT expiry_recorded AND refresh_expires_at <= " + s.dialect.Now
		ids := tx.NewSelect().Model((*models.Session)(nil)).Column("id").
			Where(due).
			Limit(int64(batch)).Apply(s.dialect.ForUpdateSkipLocked)
		var expired []models.Session
		_, err := tx.NewUpdate().Model((*models.Session)(nil)).
			Set("expiry_recorded = true").
			Where("id IN (?)", ids).Where(due).
			Returning("id, user_id, device_name").
			Exec(ctx, &expired)
		if err != nil {
			return err
		}
		n = len(expired)
		events := make([]Event, len(expired))
		for i := range expired {
			events[i] = sessionEvent(EventSessionExpired, &expired[i], nil)
		}
		return s.recordEvents(ctx, tx, events)
	})
	return n, err
}

// windowPassed returns an SQL condition, with one placeholder, and its
// argument: true when the reuse window of the rotation at column (a trusted
// identifier) has passed by the database's clock. It is superseded.retriable's
// test, so a sealed pair is never erased while a retry may ask for it.
func (s *Service) windowPassed(column string) (string, any) {
	cutoff, arg := s.dialect.NowMinus(s.cfg.ReuseWindow)
	return column + " <= " + cutoff, arg
}

// eraseSpentSeals erases every sealed pair that no retry may ask for any
// more (see sealPair): on a session row once its pair was used and the reuse
// window of its rotation has passed; of a retired token (whose successor was
// used) once its window has passed. It returns how many it erased.
// Errors: SERVICE_UNAVAILABLE, or an internal database error.
func (s *Service) eraseSpentSeals(ctx context.Context) (int, error) {
	total := 0
	for _, erase := range []func(context.Context, bun.IDB, int) (int, error){s.eraseSessionSeals, s.eraseRetiredSeals} {
		for {
			n, err := erase(ctx, s.db, housekeepingBatch)
			total += n
			if err != nil {
				return total, dbError(err)
			}
			if n < housekeepingBatch {
				break
			}
		}
	}
	return total, nil
}

// eraseSessionSeals and eraseRetiredSeals erase up to batch spent sealed
// pairs. Their conditions are those of the partial indexes of migration
// 20261130110000, so they read only the few rows whose pair was used within
// about the last window.
func (s *Service) eraseSessionSeals(ctx context.Context, db bun.IDB, batch int) (int, error) {
	passed, arg := s.windowPassed("prev_rotated_at")
	spent := "prev_sealed IS NOT NULL AND successor_used AND " + passed
	ids := db.NewSelect().Model((*models.Session)(nil)).Column("id").
		Where(spent, arg).
		Limit(int64(batch)).Apply(s.dialect.ForUpdateSkipLocked)
	res, err := db.NewUpdate().Model((*models.Session)(nil)).Set("prev_sealed = NULL").
		Where("id IN (?)", ids).Where(spent, arg).Exec(ctx)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (s *Service) eraseRetiredSeals(ctx context.Context, db bun.IDB, batch int) (int, error) {
	passed, arg := s.windowPassed("rotated_at")
	spent := "sealed IS NOT NULL AND (rotated_at IS NULL OR " + passed + ")"
	hashes := db.NewSelect().Model((*models.RetiredRefreshToken)(nil)).Column("token_hash").
		Where(spent, arg).
		Limit(int64(batch)).Apply(s.dialect.ForUpdateSkipLocked)
	res, err := db.NewUpdate().Model((*models.RetiredRefreshToken)(nil)).Set("sealed = NULL").
		Where("token_hash IN (?)", hashes).Where(spent, arg).Exec(ctx)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// RunHousekeeping calls Housekeep every interval, and eraseSpentSeals every
// sealSweepInterval (or interval, when shorter) on its own so that a long
// round of deletions never delays it, until ctx ends, logging failures; the
// next round retries. While it runs it also writes lastUsedAt in batches
// (touch.go). It returns when all have stopped.
func (s *Service) RunHousekeeping(ctx context.Context, interval time.Duration) {
	var wg sync.WaitGroup
	wg.Go(func() { s.runTouches(ctx) })
	wg.Go(func() {
		every(ctx, min(interval, sealSweepInterval), func(round context.Context) {
			if _, err := s.eraseSpentSeals(round); err != nil {
				s.log.WarnContext(ctx, "erasing spent sealed pairs", "err", err)
			}
		})
	})
	every(ctx, interval, func(round context.Context) {
		n, err := s.Housekeep(round)
		if err != nil {
			s.log.WarnContext(ctx, "housekeeping", "err", err, "deleted", n)
		} else if n > 0 {
			s.log.InfoContext(ctx, "housekeeping", "deleted", n)
		}
	})
	wg.Wait()
}

// every calls run every interval, with a context that ends after interval,
// until ctx ends.
func every(ctx context.Context, interval time.Duration, run func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			round, cancel := context.WithTimeout(ctx, interval)
			run(round)
			cancel()
		}
	}
}
