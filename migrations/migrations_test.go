package migrations_test

import (
	"testing"

	"github.com/uptrace/bun/migrate"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/migrations"
)

// TestBackendsHaveTheSameMigrations: a schema change is made on both
// backends, under one name, or the two drift apart.
func TestBackendsHaveTheSameMigrations(t *testing.T) {
	names := func(ms *migrate.Migrations) []string {
		var out []string
		for _, m := range ms.Sorted() {
			if m.Up == nil || m.Down == nil {
				t.Errorf("migration %s_%s lacks its up or down file", m.Name, m.Comment)
			}
			out = append(out, m.Name+"_"+m.Comment)
		}
		return out
	}
	pg, lite := names(migrations.Postgres), names(migrations.SQLite)
	if len(pg) == 0 || len(pg) != len(lite) {
		t.Fatalf("postgres has %d migrations, sqlite %d", len(pg), len(lite))
	}
	for i := range pg {
		if pg[i] != lite[i] {
			t.Fatalf("migration %d is %s on postgres, %s on sqlite", i, pg[i], lite[i])
		}
	}
}

// TestDownAndUpAgain applies every migration, rolls them all back, and
// applies them again, on the backend the tests run on.
func TestDownAndUpAgain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.Open(pgtest.NewURL(t))
	defer db.Close()
	if err := migrations.Apply(ctx, db); err != nil {
		t.Fatal(err)
	}
	m := migrate.NewMigrator(db, migrations.For(db))
	group, err := m.Rollback(ctx)
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if n := len(group.Migrations); n != len(migrations.For(db).Sorted()) {
		t.Fatalf("rolled back %d migrations, want all", n)
	}
	if _, err := db.NewSelect().Table("users").Exists(ctx); err == nil {
		t.Fatal("the users table survived the rollback")
	}
	if err := migrations.Apply(ctx, db); err != nil {
		t.Fatalf("applying again: %v", err)
	}
	if n, err := db.NewSelect().Table("sessions").Count(ctx); err != nil || n != 0 {
		t.Fatalf("sessions after reapplying: %d rows, %v", n, err)
	}
}
