package api

import (
	"sync"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/testkit"
)

func TestRefresh(t *testing.T) {
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

	t.Run("AccessTokenIsWrongKind", func(t *testing.T) {
		p := s.SignUp(t, "kind@example.com")
		testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.RefreshMutation, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, "", testkit.RefreshMutation, nil), "UNAUTHENTICATED")
	})

	t.Run("RetryBeforeSuccessorIsUsedGetsSamePair", func(t *testing.T) {
		p := s.SignUp(t, "idem@example.com")
		a := s.Refresh(t, p.Refresh())
		b := s.Refresh(t, p.Refresh())
		if a.AccessToken != b.AccessToken || a.Refresh() != b.Refresh() ||
			!a.AccessTokenExpiresAt.Equal(b.AccessTokenExpiresAt) || !a.RefreshTokenExpiresAt.Equal(b.RefreshTokenExpiresAt) {
			t.Fatal("retried refresh returned a different pair")
		}
		testkit.WantOK(t, s.Post(t, b.AccessToken, testkit.MeQuery, nil))
	})

	t.Run("TenConcurrentRefreshesGetOnePair", func(t *testing.T) {
		p := s.SignUp(t, "conc@example.com")
		results := make([]testkit.Response, 10)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() { results[i] = s.Post(t, p.Refresh(), testkit.RefreshMutation, nil) })
		}
		wg.Wait()
		var first testkit.Payload
		results[0].Field(t, "refresh", &first)
		for _, r := range results[1:] {
			var got testkit.Payload
			r.Field(t, "refresh", &got)
			if got.AccessToken != first.AccessToken || got.Refresh() != first.Refresh() {
				t.Fatal("concurrent refreshes returned different pairs")
			}
		}
		testkit.WantOK(t, s.Post(t, first.AccessToken, testkit.MeQuery, nil))
		testkit.WantOK(t, s.Post(t, first.Refresh(), testkit.RefreshMutation, nil))
	})

	t.Run("ReplayAfterSuccessorUsedRevokesSession", func(t *testing.T) {
		p := s.SignUp(t, "replay@example.com")
		n := s.Refresh(t, p.Refresh())
		testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil)) // the successor is now used
		testkit.WantCode(t, s.Post(t, p.Refresh(), testkit.RefreshMutation, nil), "REFRESH_TOKEN_REUSED")
		testkit.WantCode(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, n.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
	})

	t.Run("ReplayOfOlderGenerationRevokesSession", func(t *testing.T) {
		p := s.SignUp(t, "older@example.com")
		n1 := s.Refresh(t, p.Refresh())
		n2 := s.Refresh(t, n1.Refresh())
		testkit.WantCode(t, s.Post(t, p.Refresh(), testkit.RefreshMutation, nil), "REFRESH_TOKEN_REUSED")
		testkit.WantCode(t, s.Post(t, n2.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, n2.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
	})

	t.Run("ReplayRacingRefreshLeavesOnePair", func(t *testing.T) {
		for i := range 10 {
			p := s.SignUp(t, "race"+string(rune('a'+i))+"@example.com")
			n := s.Refresh(t, p.Refresh())
			testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil))
			var legit, replay testkit.Response
			var wg sync.WaitGroup
			wg.Go(func() { legit = s.Post(t, n.Refresh(), testkit.RefreshMutation, nil) })
			wg.Go(func() { replay = s.Post(t, p.Refresh(), testkit.RefreshMutation, nil) })
			wg.Wait()
			testkit.WantCode(t, replay, "REFRESH_TOKEN_REUSED")
			// Whatever the order, nothing the legitimate client holds works now.
			if legit.Code() == "" {
				var got testkit.Payload
				legit.Field(t, "refresh", &got)
				testkit.WantCode(t, s.Post(t, got.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
				testkit.WantCode(t, s.Post(t, got.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
			}
			testkit.WantCode(t, s.Post(t, n.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
		}
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
