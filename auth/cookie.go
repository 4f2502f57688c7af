package auth

import (
	"context"
	"mime"
	"net/http"
	"slices"
	"time"
)

// Browser clients keep their refresh token in an HttpOnly cookie, out of
// reach of page scripts (API.md, "Browser clients").
const (
	// RefreshCookie is the cookie's name; the __Host- prefix makes browsers
	// insist on Secure, Path=/ and no Domain.
	RefreshCookie = "__Host-refresh_token"
	// TransportHeader set to "cookie" asks for the refresh token as a cookie.
	TransportHeader = "X-Token-Transport"
)

// cookieState is what the middleware learns about cookie transport.
type cookieState struct {
	w      http.ResponseWriter
	want   bool   // the client asked for cookie transport
	value  string // the refresh-token cookie, "" when absent
	csrfOK bool   // the request may be authenticated by the cookie
	sent   bool   // the cookie was present in the request
	used   bool   // the cookie authenticated this request
}

func (s *Service) cookieState(w http.ResponseWriter, r *http.Request) cookieState {
	c := cookieState{w: w, want: r.Header.Get(TransportHeader) == "cookie"}
	if ck, err := r.Cookie(RefreshCookie); err == nil {
		c.sent = true
		c.value = ck.Value
	}
	if c.sent {
		// A cookie rides along on any request a browser makes, so it
		// authenticates only what a cross-site form or image cannot send:
		// a JSON POST, from an allowed origin when the browser names one.
		mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		origin := r.Header.Get("Origin")
		c.csrfOK = r.Method == http.MethodPost && mediaType == "application/json" &&
			(origin == "" || slices.Contains(s.cfg.AllowedOrigins, origin))
	}
	return c
}

var errCookieRefused = &Error{Code: CodeUnauthenticated,
	Message: "the refresh-token cookie is accepted only in a JSON POST from an allowed origin"}

func (c *cookieState) token() (string, error) {
	switch {
	case !c.sent:
		return "", errUnauthenticated
	case !c.csrfOK:
		return "", errCookieRefused
	case !wellFormed(c.value):
		return "", errUnauthenticated
	}
	c.used = true
	return c.value, nil
}

// deliverRefreshCookie sets the refresh-token cookie when the client asked
// for cookie transport, or refreshed with the cookie (its successor must
// replace it, and a browser client must never see it), and reports whether
// it did; the payload then carries refreshToken: null.
func deliverRefreshCookie(ctx context.Context, i *Issued) bool {
	r := requestFromContext(ctx)
	if r == nil || !(r.cookie.want || r.cookie.used) || r.cookie.w == nil {
		return false
	}
	http.SetCookie(r.cookie.w, &http.Cookie{
		Name:     RefreshCookie,
		Value:    i.RefreshToken,
		Path:     "/",
		Expires:  i.Session.RefreshExpiresAt.UTC(),
		MaxAge:   max(1, int(i.Session.RefreshExpiresAt.Sub(i.Now)/time.Second)),
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
	return true
}

// clearRefreshCookie tells the browser to forget the refresh-token cookie.
func clearRefreshCookie(ctx context.Context) {
	r := requestFromContext(ctx)
	if r == nil || r.cookie.w == nil || !(r.cookie.sent || r.cookie.want) {
		return
	}
	http.SetCookie(r.cookie.w, &http.Cookie{
		Name: RefreshCookie, Value: "", Path: "/", MaxAge: -1, Expires: time.Unix(0, 0),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

// deliverDeviceCookie sets the device-proof cookie when the client asked for
// cookie transport, and reports whether it did; the payload then carries
// deviceToken: null. The cookie lives as long as the proof.
func deliverDeviceCookie(ctx context.Context, token string, ttl time.Duration) bool {
	r := requestFromContext(ctx)
	if token == "" || r == nil || !r.cookie.want || r.cookie.w == nil {
		return false
	}
	http.SetCookie(r.cookie.w, &http.Cookie{
		Name:     DeviceCookie,
		Value:    token,
		Path:     "/",
		Expires:  time.Now().Add(ttl).UTC(),
		MaxAge:   max(1, int(ttl/time.Second)),
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
	return true
}
