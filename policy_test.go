package main

import (
	"sync"
	"testing"
	"time"
)

func TestSessionMaxLifetime(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) {
		c.Auth.SessionMaxLifetime = 2 * time.Second
		c.Auth.RefreshTTL = time.Hour
		c.Auth.ReuseWindow = 0
	})
	p := s.signUp(t, "capped@example.com")
	limit := p.Session.CreatedAt.Add(2 * time.Second)
	if !p.RefreshTokenExpiresAt.Equal(limit) || p.AccessTokenExpiresAt.After(limit) {
		t.Fatalf("expiries %v / %v exceed sign-in + 2s = %v", p.AccessTokenExpiresAt, p.RefreshTokenExpiresAt, limit)
	}
	n := s.refresh(t, p.refresh())
	if n.RefreshTokenExpiresAt.After(limit) || n.AccessTokenExpiresAt.After(limit) {
		t.Fatalf("refresh extended the session past its cap: %v", n.RefreshTokenExpiresAt)
	}
	time.Sleep(time.Until(limit) + 200*time.Millisecond)
	wantCode(t, s.post(t, n.refresh(), refreshMutation, nil), "TOKEN_EXPIRED")
}

func TestMaxSessionsPerUser(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.MaxSessionsPerUser = 2 })
	a := s.signUp(t, "cap@example.com")
	b := s.login(t, "cap@example.com")
	// a is used after b, so b is the least recently used when c arrives.
	s.exec(t, "UPDATE sessions SET last_used_at = now() - interval '1 hour' WHERE id = ?", b.Session.ID)
	c := s.login(t, "cap@example.com")
	wantOK(t, s.post(t, a.AccessToken, meQuery, nil))
	wantOK(t, s.post(t, c.AccessToken, meQuery, nil))
	wantCode(t, s.post(t, b.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	wantCode(t, s.post(t, b.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
}

func TestOneDeviceAtATimeUnderConcurrentLogins(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.MaxSessionsPerUser = 1 })
	s.signUp(t, "solo@example.com")
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { wantOK(t, s.post(t, "", loginMutation, loginVars("solo@example.com", testPassword))) })
	}
	wg.Wait()
	live, err := s.db.NewSelect().Table("sessions").Where("revoked_at IS NULL").Count(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if live != 1 {
		t.Fatalf("%d live sessions after concurrent logins, want 1", live)
	}
}
