package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/api/cookies"
	"github.com/example/sessionauth/internal/pgtest"
)

// browser is a cookie-carrying client, like an SPA's fetch with
// credentials: "include".
type browser struct {
	t      *testing.T
	s      *testServer
	client *http.Client
	origin string
}

func newBrowser(t *testing.T, s *testServer, origin string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, s: s, client: &http.Client{Jar: jar}, origin: origin}
}

// do posts query; the jar is not used (httptest serves plain HTTP and the
// cookie is Secure), so the cookie is carried by hand like a browser would
// over HTTPS.
func (b *browser) do(method, contentType, query string, cookie *http.Cookie) (gqlResponse, *http.Response) {
	b.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query})
	req, _ := http.NewRequest(method, b.s.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(cookies.TransportHeader, "cookie")
	if b.origin != "" {
		req.Header.Set("Origin", b.origin)
	}
	if cookie != nil {
		req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out gqlResponse
	json.NewDecoder(resp.Body).Decode(&out)
	out.Status = resp.StatusCode
	return out, resp
}

func refreshCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == cookies.Refresh {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", cookies.Refresh, resp.Header["Set-Cookie"])
	return nil
}

func TestCookieTransport(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	s := newTestServer(t, func(c *config) { c.Auth.AllowedOrigins = []string{app} })
	b := newBrowser(t, s, app)
	signUp := `mutation { signUp(input: {email: "spa@example.com", password: "` + testPassword + `"}) { ` + payloadFields + ` } }`

	r, resp := b.do(http.MethodPost, "application/json", signUp, nil)
	var p payload
	r.field(t, "signUp", &p)
	if p.RefreshToken != nil {
		t.Fatal("refreshToken in the body despite cookie transport")
	}
	c := refreshCookie(t, resp)
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Fatalf("cookie attributes: %+v", c)
	}
	if !tokenPattern.MatchString(c.Value) {
		t.Fatal("cookie value is not a token")
	}
	if d := c.Expires.Sub(p.RefreshTokenExpiresAt); d > time.Second || d < -time.Second {
		t.Fatalf("cookie expires %v, token %v", c.Expires, p.RefreshTokenExpiresAt)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != app || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("CORS headers missing for an allowed origin: %v", resp.Header)
	}

	// Refresh by cookie: a new cookie, same session, old access token dead.
	r, resp = b.do(http.MethodPost, "application/json", refreshMutation, c)
	var n payload
	r.field(t, "refresh", &n)
	c2 := refreshCookie(t, resp)
	if n.RefreshToken != nil || c2.Value == c.Value || n.Session.ID != p.Session.ID {
		t.Fatal("cookie refresh did not rotate into a new cookie")
	}
	wantCode(t, s.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	wantOK(t, s.post(t, n.AccessToken, meQuery, nil))

	t.Run("ForeignOriginRefused", func(t *testing.T) {
		evil := newBrowser(t, s, "https://evil.example.net")
		r, resp := evil.do(http.MethodPost, "application/json", refreshMutation, c2)
		wantCode(t, r, "UNAUTHENTICATED")
		if resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatal("CORS granted to a foreign origin")
		}
		r, _ = evil.do(http.MethodPost, "application/json", logoutMutation, c2)
		wantCode(t, r, "UNAUTHENTICATED")
	})
	t.Run("NonJSONRefused", func(t *testing.T) {
		r, _ := b.do(http.MethodPost, "text/plain", refreshMutation, c2)
		wantCode(t, r, "BAD_USER_INPUT")
		if r.Status != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d, want 415", r.Status)
		}
	})
	wantOK(t, s.post(t, n.AccessToken, meQuery, nil)) // nothing above ended the session

	t.Run("NoOriginIsAccepted", func(t *testing.T) {
		native := newBrowser(t, s, "")
		r, resp := native.do(http.MethodPost, "application/json", refreshMutation, c2)
		var m payload
		r.field(t, "refresh", &m)
		c2 = refreshCookie(t, resp)
	})

	t.Run("CookieRefreshWithoutTransportHeaderStaysInCookie", func(t *testing.T) {
		h := http.Header{"Cookie": {cookies.Refresh + "=" + c2.Value}}
		body, _ := json.Marshal(map[string]any{"query": refreshMutation})
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
		req.Header = h
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r gqlResponse
		json.NewDecoder(resp.Body).Decode(&r)
		var m payload
		r.field(t, "refresh", &m)
		if m.RefreshToken != nil {
			t.Fatal("a cookie-authenticated refresh put the new refresh token in the body")
		}
		c2 = refreshCookie(t, resp)
	})

	t.Run("LogoutClearsCookie", func(t *testing.T) {
		r, resp := b.do(http.MethodPost, "application/json", logoutMutation, c2)
		wantOK(t, r)
		cleared := refreshCookie(t, resp)
		if cleared.MaxAge >= 0 || cleared.Value != "" {
			t.Fatalf("logout did not clear the cookie: %+v", cleared)
		}
		r, _ = b.do(http.MethodPost, "application/json", refreshMutation, c2)
		wantCode(t, r, "UNAUTHENTICATED")
	})

	t.Run("HeaderWinsOverCookie", func(t *testing.T) {
		q := s.signUp(t, "both@example.com")
		h := http.Header{"Authorization": {"Bearer " + q.refresh()}, "Cookie": {cookies.Refresh + "=" + c.Value}}
		var got payload
		s.postHeader(t, h, refreshMutation, nil).field(t, "refresh", &got)
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
	trusted := newTestServerOn(t, url, func(c *config) { c.Auth.TrustedProxies = mustPrefixes(t, "127.0.0.0/8") })
	untrusted := newTestServerOn(t, url, nil)

	h := http.Header{"X-Forwarded-For": {"192.0.2.1, 203.0.113.9, 127.0.0.1"}}
	r := trusted.postHeader(t, h, signUpMutation, map[string]any{"email": "via-proxy@example.com", "password": testPassword})
	var p payload
	r.field(t, "signUp", &p)
	if p.Session.IPAddress == nil || *p.Session.IPAddress != "203.0.113.9" {
		t.Fatalf("ipAddress behind a trusted proxy = %v, want 203.0.113.9", p.Session.IPAddress)
	}
	r = untrusted.postHeader(t, h, signUpMutation, map[string]any{"email": "spoof@example.com", "password": testPassword})
	r.field(t, "signUp", &p)
	if p.Session.IPAddress == nil || *p.Session.IPAddress != "127.0.0.1" {
		t.Fatalf("spoofed X-Forwarded-For was believed: %v", p.Session.IPAddress)
	}
}

func mustPrefixes(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	cfg, err := loadConfig(func(k string) string {
		if k == "TRUSTED_PROXIES" {
			return s
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Auth.TrustedProxies
}
