package api

import (
	"sync"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/testkit"
)

func TestSessionMaxLifetime(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) {
		c.Auth.SessionMaxLifetime = 2 * time.Second
		c.Auth.RefreshTTL = time.Hour
		c.Auth.ReuseWindow = 0
	})
	p := s.SignUp(t, "capped@example.com")
	limit := p.Session.CreatedAt.Add(2 * time.Second)
	if !p.RefreshTokenExpiresAt.Equal(limit) || p.AccessTokenExpiresAt.After(limit) {
		t.Fatalf("expiries %v / %v exceed sign-in + 2s = %v", p.AccessTokenExpiresAt, p.RefreshTokenExpiresAt, limit)
	}
	n := s.Refresh(t, p.Refresh())
	if n.RefreshTokenExpiresAt.After(limit) || n.AccessTokenExpiresAt.After(limit) {
		t.Fatalf("refresh extended the session past its cap: %v", n.RefreshTokenExpiresAt)
	}
	time.Sleep(time.Until(limit) + 200*time.Millisecond)
	testkit.WantCode(t, s.Post(t, n.Refresh(), testkit.RefreshMutation, nil), "TOKEN_EXPIRED")
}

func TestMaxSessionsPerUser(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.MaxSessionsPerUser = 2 })
	a := s.SignUp(t, "cap@example.com")
	b := s.Login(t, "cap@example.com", testkit.Password)
	// a is used after b, so b is the least recently used when c arrives.
	s.backdate(t, "last_used_at", b.Session.ID, time.Hour)
	c := s.Login(t, "cap@example.com", testkit.Password)
	testkit.WantOK(t, s.Post(t, a.AccessToken, testkit.MeQuery, nil))
	testkit.WantOK(t, s.Post(t, c.AccessToken, testkit.MeQuery, nil))
	testkit.WantCode(t, s.Post(t, b.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantCode(t, s.Post(t, b.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
}

func TestOneDeviceAtATimeUnderConcurrentLogins(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.MaxSessionsPerUser = 1 })
	s.SignUp(t, "solo@example.com")
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			testkit.WantOK(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("solo@example.com", testkit.Password)))
		})
	}
	wg.Wait()
	live, err := s.db.NewSelect().Table("sessions").Where("revoked_at IS NULL").Count(testkit.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if live != 1 {
		t.Fatalf("%d live sessions after concurrent logins, want 1", live)
	}
}
