package migrations

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

// lockKey is the PostgreSQL advisory-lock key that serialises migration runs
// (an arbitrary constant: "sessauth" in ASCII).
const lockKey = 0x7365737361757468

// Apply brings db's schema up to date. Instances starting at the same moment
// queue on a session-level advisory lock, so each migration is applied once;
// the lock dies with its connection, so a crashed run never leaves a stale
// lock behind (unlike bun's lock table, which would need a manual unlock).
func Apply(ctx context.Context, db *bun.DB) (err error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", int64(lockKey)); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer func() {
		_, unlockErr := conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", int64(lockKey))
		if err == nil && unlockErr != nil {
			err = fmt.Errorf("migrate: unlock: %w", unlockErr)
		}
	}()
	m := migrate.NewMigrator(db, Migrations, migrate.WithMarkAppliedOnSuccess(true))
	if err := m.Init(ctx); err != nil {
		return fmt.Errorf("migrate: init: %w", err)
	}
	if _, err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
