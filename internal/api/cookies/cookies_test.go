package cookies

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/example/sessionauth/auth"
)

const app = "https://app.example.com"

var (
	token = strings.Repeat("a", auth.TokenLength) // one that could be ours
	other = strings.Repeat("b", auth.TokenLength)
)

// request builds a request to /graphql with the given method, Content-Type,
// Origin and headers ("" for none) and cookies (name, value pairs).
func request(method, contentType, origin string, header http.Header, cookies ...string) *http.Request {
	r := httptest.NewRequest(method, "/graphql", nil)
	for k, v := range header {
		r.Header[k] = v
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	for i := 0; i+1 < len(cookies); i += 2 {
		r.AddCookie(&http.Cookie{Name: cookies[i], Value: cookies[i+1]})
	}
	return r
}

// serve passes r through Middleware (allowing app) and runs fn with the
// request's context, as a resolver would; it returns the response's cookies.
func serve(t *testing.T, r *http.Request, fn func(ctx context.Context)) []*http.Cookie {
	t.Helper()
	ran := false
	h := Middleware([]string{app}, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		fn(r.Context())
		ran = true
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if !ran {
		t.Fatal("the middleware did not call the next handler")
	}
	return w.Result().Cookies()
}

func wantCookie(t *testing.T, got []*http.Cookie, name string) *http.Cookie {
	t.Helper()
	for _, c := range got {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", name, got)
	return nil
}

func wantNoCookies(t *testing.T, got []*http.Cookie) {
	t.Helper()
	if len(got) != 0 {
		t.Fatalf("Set-Cookie %v, want none", got)
	}
}

// TestRefreshTokenCSRF: the refresh cookie authenticates only a JSON POST,
// from an allowed origin when the request names one.
func TestRefreshTokenCSRF(t *testing.T) {
	for _, tc := range []struct {
		name                string
		method, ctype, orig string
		accepted            bool
	}{
		{"JSONPostWithoutOrigin", http.MethodPost, "application/json", "", true},
		{"JSONPostFromAllowedOrigin", http.MethodPost, "application/json", app, true},
		{"JSONWithParameters", http.MethodPost, "application/json; charset=utf-8", app, true},
		{"ForeignOrigin", http.MethodPost, "application/json", "https://evil.example.net", false},
		{"NonJSON", http.MethodPost, "text/plain", app, false},
		{"FormPost", http.MethodPost, "application/x-www-form-urlencoded", "", false},
		{"NoContentType", http.MethodPost, "", "", false},
		{"Get", http.MethodGet, "application/json", app, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serve(t, request(tc.method, tc.ctype, tc.orig, nil, Refresh, token), func(ctx context.Context) {
				got, err := RefreshToken(ctx)
				if !tc.accepted {
					if auth.ErrorCode(err) != auth.CodeUnauthenticated || got != "" {
						t.Fatalf("RefreshToken = %.8q, %v; want UNAUTHENTICATED", got, err)
					}
					return
				}
				if err != nil || got != token {
					t.Fatalf("RefreshToken = %.8q, %v; want the cookie", got, err)
				}
			})
		})
	}
}

// TestRefreshTokenNone: without a cookie that could be a token there is no
// token to offer (the domain refuses ""), and no error of the transport's.
func TestRefreshTokenNone(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *http.Request
	}{
		{"NoCookie", request(http.MethodPost, "application/json", "", nil)},
		{"MalformedCookie", request(http.MethodPost, "application/json", "", nil, Refresh, "not a token")},
		{"TruncatedCookie", request(http.MethodPost, "application/json", "", nil, Refresh, token[:100])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := serve(t, tc.r, func(ctx context.Context) {
				if tok, err := RefreshToken(ctx); tok != "" || err != nil {
					t.Fatalf("RefreshToken = %.8q, %v; want \"\", nil", tok, err)
				}
				// Nothing authenticated the request: a new pair stays
				// in the body.
				if DeliverRefresh(ctx, other, time.Now().Add(time.Hour), time.Now()) {
					t.Fatal("delivered as a cookie without cookie transport asked or used")
				}
			})
			wantNoCookies(t, got)
		})
	}
	t.Run("WithoutMiddleware", func(t *testing.T) {
		ctx := context.Background()
		if tok, err := RefreshToken(ctx); tok != "" || err != nil {
			t.Fatalf("RefreshToken = %.8q, %v; want \"\", nil", tok, err)
		}
		if DeliverRefresh(ctx, token, time.Now().Add(time.Hour), time.Now()) || DeliverDevice(ctx, token, time.Now().Add(time.Hour), time.Now()) {
			t.Fatal("delivered with no writer")
		}
		ClearRefresh(ctx)
		if DeviceProof(ctx) != "" {
			t.Fatal("a device proof with no request")
		}
	})
}

