package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/migrations"
)

// runningServer is the real program, started with run() as main starts it.
type runningServer struct {
	base    string // http://ADDR
	metrics string // http://METRICS_ADDR, "" when off
	logs    *syncBuffer
	cancel  context.CancelFunc
	done    chan error
}

// startRun runs the program with env, on any free port unless env sets ADDR,
// and waits until it serves; it is stopped when t ends if the test has not.
func startRun(t *testing.T, env map[string]string) *runningServer {
	t.Helper()
	if env["ADDR"] == "" {
		env["ADDR"] = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &runningServer{logs: new(syncBuffer), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, nil, func(k string) string { return env[k] }, s.logs, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, line := range logLines(t, s.logs) {
			if line["msg"] == "listening" {
				s.base = "http://" + line["addr"].(string)
				if m, _ := line["metrics_addr"].(string); env["METRICS_ADDR"] != "" {
					s.metrics = "http://" + m
				}
				return s
			}
		}
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("run returned %v before it listened:\n%s", err, s.logs)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not come up:\n%s", s.logs)
		}
	}
}

// stop ends the program as SIGTERM would and returns what run returned.
func (s *runningServer) stop(t *testing.T) error {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("run did not stop")
		return nil
	}
}

// logLines decodes every complete JSON line written to logs.
func logLines(t *testing.T, logs *syncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	text := logs.String()
	for line := range strings.Lines(text[:strings.LastIndexByte(text, '\n')+1]) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRun starts the real program with run() on free ports and walks a
// client's whole life over HTTP, then stops it as SIGTERM would.
func TestRun(t *testing.T) {
	t.Parallel()
	url := pgtest.NewURL(t) // empty: run must migrate it
	srv := startRun(t, map[string]string{"DATABASE_URL": url, "METRICS_ADDR": "127.0.0.1:0"})
	client := &testServer{URL: srv.base}

	p := client.signUp(t, "run@example.com")
	wantOK(t, client.post(t, p.AccessToken, meQuery, nil))
	n := client.refresh(t, p.refresh())
	wantOK(t, client.post(t, n.AccessToken, logoutMutation, nil))
	wantCode(t, client.post(t, n.AccessToken, meQuery, nil), "UNAUTHENTICATED")

	for path, want := range map[string]int{"/readyz": 200, "/": 200, "/healthz": 200, "/nope": 404, "/metrics": 404} {
		if got := get(t, srv.base+path); got != want {
			t.Errorf("GET %s = %d, want %d", path, got, want)
		}
	}
	// The metrics listener serves /metrics and nothing else.
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 404, "/graphql": 404, "/": 404} {
		if got := get(t, srv.metrics+path); got != want {
			t.Errorf("GET %s on METRICS_ADDR = %d, want %d", path, got, want)
		}
	}

	if err := srv.stop(t); err != nil {
		t.Fatalf("run returned %v", err)
	}
	for _, base := range []string{srv.base, srv.metrics} {
		if resp, err := http.Get(base + "/metrics"); err == nil {
			resp.Body.Close()
			t.Errorf("%s still answers after run returned", base)
		}
	}
	out := srv.logs.String()
	if !strings.Contains(out, `"msg":"listening"`) || !strings.Contains(out, `"msg":"request"`) || !strings.Contains(out, `"msg":"stopped"`) {
		t.Fatalf("missing start-up, request or stop log lines:\n%s", out)
	}
	if first, _, _ := strings.Cut(out, "\n"); !strings.Contains(first, `"database":"`+string(pgtest.Backend())+`"`) {
		t.Fatalf("the first log line does not say which database: %s", first)
	}
	for _, secret := range []string{p.AccessToken, p.refresh(), n.AccessToken, n.refresh(), testPassword} {
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

	p := a.signUp(t, "lb@example.com")
	wantOK(t, b.post(t, p.AccessToken, meQuery, nil))
	n := b.refresh(t, p.refresh())
	wantCode(t, a.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	wantOK(t, a.post(t, n.AccessToken, meQuery, nil))
	// A retry on the other instance gets the same pair.
	again := a.refresh(t, p.refresh())
	if again.AccessToken != n.AccessToken {
		t.Fatal("instances disagree on the refreshed pair")
	}
	q := b.login(t, "lb@example.com")
	wantOK(t, a.post(t, q.AccessToken, revokeMutation, map[string]any{"id": n.Session.ID}))
	wantCode(t, b.post(t, n.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	wantOK(t, a.post(t, q.AccessToken, logoutMutation, nil))
	wantCode(t, b.post(t, q.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	wantCode(t, b.post(t, q.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
}

// TestTokensNeverStoredInPlainText dumps every table as text and looks for
// any token a client was given, raw or in any encoding the database might
// use.
func TestTokensNeverStoredInPlainText(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.signUp(t, "vault@example.com")
	n := s.refresh(t, p.refresh())
	m := s.refresh(t, n.refresh())
	q := s.login(t, "vault@example.com")
	tokens := []string{p.AccessToken, p.refresh(), n.AccessToken, n.refresh(), m.AccessToken, m.refresh(), q.AccessToken, q.refresh()}

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
	for _, pw := range []string{testPassword} {
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
	for name, r := range map[string]gqlResponse{
		"me":      s.post(t, token, meQuery, nil),
		"refresh": s.post(t, token, refreshMutation, nil),
		"logout":  s.post(t, token, logoutMutation, nil),
		"login":   s.post(t, "", loginMutation, map[string]any{"email": "a@example.com", "password": testPassword}),
		"signUp":  s.post(t, "", signUpMutation, map[string]any{"email": "a@example.com", "password": testPassword}),
	} {
		t.Run(name, func(t *testing.T) {
			wantCode(t, r, "SERVICE_UNAVAILABLE")
			if strings.Contains(r.Errors[0].Message, "127.0.0.1") || strings.Contains(r.Errors[0].Message, "dial") {
				t.Fatalf("message leaks internals: %q", r.Errors[0].Message)
			}
		})
	}
	// Anonymous requests that need no database still work.
	wantOK(t, s.post(t, "", `{ __typename }`, nil))
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
	p := s.signUp(t, "get@example.com")
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?query="+strings.ReplaceAll(logoutMutation, " ", "%20"), nil)
	req.Header.Set("Authorization", "Bearer "+p.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("GET mutation answered 200")
	}
	wantOK(t, s.post(t, p.AccessToken, meQuery, nil))
}
