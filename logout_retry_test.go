package main

import (
	"net/http"
	"testing"
)

// TestLogoutWithTheTokenOfALostRefresh: a client refreshed, lost the
// response, and logs out with the refresh token it still has. Inside the
// reuse window that token would still refresh (to the same pair), so it must
// log out too: the session ends, with every token it had or could get back.
func TestLogoutWithTheTokenOfALostRefresh(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	s := newTestServer(t, func(c *config) { c.Auth.AllowedOrigins = []string{app} }) // the default 30 s window

	// gone asserts that nothing of the session works any more.
	gone := func(t *testing.T, access []string, refresh ...string) {
		t.Helper()
		for _, tok := range access {
			wantCode(t, s.post(t, tok, meQuery, nil), "UNAUTHENTICATED")
		}
		for _, tok := range refresh {
			wantCode(t, s.post(t, tok, refreshMutation, nil), "UNAUTHENTICATED")
			wantCode(t, s.post(t, tok, logoutMutation, nil), "UNAUTHENTICATED")
		}
	}

	t.Run("Bearer", func(t *testing.T) {
		p := s.signUp(t, "bearer@example.com")
		lost := s.refresh(t, p.refresh())
		r := s.post(t, p.refresh(), logoutMutation, nil)
		wantOK(t, r)
		if string(r.Data["logout"]) != "true" {
			t.Fatalf("logout = %s", r.Data["logout"])
		}
		gone(t, []string{p.AccessToken, lost.AccessToken}, p.refresh(), lost.refresh())
	})

	t.Run("BearerAfterTheNewPairWasUsed", func(t *testing.T) {
		// Another tab got the pair and used it; within the window the old
		// token still refreshes, so it still logs out.
		p := s.signUp(t, "used@example.com")
		n := s.refresh(t, p.refresh())
		wantOK(t, s.post(t, n.AccessToken, meQuery, nil))
		wantOK(t, s.post(t, p.refresh(), logoutMutation, nil))
		gone(t, []string{n.AccessToken}, p.refresh(), n.refresh())
	})

	t.Run("Cookie", func(t *testing.T) {
		b := newBrowser(t, s, app)
		signUp := `mutation { signUp(input: {email: "cookie@example.com", password: "` + testPassword + `"}) { ` + payloadFields + ` } }`
		r, resp := b.do(http.MethodPost, "application/json", signUp, nil)
		var p payload
		r.field(t, "signUp", &p)
		old := refreshCookie(t, resp)

		// The refresh's response, with its new cookie, never arrives.
		r, resp = b.do(http.MethodPost, "application/json", refreshMutation, old)
		var lost payload
		r.field(t, "refresh", &lost)
		newCookie := refreshCookie(t, resp)

		r, resp = b.do(http.MethodPost, "application/json", logoutMutation, old)
		wantOK(t, r)
		if cleared := refreshCookie(t, resp); cleared.MaxAge >= 0 || cleared.Value != "" {
			t.Fatalf("logout did not clear the cookie: %+v", cleared)
		}
		for _, c := range []*http.Cookie{old, newCookie} {
			r, _ = b.do(http.MethodPost, "application/json", refreshMutation, c)
			wantCode(t, r, "UNAUTHENTICATED")
		}
		gone(t, []string{p.AccessToken, lost.AccessToken}, old.Value, newCookie.Value)
	})

	t.Run("ReplayedTokenRevokes", func(t *testing.T) {
		// Past the window, with the new pair used, the old token is a
		// replay wherever it is presented: the session is revoked.
		s := newTestServer(t, func(c *config) { c.Auth.ReuseWindow = 0 })
		p := s.signUp(t, "replay@example.com")
		n := s.refresh(t, p.refresh())
		wantOK(t, s.post(t, n.AccessToken, meQuery, nil))
		wantCode(t, s.post(t, p.refresh(), logoutMutation, nil), "REFRESH_TOKEN_REUSED")
		wantCode(t, s.post(t, n.AccessToken, meQuery, nil), "UNAUTHENTICATED")
		wantCode(t, s.post(t, n.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
		wantCode(t, s.post(t, p.refresh(), logoutMutation, nil), "UNAUTHENTICATED")
	})
}
