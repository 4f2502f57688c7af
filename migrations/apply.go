package migrations

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/migrate"
)

// lockKey is the PostgreSQL advisory-lock key that serialises migration runs
// (an arbitrary constant: "sessauth" in ASCII).
const lockKey = 0x7365737361757468

// Apply brings db's schema up to date with the migrations of its backend.
//
// On PostgreSQL, instances starting at the same moment queue on a
// session-level advisory lock, so each migration is applied once; the lock
// dies with its connection, so a crashed run never leaves a stale lock behind
// (unlike bun's lock table, which would need a manual unlock). A SQLite file
// belongs to one process, the development server, so it takes no lock.
func Apply(ctx context.Context, db *bun.DB) (err error) {
	if db.Dialect().Name() == dialect.PG {
		unlock, lockErr := lock(ctx, db)
		if lockErr != nil {
			return lockErr
		}
		defer func() {
			if unlockErr := unlock(); err == nil && unlockErr != nil {
				err = fmt.Errorf("migrate: unlock: %w", unlockErr)
			}
		}()
	}
	m := migrate.NewMigrator(db, For(db), migrate.WithMarkAppliedOnSuccess(true))
	if err := m.Init(ctx); err != nil {
		return fmt.Errorf("migrate: init: %w", err)
	}
	if _, err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// lock takes PostgreSQL's advisory lock on a connection of its own and
// returns the function that releases it.
func lock(ctx context.Context, db *bun.DB) (unlock func() error, err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", int64(lockKey)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	return func() error {
		defer conn.Close()
		_, err := conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", int64(lockKey))
		return err
	}, nil
}
