package api

import (
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/api/cookies"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

// browser is a cookie-carrying client, like an SPA's fetch with
// credentials: "include".
type browser struct {
	t      *testing.T
	s      *testServer
	origin string
}

func newBrowser(t *testing.T, s *testServer, origin string) *browser {
	return &browser{t: t, s: s, origin: origin}
}

// do posts query with the cookie transport, from the browser's origin; the
// cookie is carried by hand (httptest serves plain HTTP and the cookie is
// Secure) as a browser would over HTTPS.
func (b *browser) do(contentType, query string, cookie *http.Cookie) testkit.Response {
	b.t.Helper()
	return b.doAs("", contentType, query, cookie)
}

// doAs is do with the access token as the bearer ("" for none).
func (b *browser) doAs(token, contentType, query string, cookie *http.Cookie) testkit.Response {
	b.t.Helper()
	h := testkit.Bearer(token)
	h.Set("Content-Type", contentType)
	h.Set(cookies.TransportHeader, "cookie")
	if b.origin != "" {
		h.Set("Origin", b.origin)
	}
	if cookie != nil {
		h.Set("Cookie", (&http.Cookie{Name: cookie.Name, Value: cookie.Value}).String())
	}
	return b.s.Send(b.t, h, map[string]any{"query": query})
}

// refreshCookie returns the refresh-token cookie that r sets.
func refreshCookie(t *testing.T, r testkit.Response) *http.Cookie {
	t.Helper()
	for _, c := range r.Cookies {
		if c.Name == cookies.Refresh {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", cookies.Refresh, r.Header["Set-Cookie"])
	return nil
}

func TestCookieTransport(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	s := newTestServer(t, func(c *config) { c.Auth.AllowedOrigins = []string{app} })
	b := newBrowser(t, s, app)
	signUp := `mutation { signUp(input: {email: "spa@example.com", password: "` + testkit.Password + `"}) { ` + testkit.PayloadFields + ` } }`

	r := b.do("application/json", signUp, nil)
	var p testkit.Payload
	r.Field(t, "signUp", &p)
	if p.RefreshToken != nil {
		t.Fatal("refreshToken in the body despite cookie transport")
	}
	c := refreshCookie(t, r)
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Fatalf("cookie attributes: %+v", c)
	}
	if !tokenPattern.MatchString(c.Value) {
		t.Fatal("cookie value is not a token")
	}
	if d := c.Expires.Sub(p.RefreshTokenExpiresAt); d > time.Second || d < -time.Second {
		t.Fatalf("cookie expires %v, token %v", c.Expires, p.RefreshTokenExpiresAt)
	}
	if r.Header.Get("Access-Control-Allow-Origin") != app || r.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("CORS headers missing for an allowed origin: %v", r.Header)
	}

	// Refresh by cookie: a new cookie, same session, old access token dead.
	r = b.do("application/json", testkit.RefreshMutation, c)
	var n testkit.Payload
	r.Field(t, "refresh", &n)
	c2 := refreshCookie(t, r)
	if n.RefreshToken != nil || c2.Value == c.Value || n.Session.ID != p.Session.ID {
		t.Fatal("cookie refresh did not rotate into a new cookie")
	}
	testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil))

	t.Run("ForeignOriginRefused", func(t *testing.T) {
		evil := newBrowser(t, s, "https://evil.example.net")
		r := evil.do("application/json", testkit.RefreshMutation, c2)
		testkit.WantCode(t, r, "UNAUTHENTICATED")
		if r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatal("CORS granted to a foreign origin")
		}
		r = evil.do("application/json", testkit.LogoutMutation, c2)
		testkit.WantCode(t, r, "UNAUTHENTICATED")
	})
	t.Run("NonJSONRefused", func(t *testing.T) {
		r := b.do("text/plain", testkit.RefreshMutation, c2)
		testkit.WantCode(t, r, "BAD_USER_INPUT")
		if r.Status != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d, want 415", r.Status)
		}
	})
	testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil)) // nothing above ended the session

	t.Run("NoOriginIsAccepted", func(t *testing.T) {
		native := newBrowser(t, s, "")
		r := native.do("application/json", testkit.RefreshMutation, c2)
		var m testkit.Payload
		r.Field(t, "refresh", &m)
		c2 = refreshCookie(t, r)
	})

	t.Run("CookieRefreshWithoutTransportHeaderStaysInCookie", func(t *testing.T) {
		r := s.Send(t, http.Header{"Cookie": {cookies.Refresh + "=" + c2.Value}}, map[string]any{"query": testkit.RefreshMutation})
		var m testkit.Payload
		r.Field(t, "refresh", &m)
		if m.RefreshToken != nil {
			t.Fatal("a cookie-authenticated refresh put the new refresh token in the body")
		}
		c2 = refreshCookie(t, r)
	})

	t.Run("LogoutClearsCookie", func(t *testing.T) {
		r := b.do("application/json", testkit.LogoutMutation, c2)
		testkit.WantOK(t, r)
		cleared := refreshCookie(t, r)
		if cleared.MaxAge >= 0 || cleared.Value != "" {
			t.Fatalf("logout did not clear the cookie: %+v", cleared)
		}
		r = b.do("application/json", testkit.RefreshMutation, c2)
		testkit.WantCode(t, r, "UNAUTHENTICATED")
	})

	t.Run("HeaderWinsOverCookie", func(t *testing.T) {
		q := s.SignUp(t, "both@example.com")
		h := http.Header{"Authorization": {"Bearer " + q.Refresh()}, "Cookie": {cookies.Refresh + "=" + c.Value}}
		var got testkit.Payload
		s.PostHeader(t, h, testkit.RefreshMutation, nil).Field(t, "refresh", &got)
		if got.Session.ID != q.Session.ID {
			t.Fatal("the cookie was used although an Authorization header was sent")
		}
	})
}

func TestCORSPreflight(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	s := newTestServer(t, func(c *config) { c.Auth.AllowedOrigins = []string{app} })
	for origin, allowed := range map[string]bool{app: true, "https://evil.example.net": false} {
		req, _ := http.NewRequest(http.MethodOptions, s.URL+"/graphql", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type, x-token-transport")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("Access-Control-Allow-Origin") == origin && resp.Header.Get("Access-Control-Allow-Credentials") == "true"
		if got != allowed {
			t.Errorf("preflight from %s: allowed = %v, want %v (%v)", origin, got, allowed, resp.Header)
		}
	}
}

func TestClientAddress(t *testing.T) {
	t.Parallel()
	url := pgtest.New(t)
	trusted := newTestServerOn(t, url, func(c *config) { c.Auth.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	untrusted := newTestServerOn(t, url, nil)

	h := http.Header{"X-Forwarded-For": {"192.0.2.1, 203.0.113.9, 127.0.0.1"}}
	r := trusted.PostHeader(t, h, testkit.SignUpMutation, map[string]any{"email": "via-proxy@example.com", "password": testkit.Password})
	var p testkit.Payload
	r.Field(t, "signUp", &p)
	if p.Session.IPAddress == nil || *p.Session.IPAddress != "203.0.113.9" {
		t.Fatalf("ipAddress behind a trusted proxy = %v, want 203.0.113.9", p.Session.IPAddress)
	}
	r = untrusted.PostHeader(t, h, testkit.SignUpMutation, map[string]any{"email": "spoof@example.com", "password": testkit.Password})
	r.Field(t, "signUp", &p)
	if p.Session.IPAddress == nil || *p.Session.IPAddress != "127.0.0.1" {
		t.Fatalf("spoofed X-Forwarded-For was believed: %v", p.Session.IPAddress)
	}
}