// TestDeliverRefresh: the refresh token goes in the cookie when the client
// asked (X-Token-Transport: cookie) or the request was authenticated by
// the cookie, and never otherwise.
func TestDeliverRefresh(t *testing.T) {
	asked := http.Header{TransportHeader: {"cookie"}}
	for _, tc := range []struct {
		name    string
		r       *http.Request
		useIt   bool // the resolver takes the cookie's token first
		deliver bool
	}{
		{"Asked", request(http.MethodPost, "application/json", "", asked), false, true},
		{"UsedTheCookie", request(http.MethodPost, "application/json", "", nil, Refresh, token), true, true},
		{"SentButNotUsed", request(http.MethodPost, "application/json", "", nil, Refresh, token), false, false},
		{"Neither", request(http.MethodPost, "application/json", "", nil), false, false},
		{"OtherTransport", request(http.MethodPost, "application/json", "", http.Header{TransportHeader: {"body"}}), false, false},
		{"RefusedCookie", request(http.MethodPost, "application/json", "https://evil.example.net", nil, Refresh, token), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := serve(t, tc.r, func(ctx context.Context) {
				if tc.useIt {
					RefreshToken(ctx)
				}
				now := time.Now()
				if d := DeliverRefresh(ctx, other, now.Add(time.Hour), now); d != tc.deliver {
					t.Fatalf("DeliverRefresh = %v, want %v", d, tc.deliver)
				}
			})
			if !tc.deliver {
				wantNoCookies(t, got)
				return
			}
			if c := wantCookie(t, got, Refresh); c.Value != other {
				t.Fatalf("cookie value %.8q, want the delivered token", c.Value)
			}
		})
	}
}

// TestCookieAttributes: both token cookies are HttpOnly, Secure,
// SameSite=Strict, Path=/, with no Domain (what __Host- requires), and
// expire with their token: Max-Age from the token's expiry by the clock
// that fixed it, Expires at the expiry itself.
func TestCookieAttributes(t *testing.T) {
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.FixedZone("skewed", 3*3600))
	for _, tc := range []struct {
		name       string
		expires    time.Time
		wantMaxAge int
	}{
		{"Hours", now.Add(72*time.Hour + 500*time.Millisecond), 72 * 3600},
		{"UnderASecond", now.Add(300 * time.Millisecond), 1},
		{"AlreadyDue", now.Add(-time.Minute), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request(http.MethodPost, "application/json", "", http.Header{TransportHeader: {"cookie"}})
			got := serve(t, r, func(ctx context.Context) {
				if !DeliverRefresh(ctx, token, tc.expires, now) || !DeliverDevice(ctx, other, tc.expires, now) {
					t.Fatal("not delivered although cookie transport was asked for")
				}
			})
			for name, value := range map[string]string{Refresh: token, Device: other} {
				c := wantCookie(t, got, name)
				if c.Value != value || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
					t.Fatalf("%s attributes: %+v", name, c)
				}
				if c.MaxAge != tc.wantMaxAge {
					t.Fatalf("%s Max-Age %d, want %d", name, c.MaxAge, tc.wantMaxAge)
				}
				if !c.Expires.Equal(tc.expires.Truncate(time.Second)) {
					t.Fatalf("%s Expires %v, want %v", name, c.Expires, tc.expires.UTC())
				}
			}
		})
	}
}

