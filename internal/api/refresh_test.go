package api

import (
	"testing"
	"time"

	"github.com/example/sessionauth/internal/testkit"
)

// TestRefreshOverHTTP: a refresh answers, on the wire, the whole payload of
// the rotated pair for the same session. The rules of rotation (the wrong
// kind of token, retries, replays of any generation, concurrent refreshes,
// a replay racing the legitimate refresh) are the domain's and are tested
// once, in auth: TestRefresh, TestRefreshConcurrentSameToken,
// TestRefreshReplayRacingSuccessor.
func TestRefreshOverHTTP(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.ReuseWindow = 0 })

	t.Run("RotatesBothTokensAndKeepsSession", func(t *testing.T) {
		p := s.SignUp(t, "rot@example.com")
		time.Sleep(10 * time.Millisecond) // let the database clock move
		n := s.Refresh(t, p.Refresh())
		if n.AccessToken == p.AccessToken || n.Refresh() == p.Refresh() {
			t.Fatal("refresh did not rotate both tokens")
		}
		if !tokenPattern.MatchString(n.AccessToken) || !tokenPattern.MatchString(n.Refresh()) {
			t.Fatal("rotated tokens are not 256 URL-safe characters")
		}
		if n.Session.ID != p.Session.ID || !n.Session.CreatedAt.Equal(p.Session.CreatedAt) {
			t.Fatalf("session changed: %s@%v -> %s@%v", p.Session.ID, p.Session.CreatedAt, n.Session.ID, n.Session.CreatedAt)
		}
		if !n.Session.LastUsedAt.After(p.Session.LastUsedAt) {
			t.Errorf("lastUsedAt did not move: %v -> %v", p.Session.LastUsedAt, n.Session.LastUsedAt)
		}
		if !n.AccessTokenExpiresAt.After(p.AccessTokenExpiresAt) || !n.RefreshTokenExpiresAt.After(p.RefreshTokenExpiresAt) {
			t.Errorf("expiries did not move forward")
		}
		testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
		testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil))
	})
}

func TestRefreshReuseWindow(t *testing.T) {
	t.Parallel()
	const window = 2 * time.Second
	s := newTestServer(t, func(c *config) { c.Auth.ReuseWindow = window })
	p := s.SignUp(t, "window@example.com")
	n := s.Refresh(t, p.Refresh())
	testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil))

	// Within the window a retry still gets the same pair, used or not...
	again := s.Refresh(t, p.Refresh())
	if again.AccessToken != n.AccessToken || again.Refresh() != n.Refresh() ||
		!again.RefreshTokenExpiresAt.Equal(n.RefreshTokenExpiresAt) || !again.AccessTokenExpiresAt.Equal(n.AccessTokenExpiresAt) {
		t.Fatal("retry within the window returned a different pair")
	}
	// ...even after the successor itself was rotated (two quick refreshes).
	m := s.Refresh(t, n.Refresh())
	again = s.Refresh(t, p.Refresh())
	if again.Refresh() != n.Refresh() || !again.RefreshTokenExpiresAt.Equal(n.RefreshTokenExpiresAt) {
		t.Fatal("retry of a twice-rotated token within the window returned a different pair")
	}
	testkit.WantOK(t, s.Post(t, m.AccessToken, testkit.MeQuery, nil))

	time.Sleep(time.Until(n.Session.LastUsedAt.Add(window)) + 300*time.Millisecond)
	testkit.WantCode(t, s.Post(t, p.Refresh(), testkit.RefreshMutation, nil), "REFRESH_TOKEN_REUSED")
	testkit.WantCode(t, s.Post(t, m.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantCode(t, s.Post(t, m.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
}
