package main

// Reliability (issue 5), start-up: the pool's settings on every connection, and two programs
// starting at once on an empty database.

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
	"github.com/example/sessionauth/migrations"
)

// TestPoolSettings checks what openDB sets on every connection unless the
// URL says otherwise: dead clients' transactions end after 15 s, and
// queries are not prepared (bun inlines values, so no statement repeats).
func TestPoolSettings(t *testing.T) {
	t.Parallel()
	pgtest.PostgresOnly(t, "these are PostgreSQL connection settings")
	base, err := url.Parse(pgtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t)
	for _, tc := range []struct {
		param, want string
	}{
		{"", "15s"},
		{"1min", "1min"},
	} {
		u := *base
		if tc.param != "" {
			q := u.Query()
			q.Set("idle_in_transaction_session_timeout", tc.param)
			u.RawQuery = q.Encode()
		}
		db, err := database.Open(database.Source{Backend: database.Postgres, URL: u.String()})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var got string
		if err := conn.NewRaw("SHOW idle_in_transaction_session_timeout").Scan(ctx, &got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("URL %s: idle_in_transaction_session_timeout = %s, want %s", u.RawQuery, got, tc.want)
		}
		var prepared int
		for i := range 3 {
			if err := conn.NewRaw("SELECT count(*) FROM pg_prepared_statements WHERE ? >= 0", i).Scan(ctx, &prepared); err != nil {
				t.Fatal(err)
			}
		}
		if prepared != 0 {
			t.Errorf("URL %s: %d statements prepared on the connection, want none", u.RawQuery, prepared)
		}
	}
}

// TestConcurrentStartup starts two programs at the same moment on an empty
// database: both migrate-or-wait, both serve, and each migration is
// recorded once.
func TestConcurrentStartup(t *testing.T) {
	t.Parallel()
	pgtest.PostgresOnly(t, "a SQLite file belongs to one process, so two instances never share one")
	url := pgtest.NewURL(t)
	env := map[string]string{"DATABASE_URL": url}
	progs := []*testkit.Program{testkit.LaunchRun(t, run, env), testkit.LaunchRun(t, run, env)}
	for _, p := range progs {
		if err := p.WaitListening(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	a, b := progs[0].WithPatience(), progs[1].WithPatience()
	a.WaitStatus(t, "/readyz", http.StatusOK, 10*time.Second)
	b.WaitStatus(t, "/readyz", http.StatusOK, 10*time.Second)
	p := a.SignUp(t, "twins@example.com")
	testkit.WantOK(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil))

	db := testkit.OpenDirect(t, url)
	var names []string
	if err := db.NewRaw("SELECT name FROM bun_migrations ORDER BY name").Scan(context.Background(), &names); err != nil {
		t.Fatal(err)
	}
	want := migrations.For(db).Sorted()
	seen := map[string]int{}
	for _, n := range names {
		seen[n]++
	}
	for _, m := range want {
		if seen[m.Name] != 1 {
			t.Errorf("migration %s recorded %d times, want once", m.Name, seen[m.Name])
		}
	}
	if len(names) != len(want) {
		t.Errorf("bun_migrations has %d rows for %d migrations: %v", len(names), len(want), names)
	}
}
