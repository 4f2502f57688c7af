package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
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

// TestTwoInstancesAgree runs two handlers over one database, as two servers
// behind a load balancer: every token works, and dies, on both.
func TestTwoInstancesAgree(t *testing.T) {
	t.Parallel()
	url := pgtest.New(t)
	a := newTestServerOn(t, url, nil)
	b := newTestServerOn(t, url, nil)

	p := a.SignUp(t, "lb@example.com")
	testkit.WantOK(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil))
	n := b.Refresh(t, p.Refresh())
	testkit.WantCode(t, a.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantOK(t, a.Post(t, n.AccessToken, testkit.MeQuery, nil))
	// A retry on the other instance gets the same pair.
	again := a.Refresh(t, p.Refresh())
	if again.AccessToken != n.AccessToken {
		t.Fatal("instances disagree on the refreshed pair")
	}
	q := b.Login(t, "lb@example.com", testkit.Password)
	testkit.WantOK(t, a.Post(t, q.AccessToken, testkit.RevokeMutation, map[string]any{"id": n.Session.ID}))
	testkit.WantCode(t, b.Post(t, n.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantOK(t, a.Post(t, q.AccessToken, testkit.LogoutMutation, nil))
	testkit.WantCode(t, b.Post(t, q.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantCode(t, b.Post(t, q.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
}

// TestTokensNeverStoredInPlainText dumps every table as text and looks for
// any token a client was given, raw or in any encoding the database might
// use.
func TestTokensNeverStoredInPlainText(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.SignUp(t, "vault@example.com")
	n := s.Refresh(t, p.Refresh())
	m := s.Refresh(t, n.Refresh())
	q := s.Login(t, "vault@example.com", testkit.Password)
	tokens := []string{p.AccessToken, p.Refresh(), n.AccessToken, n.Refresh(), m.AccessToken, m.Refresh(), q.AccessToken, q.Refresh()}

	dump := dumpDatabase(t, s.db)
	if !strings.Contains(dump, "vault@example.com") {
		t.Fatal("dump is missing the data it should contain")
	}
	for _, tok := range tokens {
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		for _, form := range []string{tok, tok[:32], hex.EncodeToString(raw)[:32], hex.EncodeToString([]byte(tok))[:32]} {
			if strings.Contains(dump, form) {
				t.Fatalf("a token (or its raw bytes) is stored in the database: %.16s…", form)
			}
		}
	}
	for _, pw := range []string{testkit.Password} {
		if strings.Contains(dump, pw) {
			t.Fatal("a password is stored in plain text")
		}
	}
}

// TestDatabaseUnreachable points the server at a port where nothing listens
// (on SQLite, a file in a directory that does not exist):
// every operation answers SERVICE_UNAVAILABLE, /readyz 503, nothing leaks.
func TestDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/none?sslmode=disable&connect_timeout=2", port)
	if pgtest.SQLite() {
		// SQLite's equivalent: a file that cannot be opened.
		url = "sqlite://" + t.TempDir() + "/missing/dir/none.db"
	}
	s := newTestServerOn(t, url, nil)

	token := strings.Repeat("A", 256)
	for name, r := range map[string]testkit.Response{
		"me":      s.Post(t, token, testkit.MeQuery, nil),
		"refresh": s.Post(t, token, testkit.RefreshMutation, nil),
		"logout":  s.Post(t, token, testkit.LogoutMutation, nil),
		"login":   s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "a@example.com", "password": testkit.Password}),
		"signUp":  s.Post(t, "", testkit.SignUpMutation, map[string]any{"email": "a@example.com", "password": testkit.Password}),
	} {
		t.Run(name, func(t *testing.T) {
			testkit.WantCode(t, r, "SERVICE_UNAVAILABLE")
			if strings.Contains(r.Errors[0].Message, "127.0.0.1") || strings.Contains(r.Errors[0].Message, "dial") {
				t.Fatalf("message leaks internals: %q", r.Errors[0].Message)
			}
		})
	}
	// Anonymous requests that need no database still work.
	testkit.WantOK(t, s.Post(t, "", `{ __typename }`, nil))
	resp, err := http.Get(s.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d, want 503", resp.StatusCode)
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
	err := db.NewRaw("SELECT count(*), count(DISTINCT name) FROM bun_migrations").Scan(ctxT(t), &applied, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(migrations.For(db).Sorted()); applied != want || distinct != applied {
		t.Fatalf("bun_migrations has %d rows (%d distinct) for %d migrations", applied, distinct, want)
	}
}

func TestMutationOverGETRefused(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.SignUp(t, "get@example.com")
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?query="+strings.ReplaceAll(testkit.LogoutMutation, " ", "%20"), nil)
	req.Header.Set("Authorization", "Bearer "+p.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("GET mutation answered 200")
	}
	testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil))
}