// TestDeliverDevice: the device proof goes in a cookie only when the client
// asked for cookie transport; authenticating by the refresh cookie is not
// asking, and there is nothing to deliver without a proof.
func TestDeliverDevice(t *testing.T) {
	for _, tc := range []struct {
		name    string
		r       *http.Request
		proof   string
		deliver bool
	}{
		{"Asked", request(http.MethodPost, "application/json", "", http.Header{TransportHeader: {"cookie"}}), token, true},
		{"AskedNoProof", request(http.MethodPost, "application/json", "", http.Header{TransportHeader: {"cookie"}}), "", false},
		{"UsedRefreshCookieOnly", request(http.MethodPost, "application/json", "", nil, Refresh, token), token, false},
		{"NotAsked", request(http.MethodPost, "application/json", "", nil), token, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := serve(t, tc.r, func(ctx context.Context) {
				RefreshToken(ctx)
				now := time.Now()
				if d := DeliverDevice(ctx, tc.proof, now.Add(time.Hour), now); d != tc.deliver {
					t.Fatalf("DeliverDevice = %v, want %v", d, tc.deliver)
				}
			})
			if !tc.deliver {
				wantNoCookies(t, got)
				return
			}
			wantCookie(t, got, Device)
		})
	}
}

// TestClearRefresh: logout clears the refresh cookie of a client that sent
// one or uses cookie transport, and sets nothing for any other.
func TestClearRefresh(t *testing.T) {
	for _, tc := range []struct {
		name  string
		r     *http.Request
		clear bool
	}{
		{"SentCookie", request(http.MethodPost, "application/json", "", nil, Refresh, token), true},
		{"RefusedCookieStillCleared", request(http.MethodPost, "text/plain", "", nil, Refresh, token), true},
		{"Asked", request(http.MethodPost, "application/json", "", http.Header{TransportHeader: {"cookie"}}), true},
		{"BearerClient", request(http.MethodPost, "application/json", "", http.Header{"Authorization": {"Bearer " + token}}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := serve(t, tc.r, ClearRefresh)
			if !tc.clear {
				wantNoCookies(t, got)
				return
			}
			c := wantCookie(t, got, Refresh)
			if c.Value != "" || c.MaxAge >= 0 || !c.Expires.Equal(time.Unix(0, 0)) {
				t.Fatalf("not a clearing cookie: %+v", c)
			}
			if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
				t.Fatalf("clearing cookie attributes: %+v", c)
			}
		})
	}
}

// TestDeviceProof: the header wins over the cookie, even when it holds
// garbage; a proof that could not be a token is no proof.
func TestDeviceProof(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *http.Request
		want string
	}{
		{"Header", request(http.MethodPost, "application/json", "", http.Header{DeviceHeader: {token}}), token},
		{"Cookie", request(http.MethodPost, "application/json", "", nil, Device, other), other},
		{"HeaderWinsOverCookie", request(http.MethodPost, "application/json", "", http.Header{DeviceHeader: {token}}, Device, other), token},
		{"MalformedHeaderHidesCookie", request(http.MethodPost, "application/json", "", http.Header{DeviceHeader: {"garbage"}}, Device, other), ""},
		{"MalformedCookie", request(http.MethodPost, "application/json", "", nil, Device, "garbage"), ""},
		// The proof only picks a throttle counter: no CSRF rule applies.
		{"CookieFromForeignOriginGet", request(http.MethodGet, "", "https://evil.example.net", nil, Device, other), other},
		{"None", request(http.MethodPost, "application/json", "", nil), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serve(t, tc.r, func(ctx context.Context) {
				if got := DeviceProof(ctx); got != tc.want {
					t.Fatalf("DeviceProof = %.8q, want %.8q", got, tc.want)
				}
			})
		})
	}
}
