package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/resolvers"
)

// scrape returns the samples of /metrics as "name{labels}" -> value.
func scrape(t *testing.T, s *testServer) map[string]float64 {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) {
		c.Auth.Throttle.MaxFailures = 1
		c.Auth.ReuseWindow = 0
	})
	p := s.signUp(t, "metrics@example.com")
	s.login(t, "metrics@example.com")
	s.login(t, "metrics@example.com")
	s.post(t, "", loginMutation, loginVars("other@example.com", "wrong pass"))
	s.post(t, "", loginMutation, loginVars("other@example.com", "wrong pass"))
	n := s.refresh(t, p.refresh())
	wantOK(t, s.post(t, n.AccessToken, meQuery, nil))
	wantCode(t, s.post(t, p.refresh(), refreshMutation, nil), "REFRESH_TOKEN_REUSED")
	q := s.login(t, "metrics@example.com")
	wantOK(t, s.post(t, q.AccessToken, revokeOthersMutaion, nil)) // ends the two earlier logins
	wantOK(t, s.post(t, q.AccessToken, logoutMutation, nil))

	got := scrape(t, s)
	for sample, want := range map[string]float64{
		`sessionauth_signups_total{result="ok"}`:                     1,
		`sessionauth_logins_total{result="ok"}`:                      3,
		`sessionauth_logins_total{result="failed"}`:                  1,
		`sessionauth_logins_total{result="limited"}`:                 1,
		`sessionauth_refreshes_total{result="ok"}`:                   1,
		`sessionauth_refreshes_total{result="reused"}`:               1,
		`sessionauth_refresh_replays_total`:                          1,
		`sessionauth_sessions_revoked_total{reason="replay"}`:        1,
		`sessionauth_sessions_revoked_total{reason="revoke_others"}`: 2,
		`sessionauth_sessions_revoked_total{reason="logout"}`:        1,
	} {
		if got[sample] != want {
			t.Errorf("%s = %v, want %v", sample, got[sample], want)
		}
	}
	if got[`sessionauth_request_duration_seconds_count{route="graphql"}`] < 10 {
		t.Errorf("request latency not recorded: %v", got[`sessionauth_request_duration_seconds_count{route="graphql"}`])
	}
}

// TestLogsRedactSecrets walks flows that carry tokens and passwords,
// including failing ones, and searches every log line for them.
func TestLogsRedactSecrets(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	s := newLoggedTestServer(t, pgtest.New(t), func(c *config) { c.Auth.ReuseWindow = 0 }, &logs)
	p := s.signUp(t, "secret@example.com")
	n := s.refresh(t, p.refresh())
	wantOK(t, s.post(t, n.AccessToken, meQuery, nil))
	wantCode(t, s.post(t, p.refresh(), refreshMutation, nil), "REFRESH_TOKEN_REUSED") // logged as a warning
	s.post(t, "", loginMutation, loginVars("secret@example.com", "wrong-password-xyz"))
	s.post(t, "", changePassword, map[string]any{"cur": testPassword, "new": "new-password-xyz"})
	// A malformed body that holds a password.
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", strings.NewReader(`{"query":"mutation","variables":{"password":"body-password-xyz"`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}

	// An unreachable database whose URL carries a password.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	down := newLoggedTestServer(t, fmt.Sprintf("postgres://postgres:db-password-xyz@127.0.0.1:%d/x?sslmode=disable&connect_timeout=2", port), nil, &logs)
	wantCode(t, down.post(t, n.AccessToken, meQuery, nil), "SERVICE_UNAVAILABLE")

	var hash string
	if err := s.db.NewRaw("SELECT password_hash FROM users").Scan(ctxT(t), &hash); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, `"fields":"refresh"`) || !strings.Contains(out, `"outcome":"REFRESH_TOKEN_REUSED"`) ||
		!strings.Contains(out, `"outcome":"ok"`) || !strings.Contains(out, `"duration_ms"`) || !strings.Contains(out, `"request_id"`) {
		t.Fatalf("request lines lack operation, outcome, latency or id:\n%s", out)
	}
	if !strings.Contains(out, "SERVICE_UNAVAILABLE") {
		t.Fatalf("the database failure was not logged:\n%s", out)
	}
	secrets := []string{p.AccessToken, p.refresh(), n.AccessToken, n.refresh(), testPassword, "wrong-password-xyz",
		"new-password-xyz", "body-password-xyz", "db-password-xyz", hash, strings.Split(hash, "$")[5]}
	for _, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Fatalf("a secret reached the log: %.12s…", secret)
		}
	}
}

// TestAuthenticatedDirectiveOnOwnField puts the directive's implementation in
// front of a resolver of the test's own, as a product team would.
func TestAuthenticatedDirectiveOnOwnField(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.signUp(t, "team@example.com")

	// A product team's field: "myEmail: String! @authenticated".
	ownField := func(ctx context.Context) (any, error) {
		return auth.IdentityFromContext(ctx).User.Email, nil
	}
	handler := s.svc.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := resolvers.Authenticated(r.Context(), nil, ownField, nil)
		if err != nil {
			io.WriteString(w, "error:"+auth.ErrorCode(err))
			return
		}
		io.WriteString(w, v.(string))
	}))
	call := func(header string) string {
		req := httptest.NewRequest(http.MethodPost, "/", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	if got := call("Bearer " + p.AccessToken); got != "team@example.com" {
		t.Fatalf("with a token: %q", got)
	}
	if got := call(""); got != "error:UNAUTHENTICATED" {
		t.Fatalf("anonymous: %q", got)
	}
	if got := call("Bearer " + p.refresh()); got != "error:UNAUTHENTICATED" {
		t.Fatalf("refresh token: %q", got)
	}
	s.backdate(t, "access_expires_at", "", time.Second)
	if got := call("Bearer " + p.AccessToken); got != "error:TOKEN_EXPIRED" {
		t.Fatalf("expired: %q", got)
	}
}
