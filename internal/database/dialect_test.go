package database_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/pgtest"
)

// openSQLite opens a fresh SQLite file, whatever TEST_BACKEND says: it is
// embedded, so its own behaviour is always tested.
func openSQLite(t *testing.T) *bun.DB {
	t.Helper()
	db := pgtest.Open("sqlite://" + filepath.Join(t.TempDir(), "t.db"))
	t.Cleanup(func() { db.Close() })
	return db
}

// openBackend opens an empty database on the backend the tests run on.
func openBackend(t *testing.T) *bun.DB {
	t.Helper()
	db := pgtest.Open(pgtest.NewURL(t))
	t.Cleanup(func() { db.Close() })
	return db
}

type stamp struct {
	bun.BaseModel `bun:"table:stamps"`
	TS            time.Time `bun:"ts"`
}

// TestSQLiteTimesCompareAsText: SQLite has no time type, so times are text
// and SQL compares them as strings. That is right only if every time has one
// fixed-width layout, those bun writes and those SQLite's clock produces
// alike; trailing zeros in the fraction, whole seconds and microseconds are
// the cases a variable-width layout gets wrong.
func TestSQLiteTimesCompareAsText(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := openSQLite(t)
	if _, err := db.ExecContext(ctx, "CREATE TABLE stamps (ts text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 23, 12, 0, 5, 0, time.UTC)
	var want []time.Time
	for _, d := range []time.Duration{
		0, time.Microsecond, 9 * time.Microsecond, 10 * time.Microsecond, 100 * time.Millisecond,
		120 * time.Millisecond, 123456 * time.Microsecond, 999999 * time.Microsecond, time.Second,
		time.Second + 500*time.Millisecond, 10 * time.Second, time.Hour, -time.Microsecond,
	} {
		want = append(want, base.Add(d))
	}
	// In another zone too: stored as UTC all the same.
	want = append(want, base.Add(2*time.Millisecond).In(time.FixedZone("UTC+5", 5*3600)))
	rows := make([]stamp, len(want))
	for i, j := range rand.Perm(len(want)) {
		rows[i].TS = want[j]
	}
	if _, err := db.NewInsert().Model(&rows).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(want, func(a, b time.Time) int { return a.Compare(b) })

	var raw []string
	if err := db.NewRaw("SELECT ts FROM stamps ORDER BY ts").Scan(ctx, &raw); err != nil {
		t.Fatal(err)
	}
	for i, s := range raw {
		got, err := time.Parse("2006-01-02 15:04:05.999999-07:00", s)
		if err != nil || len(s) != 32 {
			t.Fatalf("stored %q: want the 32-character layout (%v)", s, err)
		}
		if !got.Equal(want[i]) {
			t.Fatalf("ORDER BY ts puts %s at %d, want %s", s, i, want[i])
		}
	}
	for i, tm := range want {
		n, err := db.NewSelect().Model((*stamp)(nil)).Where("ts < ?", tm).Count(ctx)
		if err != nil || n != int64(i) {
			t.Fatalf("%d stamps before %s, want %d (%v)", n, tm, i, err)
		}
		var back stamp
		if err := db.NewSelect().Model(&back).Where("ts = ?", tm).Scan(ctx); err != nil || !back.TS.Equal(tm) {
			t.Fatalf("read back %s as %s (%v)", tm, back.TS, err)
		}
	}

	// The clock's text has the same layout, so it compares with the rest.
	d := database.DialectOf(db)
	var now string
	if err := db.NewRaw("SELECT "+d.Now).Scan(ctx, &now); err != nil || len(now) != 32 || now[len(now)-6:] != "+00:00" {
		t.Fatalf("SQLite's Now is %q (%v), want the 32-character layout", now, err)
	}
	later := time.Now().Add(time.Minute)
	var before bool
	if err := db.NewRaw("SELECT "+d.Now+" < ?", later).Scan(ctx, &before); err != nil || !before {
		t.Fatalf("Now < a minute from now = %v (%v)", before, err)
	}
}

// TestDialect runs each fragment of the dialect on the backend the tests run
// on, and on SQLite.
func TestDialect(t *testing.T) {
	t.Parallel()
	backends := map[string]func(*testing.T) *bun.DB{"Backend": openBackend}
	if !pgtest.SQLite() {
		backends["SQLite"] = openSQLite
	}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testDialect(t, open(t))
		})
	}
}

