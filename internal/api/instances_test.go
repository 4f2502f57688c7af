package api

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

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
