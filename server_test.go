package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
	"github.com/example/sessionauth/migrations"
)

// TestRun starts the real program with run() on free ports and walks a
// client's whole life over HTTP, then stops it as SIGTERM would.
func TestRun(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t) // empty: run must migrate it
	srv := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": url, "METRICS_ADDR": "127.0.0.1:0"})

	p := srv.SignUp(t, "run@example.com")
	testkit.WantOK(t, srv.Post(t, p.AccessToken, testkit.MeQuery, nil))
	n := srv.Refresh(t, p.Refresh())
	testkit.WantOK(t, srv.Post(t, n.AccessToken, testkit.LogoutMutation, nil))
	testkit.WantCode(t, srv.Post(t, n.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")

	for path, want := range map[string]int{"/readyz": 200, "/": 200, "/healthz": 200, "/nope": 404, "/metrics": 404} {
		if got := srv.Status(t, path); got != want {
			t.Errorf("GET %s = %d, want %d", path, got, want)
		}
	}
	// The metrics listener serves /metrics and nothing else.
	metrics := &testkit.Client{URL: srv.Metrics}
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 404, "/graphql": 404, "/": 404} {
		if got := metrics.Status(t, path); got != want {
			t.Errorf("GET %s on METRICS_ADDR = %d, want %d", path, got, want)
		}
	}

	if err := srv.Stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	for _, base := range []string{srv.URL, srv.Metrics} {
		if resp, err := http.Get(base + "/metrics"); err == nil {
			resp.Body.Close()
			t.Errorf("%s still answers after run returned", base)
		}
	}
	out := srv.Logs.String()
	if !strings.Contains(out, `"msg":"listening"`) || !strings.Contains(out, `"msg":"request"`) || !strings.Contains(out, `"msg":"stopped"`) {
		t.Fatalf("missing start-up, request or stop log lines:\n%s", out)
	}
	if first, _, _ := strings.Cut(out, "\n"); !strings.Contains(first, `"database":"`+string(pgtest.Backend())+`"`) {
		t.Fatalf("the first log line does not say which database: %s", first)
	}
	for _, secret := range []string{p.AccessToken, p.Refresh(), n.AccessToken, n.Refresh(), testkit.Password} {
		if strings.Contains(out, secret) {
			t.Fatalf("a token or password reached the log")
		}
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	t.Parallel()
	for _, kv := range [][2]string{
		{"ACCESS_TOKEN_TTL", "soon"}, {"REFRESH_TOKEN_TTL", "-1h"}, {"ALLOW_SIGNUP", "maybe"},
		{"DATABASE_URL", "mysql://app:db-secret@db/app"}, {"DATABASE_URL", "sqlite://host/x.db"},
		{"METRICS_ADDR", ":8080"}, {"METRICS_ADDR", "0.0.0.0:8080"}, {"METRICS_ADDR", "9090"}, {"METRICS_ADDR", "localhost:nope"},
	} {
		env := map[string]string{kv[0]: kv[1]}
		err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), kv[0]) {
			t.Errorf("%s=%s: run returned %v, want an error naming the variable", kv[0], kv[1], err)
		} else if strings.Contains(err.Error(), "db-secret") {
			t.Errorf("%s=%s: the error repeats the password: %v", kv[0], kv[1], err)
		}
	}
}

// TestConcurrentMigrations starts several migrators on one empty database at
// once: all succeed and each migration is recorded once.
func TestConcurrentMigrations(t *testing.T) {
	t.Parallel()
	pgtest.PostgresOnly(t, "migrations are serialised by an advisory lock for instances starting together; "+
		"a SQLite file belongs to one process, which takes no lock")
	url := pgtest.NewURL(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			db := pgtest.Open(url)
			defer db.Close()
			errs[i] = migrations.Apply(context.Background(), db)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db := pgtest.Open(url)
	defer db.Close()
	var applied, distinct int
	err := db.NewRaw("SELECT count(*), count(DISTINCT name) FROM bun_migrations").Scan(testkit.Context(t), &applied, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(migrations.For(db).Sorted()); applied != want || distinct != applied {
		t.Fatalf("bun_migrations has %d rows (%d distinct) for %d migrations", applied, distinct, want)
	}
}
