package api

import (
	"net/http"
	"testing"

	"github.com/example/sessionauth/internal/testkit"
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
			testkit.WantCode(t, s.Post(t, tok, testkit.MeQuery, nil), "UNAUTHENTICATED")
		}
		for _, tok := range refresh {
			testkit.WantCode(t, s.Post(t, tok, testkit.RefreshMutation, nil), "UNAUTHENTICATED")
			testkit.WantCode(t, s.Post(t, tok, testkit.LogoutMutation, nil), "UNAUTHENTICATED")
		}
	}

	t.Run("Bearer", func(t *testing.T) {
		p := s.SignUp(t, "bearer@example.com")
		lost := s.Refresh(t, p.Refresh())
		r := s.Post(t, p.Refresh(), testkit.LogoutMutation, nil)
		testkit.WantOK(t, r)
		if string(r.Data["logout"]) != "true" {
			t.Fatalf("logout = %s", r.Data["logout"])
		}
		gone(t, []string{p.AccessToken, lost.AccessToken}, p.Refresh(), lost.Refresh())
	})

	t.Run("BearerAfterTheNewPairWasUsed", func(t *testing.T) {
		// Another tab got the pair and used it; within the window the old
		// token still refreshes, so it still logs out.
		p := s.SignUp(t, "used@example.com")
		n := s.Refresh(t, p.Refresh())
		testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil))
		testkit.WantOK(t, s.Post(t, p.Refresh(), testkit.LogoutMutation, nil))
		gone(t, []string{n.AccessToken}, p.Refresh(), n.Refresh())
	})

	t.Run("Cookie", func(t *testing.T) {
		b := newBrowser(t, s, app)
		signUp := `mutation { signUp(input: {email: "cookie@example.com", password: "` + testkit.Password + `"}) { ` + testkit.PayloadFields + ` } }`
		r := b.do("application/json", signUp, nil)
		var p testkit.Payload
		r.Field(t, "signUp", &p)
		old := refreshCookie(t, r)

		// The refresh's response, with its new cookie, never arrives.
		r = b.do("application/json", testkit.RefreshMutation, old)
		var lost testkit.Payload
		r.Field(t, "refresh", &lost)
		newCookie := refreshCookie(t, r)

		r = b.do("application/json", testkit.LogoutMutation, old)
		testkit.WantOK(t, r)
		if cleared := refreshCookie(t, r); cleared.MaxAge >= 0 || cleared.Value != "" {
			t.Fatalf("logout did not clear the cookie: %+v", cleared)
		}
		for _, c := range []*http.Cookie{old, newCookie} {
			r = b.do("application/json", testkit.RefreshMutation, c)
			testkit.WantCode(t, r, "UNAUTHENTICATED")
		}
		gone(t, []string{p.AccessToken, lost.AccessToken}, old.Value, newCookie.Value)
	})

	t.Run("ReplayedTokenRevokes", func(t *testing.T) {
		// Past the window, with the new pair used, the old token is a
		// replay wherever it is presented: the session is revoked.
		s := newTestServer(t, func(c *config) { c.Auth.ReuseWindow = 0 })
		p := s.SignUp(t, "replay@example.com")
		n := s.Refresh(t, p.Refresh())
		testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil))
		testkit.WantCode(t, s.Post(t, p.Refresh(), testkit.LogoutMutation, nil), "REFRESH_TOKEN_REUSED")
		testkit.WantCode(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, n.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, p.Refresh(), testkit.LogoutMutation, nil), "UNAUTHENTICATED")
	})
}
