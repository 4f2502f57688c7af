package main

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
	"github.com/example/sessionauth/models"
)

func TestRevokeSessionsCommand(t *testing.T) {
	t.Parallel()
	url := pgtest.New(t)
	s := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": url})
	a := s.SignUp(t, "incident@example.com")
	b := s.Login(t, "incident@example.com", testkit.Password)
	other := s.SignUp(t, "calm@example.com")

	env := func(k string) string {
		if k == "DATABASE_URL" {
			return url
		}
		return ""
	}
	revoke := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"sessionauth", "revoke-sessions"}, args...), env, &out, io.Discard)
		return out.String(), err
	}

	out, err := revoke("--email", "INCIDENT@example.com")
	if err != nil || !strings.Contains(out, "revoked 2 live session(s)") {
		t.Fatalf("revoke-sessions: %q, %v", out, err)
	}
	for _, p := range []testkit.Payload{a, b} {
		testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, p.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
	}
	testkit.WantOK(t, s.Post(t, other.AccessToken, testkit.MeQuery, nil))
	// Each ended session has its SESSION_REVOKED, by no session and from
	// no request.
	var ended []models.SecurityEvent
	if err := testkit.OpenDirect(t, url).NewSelect().Model(&ended).Where("user_id = ? AND kind = ?", a.User.ID, "SESSION_REVOKED").Order("session_id").Scan(testkit.Context(t)); err != nil {
		t.Fatal(err)
	}
	want := []string{a.Session.ID, b.Session.ID}
	slices.Sort(want)
	if len(ended) != 2 {
		t.Fatalf("%d SESSION_REVOKED events, want 2", len(ended))
	}
	for i, e := range ended {
		if *e.SessionID != want[i] || e.BySessionID != nil || e.IPAddress != nil || e.UserAgent != nil {
			t.Fatalf("event %+v", e)
		}
	}

	if _, err := revoke("--email", "nobody@example.com"); auth.ErrorCode(err) != auth.CodeNotFound {
		t.Fatalf("unknown email: %v", err)
	}
	if _, err := revoke(); err == nil {
		t.Fatal("missing --email accepted")
	}
	err = run(context.Background(), []string{"sessionauth", "frobnicate"}, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
}

// TestRevokeSessionsCommandAnySpelling: the operator's command finds the
// account under any spelling of its address.
func TestRevokeSessionsCommandAnySpelling(t *testing.T) {
	t.Parallel()
	const (
		jorgNFC = "j\u00F6rg@b\u00FCcher.de"
		jorgNFD = "jo\u0308rg@bu\u0308cher.de"
	)
	url := pgtest.New(t)
	s := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": url})
	p := s.SignUp(t, jorgNFC)
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return url
		}
		return ""
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"sessionauth", "revoke-sessions", "--email", jorgNFD}, env, &out, io.Discard)
	if err != nil || !strings.Contains(out.String(), "revoked 1 live session(s)") {
		t.Fatalf("revoke-sessions: %q, %v", out.String(), err)
	}
	testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
}
