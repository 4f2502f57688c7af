package main

import (
	"sync"
	"testing"
	"time"
)

func TestRefresh(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.ReuseWindow = 0 })

	t.Run("RotatesBothTokensAndKeepsSession", func(t *testing.T) {
		p := s.signUp(t, "rot@example.com")
		time.Sleep(10 * time.Millisecond) // let the database clock move
		n := s.refresh(t, p.refresh())
		if n.AccessToken == p.AccessToken || n.refresh() == p.refresh() {
			t.Fatal("refresh did not rotate both tokens")
		}
		if !tokenPattern.MatchString(n.AccessToken) || !tokenPattern.MatchString(n.refresh()) {
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
		wantCode(t, s.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
		wantOK(t, s.post(t, n.AccessToken, meQuery, nil))
	})

	t.Run("AccessTokenIsWrongKind", func(t *testing.T) {
		p := s.signUp(t, "kind@example.com")
		wantCode(t, s.post(t, p.AccessToken, refreshMutation, nil), "UNAUTHENTICATED")
		wantCode(t, s.post(t, "", refreshMutation, nil), "UNAUTHENTICATED")
	})

	t.Run("RetryBeforeSuccessorIsUsedGetsSamePair", func(t *testing.T) {
		p := s.signUp(t, "idem@example.com")
		a := s.refresh(t, p.refresh())
		b := s.refresh(t, p.refresh())
		if a.AccessToken != b.AccessToken || a.refresh() != b.refresh() ||
			!a.AccessTokenExpiresAt.Equal(b.AccessTokenExpiresAt) || !a.RefreshTokenExpiresAt.Equal(b.RefreshTokenExpiresAt) {
			t.Fatal("retried refresh returned a different pair")
		}
		wantOK(t, s.post(t, b.AccessToken, meQuery, nil))
	})

	t.Run("TenConcurrentRefreshesGetOnePair", func(t *testing.T) {
		p := s.signUp(t, "conc@example.com")
		results := make([]gqlResponse, 10)
		var wg sync.WaitGroup
		for i := range results {
			wg.Go(func() { results[i] = s.post(t, p.refresh(), refreshMutation, nil) })
		}
		wg.Wait()
		var first payload
		results[0].field(t, "refresh", &first)
		for _, r := range results[1:] {
			var got payload
			r.field(t, "refresh", &got)
			if got.AccessToken != first.AccessToken || got.refresh() != first.refresh() {
				t.Fatal("concurrent refreshes returned different pairs")
			}
		}
		wantOK(t, s.post(t, first.AccessToken, meQuery, nil))
		wantOK(t, s.post(t, first.refresh(), refreshMutation, nil))
	})

	t.Run("ReplayAfterSuccessorUsedRevokesSession", func(t *testing.T) {
		p := s.signUp(t, "replay@example.com")
		n := s.refresh(t, p.refresh())
		wantOK(t, s.post(t, n.AccessToken, meQuery, nil)) // the successor is now used
		wantCode(t, s.post(t, p.refresh(), refreshMutation, nil), "REFRESH_TOKEN_REUSED")
		wantCode(t, s.post(t, n.AccessToken, meQuery, nil), "UNAUTHENTICATED")
		wantCode(t, s.post(t, n.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
	})

	t.Run("ReplayOfOlderGenerationRevokesSession", func(t *testing.T) {
		p := s.signUp(t, "older@example.com")
		n1 := s.refresh(t, p.refresh())
		n2 := s.refresh(t, n1.refresh())
		wantCode(t, s.post(t, p.refresh(), refreshMutation, nil), "REFRESH_TOKEN_REUSED")
		wantCode(t, s.post(t, n2.AccessToken, meQuery, nil), "UNAUTHENTICATED")
		wantCode(t, s.post(t, n2.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
	})

	t.Run("ReplayRacingRefreshLeavesOnePair", func(t *testing.T) {
		for i := range 10 {
			p := s.signUp(t, "race"+string(rune('a'+i))+"@example.com")
			n := s.refresh(t, p.refresh())
			wantOK(t, s.post(t, n.AccessToken, meQuery, nil))
			var legit, replay gqlResponse
			var wg sync.WaitGroup
			wg.Go(func() { legit = s.post(t, n.refresh(), refreshMutation, nil) })
			wg.Go(func() { replay = s.post(t, p.refresh(), refreshMutation, nil) })
			wg.Wait()
			wantCode(t, replay, "REFRESH_TOKEN_REUSED")
			// Whatever the order, nothing the legitimate client holds works now.
			if legit.code() == "" {
				var got payload
				legit.field(t, "refresh", &got)
				wantCode(t, s.post(t, got.AccessToken, meQuery, nil), "UNAUTHENTICATED")
				wantCode(t, s.post(t, got.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
			}
			wantCode(t, s.post(t, n.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
		}
	})
}

func TestRefreshReuseWindow(t *testing.T) {
	t.Parallel()
	const window = 2 * time.Second
	s := newTestServer(t, func(c *config) { c.Auth.ReuseWindow = window })
	p := s.signUp(t, "window@example.com")
	n := s.refresh(t, p.refresh())
	wantOK(t, s.post(t, n.AccessToken, meQuery, nil))

	// Within the window a retry still gets the same pair, used or not...
	again := s.refresh(t, p.refresh())
	if again.AccessToken != n.AccessToken || again.refresh() != n.refresh() ||
		!again.RefreshTokenExpiresAt.Equal(n.RefreshTokenExpiresAt) || !again.AccessTokenExpiresAt.Equal(n.AccessTokenExpiresAt) {
		t.Fatal("retry within the window returned a different pair")
	}
	// ...even after the successor itself was rotated (two quick refreshes).
	m := s.refresh(t, n.refresh())
	again = s.refresh(t, p.refresh())
	if again.refresh() != n.refresh() || !again.RefreshTokenExpiresAt.Equal(n.RefreshTokenExpiresAt) {
		t.Fatal("retry of a twice-rotated token within the window returned a different pair")
	}
	wantOK(t, s.post(t, m.AccessToken, meQuery, nil))

	time.Sleep(time.Until(n.Session.LastUsedAt.Add(window)) + 300*time.Millisecond)
	wantCode(t, s.post(t, p.refresh(), refreshMutation, nil), "REFRESH_TOKEN_REUSED")
	wantCode(t, s.post(t, m.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	wantCode(t, s.post(t, m.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
}
