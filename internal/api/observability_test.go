package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
	"github.com/example/sessionauth/resolvers"
)

// TestLogsRedactSecrets walks flows that carry tokens and passwords,
// including failing ones, and searches every log line for them.
func TestLogsRedactSecrets(t *testing.T) {
	t.Parallel()
	var logs testkit.SyncBuffer
	s := newLoggedTestServer(t, pgtest.New(t), func(c *config) { c.Auth.ReuseWindow = 0 }, &logs)
	p := s.SignUp(t, "secret@example.com")
	n := s.Refresh(t, p.Refresh())
	testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil))
	testkit.WantCode(t, s.Post(t, p.Refresh(), testkit.RefreshMutation, nil), "REFRESH_TOKEN_REUSED") // logged as a warning
	s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("secret@example.com", "wrong-password-xyz"))
	s.Post(t, "", testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "new-password-xyz"})
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
	testkit.WantCode(t, down.Post(t, n.AccessToken, testkit.MeQuery, nil), "SERVICE_UNAVAILABLE")

	var hash string
	if err := s.db.NewRaw("SELECT password_hash FROM users").Scan(testkit.Context(t), &hash); err != nil {
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
	secrets := []string{p.AccessToken, p.Refresh(), n.AccessToken, n.Refresh(), testkit.Password, "wrong-password-xyz",
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
	p := s.SignUp(t, "team@example.com")

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
	if got := call("Bearer " + p.Refresh()); got != "error:UNAUTHENTICATED" {
		t.Fatalf("refresh token: %q", got)
	}
	s.backdate(t, "access_expires_at", "", time.Second)
	if got := call("Bearer " + p.AccessToken); got != "error:TOKEN_EXPIRED" {
		t.Fatalf("expired: %q", got)
	}
}

// TestRequestLogNamesClientAndSession walks the authentication events
// through the real handler behind a trusted proxy: each request's log line
// names the client's address as the login limits see it, and the user and
// session it acted as or on; no line holds a token, a password or a hash.
func TestRequestLogNamesClientAndSession(t *testing.T) {
	t.Parallel()
	var logs testkit.SyncBuffer
	s := newLoggedTestServer(t, pgtest.New(t), func(c *config) {
		c.Auth.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	}, &logs)
	const client = "203.0.113.7"
	var ids []string // request ids, in order
	call := func(token, query string, vars map[string]any) testkit.Response {
		t.Helper()
		h := testkit.Bearer(token)
		h.Set("X-Forwarded-For", "198.51.100.1, "+client)
		r := s.PostHeader(t, h, query, vars)
		id := r.Header.Get("X-Request-Id")
		ids = append(ids, id)
		return r
	}
	var p, q, r, n, l testkit.Payload
	call("", testkit.SignUpMutation, map[string]any{"email": "log@example.com", "password": testkit.Password}).Field(t, "signUp", &p)
	testkit.WantCode(t, call("", testkit.LoginMutation, testkit.LoginVars("log@example.com", "wrong-password-xyz")), "INVALID_CREDENTIALS")
	call("", testkit.LoginMutation, testkit.LoginVars("log@example.com", testkit.Password)).Field(t, "login", &q)
	testkit.WantOK(t, call(p.AccessToken, testkit.MeQuery, nil))
	call(p.Refresh(), testkit.RefreshMutation, nil).Field(t, "refresh", &n)
	testkit.WantOK(t, call(n.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}))
	call("", testkit.LoginMutation, testkit.LoginVars("log@example.com", testkit.Password)).Field(t, "login", &r)
	testkit.WantOK(t, call(r.AccessToken, testkit.RevokeOthersMutation, nil))
	call("", testkit.LoginMutation, testkit.LoginVars("log@example.com", testkit.Password)).Field(t, "login", &l)
	testkit.WantOK(t, call(l.AccessToken, testkit.LogoutMutation, nil)) // by access token
	testkit.WantOK(t, call(r.Refresh(), testkit.LogoutMutation, nil))   // by refresh token
	testkit.WantCode(t, call(p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantCode(t, call(strings.Repeat("A", 256), testkit.LogoutMutation, nil), "UNAUTHENTICATED")
	// A request outside GraphQL names its client too.
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/healthz", nil)
	req.Header.Set("X-Forwarded-For", client)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ids = append(ids, resp.Header.Get("X-Request-Id"))
	uid := p.User.ID
	want := []struct{ fields, outcome, user, session string }{
		{"signUp", "ok", uid, p.Session.ID},
		{"login", "INVALID_CREDENTIALS", "", ""},
		{"login", "ok", uid, q.Session.ID},
		{"me", "ok", uid, p.Session.ID},
		{"refresh", "ok", uid, p.Session.ID},
		{"revokeSession", "ok", uid, p.Session.ID}, // the caller's session
		{"login", "ok", uid, r.Session.ID},
		{"revokeOtherSessions", "ok", uid, r.Session.ID},
		{"login", "ok", uid, l.Session.ID},
		{"logout", "ok", uid, l.Session.ID},
		{"logout", "ok", uid, r.Session.ID},
		{"me", "UNAUTHENTICATED", "", ""},
		{"logout", "UNAUTHENTICATED", "", ""},
		{"", "", "", ""}, // GET /healthz
	}

	// A line is written once its response is on its way: wait for the last.
	byID := map[string]map[string]any{}
	for deadline := time.Now().Add(10 * time.Second); len(byID) < len(ids); {
		if time.Now().After(deadline) {
			t.Fatalf("request lines missing:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
		for _, line := range logs.Lines(t) {
			if id, _ := line["request_id"].(string); line["msg"] == "request" && id != "" {
				byID[id] = line
			}
		}
	}
	for i, w := range want {
		line := byID[ids[i]]
		got := []any{line["fields"], line["outcome"], line["client_ip"], line["user_id"], line["session_id"]}
		exp := []any{optional(w.fields), optional(w.outcome), client, optional(w.user), optional(w.session)}
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("request %d: fields, outcome, client_ip, user_id, session_id = %v, want %v", i, got, exp)
		}
	}
	var hash string
	if err := s.db.NewRaw("SELECT password_hash FROM users").Scan(testkit.Context(t), &hash); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	secrets := []string{testkit.Password, "wrong-password-xyz", hash, strings.Split(hash, "$")[5]}
	for _, pl := range []testkit.Payload{p, q, r, n, l} {
		for _, tok := range []string{pl.AccessToken, pl.Refresh()} {
			sum := sha256.Sum256([]byte(tok))
			secrets = append(secrets, tok, hex.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString(sum[:]))
		}
	}
	for _, secret := range secrets {
		if strings.Contains(out, secret) {
			t.Fatalf("a secret reached the log: %.12s…", secret)
		}
	}
}

// optional is how a missing JSON attribute decodes: nil for "".
func optional(s string) any {
	if s == "" {
		return nil
	}
	return s
}