func testDialect(t *testing.T, db *bun.DB) {
	ctx := t.Context()
	d := database.DialectOf(db)

	t.Run("ClockAndIntervals", func(t *testing.T) {
		plus, plusArg := d.NowPlus(90 * time.Second)
		minus, minusArg := d.NowMinus(1500 * time.Millisecond)
		var now, p, m time.Time
		err := db.NewRaw("SELECT "+d.Now+", "+plus+", "+minus, plusArg, minusArg).Scan(ctx, &now, &p, &m)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Sub(now); got != 90*time.Second {
			t.Errorf("NowPlus(90s) - Now = %v", got)
		}
		if got := now.Sub(m); got != 1500*time.Millisecond {
			t.Errorf("Now - NowMinus(1.5s) = %v", got)
		}
		if skew := time.Since(now); skew < -2*time.Second || skew > 2*time.Second {
			t.Errorf("the database's now is %v from this machine's", skew)
		}
	})
	t.Run("SecondsSince", func(t *testing.T) {
		ago, arg := d.NowMinus(42500 * time.Millisecond)
		var secs float64
		if err := db.NewRaw("SELECT "+d.SecondsSince("t.at")+" FROM (SELECT "+ago+" AS at) AS t", arg).Scan(ctx, &secs); err != nil {
			t.Fatal(err)
		}
		if secs < 42.4 || secs > 43.5 {
			t.Fatalf("SecondsSince(42.5s ago) = %v", secs)
		}
	})
	t.Run("LocksOffsetAndUniqueViolation", func(t *testing.T) {
		if _, err := db.ExecContext(ctx, "CREATE TABLE nums (n integer PRIMARY KEY)"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO nums (n) VALUES (1), (2), (3), (4)"); err != nil {
			t.Fatal(err)
		}
		_, err := db.ExecContext(ctx, "INSERT INTO nums (n) VALUES (2)")
		if err == nil || !database.IsUniqueViolation(err) || database.IsUnavailable(err) {
			t.Fatalf("duplicate key: %v, IsUniqueViolation %v", err, database.IsUniqueViolation(err))
		}
		err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			var got []int
			q := tx.NewSelect().Table("nums").Column("n").Order("n")
			if err := d.Offset(q, 2).Apply(d.ForUpdate).Scan(ctx, &got); err != nil {
				return err
			}
			if !slices.Equal(got, []int{3, 4}) {
				return fmt.Errorf("OFFSET 2 read %v, want [3 4]", got)
			}
			got = nil
			q = tx.NewSelect().Table("nums").Column("n").Where("n = 2")
			if err := d.For(q, "NO KEY UPDATE").Scan(ctx, &got); err != nil {
				return err
			}
			if !slices.Equal(got, []int{2}) {
				return fmt.Errorf("FOR NO KEY UPDATE read %v, want [2]", got)
			}
			got = nil
			q = tx.NewSelect().Table("nums").Column("n").Order("n").Limit(1)
			if err := q.Apply(d.ForUpdateSkipLocked).Scan(ctx, &got); err != nil {
				return err
			}
			if !slices.Equal(got, []int{1}) {
				return fmt.Errorf("SKIP LOCKED read %v, want [1]", got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("After", func(t *testing.T) {
		if _, err := db.ExecContext(ctx, "CREATE TABLE log (n integer PRIMARY KEY); CREATE TABLE cur (id integer PRIMARY KEY, n integer)"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO cur (id, n) VALUES (1, 0)"); err != nil {
			t.Fatal(err)
		}
		step := func(n int) error {
			return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				ins := tx.NewInsert().Model(&map[string]any{"n": n}).TableExpr("log")
				u := tx.NewUpdate().Table("cur").Set("n = ?", n).Where("id = 1")
				u, err := d.After(ctx, ins, u)
				if err != nil {
					return err
				}
				if one := strings.HasPrefix(u.String(), "WITH"); one != d.CanListen() {
					return fmt.Errorf("one statement: %v, on PostgreSQL: %v (%s)", one, d.CanListen(), u)
				}
				_, err = u.Exec(ctx)
				return err
			})
		}
		var logged, cur []int
		read := func() {
			logged, cur = nil, nil
			if err := db.NewSelect().Table("log").Column("n").Order("n").Scan(ctx, &logged); err != nil {
				t.Fatal(err)
			}
			if err := db.NewSelect().Table("cur").Column("n").Scan(ctx, &cur); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range []int{1, 2} {
			if err := step(n); err != nil {
				t.Fatal(err)
			}
		}
		read()
		if !slices.Equal(logged, []int{1, 2}) || !slices.Equal(cur, []int{2}) {
			t.Fatalf("after two steps: log %v, cur %v; want [1 2], [2]", logged, cur)
		}
		// The insert fails: the update must not happen either.
		if err := step(1); !database.IsUniqueViolation(err) {
			t.Fatalf("a step whose insert collides: %v, want a unique violation", err)
		}
		read()
		if !slices.Equal(logged, []int{1, 2}) || !slices.Equal(cur, []int{2}) {
			t.Fatalf("after a failed step: log %v, cur %v; want [1 2], [2]", logged, cur)
		}
	})
	t.Run("PreparedQuery", func(t *testing.T) {
		query := db.NewSelect().ColumnExpr("? || '-' || ?", d.Placeholder(2), d.Placeholder(1)).String()
		for _, args := range [][2]string{{"a", "b"}, {"c", "d"}} {
			rows, err := d.QueryPrepared(ctx, db, query, args[0], args[1])
			if err != nil {
				t.Fatal(err)
			}
			var got string
			if err := db.ScanRows(ctx, rows, &got); err != nil {
				t.Fatal(err)
			}
			if want := args[1] + "-" + args[0]; got != want {
				t.Fatalf("%q with %v = %q, want %q", query, args, got, want)
			}
		}
	})
}

// TestUnreachableIsUnavailable: a database that cannot be reached is an
// error a client may retry, on either backend.
func TestUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	for _, url := range []string{
		fmt.Sprintf("postgres://postgres@127.0.0.1:%d/none?sslmode=disable&connect_timeout=2", port),
		"sqlite://" + filepath.Join(t.TempDir(), "missing", "dir", "none.db"),
	} {
		db := pgtest.Open(url)
		err := db.PingContext(t.Context())
		db.Close()
		if err == nil || !database.IsUnavailable(err) || database.IsUniqueViolation(err) {
			t.Errorf("%s: %v: IsUnavailable %v", url, err, database.IsUnavailable(err))
		}
	}
}
