package resolvers

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/api/cookies"
	"github.com/example/sessionauth/models"
)

var (
	bearer = strings.Repeat("a", auth.TokenLength)
	cookie = strings.Repeat("b", auth.TokenLength)
)

// through runs fn with the context a resolver gets for r (the transport's
// middleware, then the domain's) and returns the cookies the response sets.
func through(r *http.Request, fn func(ctx context.Context)) []*http.Cookie {
	h := cookies.Middleware([]string{"https://app.example.com"}, (&auth.Service{}).Middleware(
		http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { fn(r.Context()) })))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result().Cookies()
}

func jsonPost(header http.Header, withCookie bool) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
	for k, v := range header {
		r.Header[k] = v
	}
	r.Header.Set("Content-Type", "application/json")
	if withCookie {
		r.AddCookie(&http.Cookie{Name: cookies.Refresh, Value: cookie})
	}
	return r
}

// TestSessionToken: refresh and logout act on the Authorization header when
// one was sent, whatever it holds, and on the cookie only when none was.
func TestSessionToken(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *http.Request
		want string
		code string // "" for no error
	}{
		{"HeaderWinsOverCookie", jsonPost(http.Header{"Authorization": {"Bearer " + bearer}}, true), bearer, ""},
		{"MalformedHeaderHidesCookie", jsonPost(http.Header{"Authorization": {"Bearer nonsense"}}, true), "", ""},
		{"CookieWithoutHeader", jsonPost(nil, true), cookie, ""},
		{"Neither", jsonPost(nil, false), "", ""},
		{"CookieFromForeignOrigin", jsonPost(http.Header{"Origin": {"https://evil.example.net"}}, true), "", auth.CodeUnauthenticated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			through(tc.r, func(ctx context.Context) {
				got, err := sessionToken(ctx)
				if got != tc.want || (err == nil) != (tc.code == "") || err != nil && auth.ErrorCode(err) != tc.code {
					t.Fatalf("sessionToken = %.8q, %v; want %.8q, code %q", got, err, tc.want, tc.code)
				}
			})
		})
	}
}

// TestSessionEnded: the cookie goes when logout ended the session, by a
// logout or a replay, and stays when it did not.
func TestSessionEnded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		clear bool
	}{
		{"LoggedOut", nil, true},
		{"Replay", auth.Errorf(auth.CodeRefreshTokenReused, "replayed"), true},
		{"Unauthenticated", auth.Errorf(auth.CodeUnauthenticated, "unknown"), false},
		{"Expired", auth.Errorf(auth.CodeTokenExpired, "expired"), false},
		{"Unavailable", auth.Errorf(auth.CodeServiceUnavailable, "down"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := through(jsonPost(nil, true), func(ctx context.Context) { sessionEnded(ctx, tc.err) })
			if cleared := len(got) == 1 && got[0].Name == cookies.Refresh && got[0].MaxAge < 0; cleared != tc.clear {
				t.Fatalf("Set-Cookie %v, want cleared = %v", got, tc.clear)
			}
		})
	}
}

// TestDeliver: a token that went in a cookie is null in the payload; one
// that did not is there.
func TestDeliver(t *testing.T) {
	now := time.Now()
	issued := &auth.Issued{
		AccessToken: bearer, RefreshToken: cookie, DeviceToken: bearer, DeviceExpiresAt: now.Add(time.Hour), Now: now,
		Session: &models.Session{RefreshExpiresAt: now.Add(time.Hour), AccessExpiresAt: now.Add(time.Minute)},
		User:    &models.User{},
	}
	t.Run("CookieTransport", func(t *testing.T) {
		got := through(jsonPost(http.Header{cookies.TransportHeader: {"cookie"}}, false), func(ctx context.Context) {
			if p := deliver(ctx, issued); p.RefreshToken != nil || p.DeviceToken != nil || p.AccessToken != bearer {
				t.Fatalf("payload carries a token delivered as a cookie: %+v", p)
			}
		})
		if len(got) != 2 {
			t.Fatalf("Set-Cookie %v, want the refresh and device cookies", got)
		}
	})
	t.Run("Body", func(t *testing.T) {
		got := through(jsonPost(nil, false), func(ctx context.Context) {
			if p := deliver(ctx, issued); p.RefreshToken == nil || *p.RefreshToken != cookie || p.DeviceToken == nil || *p.DeviceToken != bearer {
				t.Fatalf("payload lacks its tokens: %+v", p)
			}
		})
		if len(got) != 0 {
			t.Fatalf("Set-Cookie %v, want none", got)
		}
	})
}
