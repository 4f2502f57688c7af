// Package cookies carries tokens the way browser clients want them (API.md,
// "Browser clients"): the refresh token and the device proof in HttpOnly
// cookies, out of reach of page scripts. It reads those cookies from the
// request, decides whether a token goes out as a cookie, and writes or
// clears Set-Cookie. The domain (package auth) never sees a cookie: it takes
// tokens as arguments and returns the tokens it issues.
package cookies

import (
	"context"
	"mime"
	"net/http"
	"slices"
	"time"

	"github.com/example/sessionauth/auth"
)

const (
	// Refresh is the refresh-token cookie's name; the __Host- prefix makes
	// browsers insist on Secure, Path=/ and no Domain.
	Refresh = "__Host-refresh_token"
	// Device is the device-proof cookie's name (see auth's device.go).
	Device = "__Host-device_token"
	// TransportHeader set to "cookie" asks for the refresh token and the
	// device proof as cookies.
	TransportHeader = "X-Token-Transport"
	// DeviceHeader carries a device proof on login, for clients that keep
	// it themselves.
	DeviceHeader = "X-Device-Token"
)

// state is what Middleware learns about one request's cookies.
type state struct {
	w      http.ResponseWriter
	want   bool   // the client asked for cookie transport
	sent   bool   // the refresh-token cookie was present
	value  string // the refresh-token cookie, "" when absent
	csrfOK bool   // the request may be authenticated by that cookie
	used   bool   // the cookie was handed out to authenticate this request
	device string // the device proof presented, "" when none
}

type contextKey struct{}

// Middleware records what the request says about cookie transport, and the
// writer to set cookies on, for the functions of this package. A cookie
// authenticates only what a cross-site form or image cannot send: a JSON
// POST, from one of allowedOrigins when the browser names its origin.
func Middleware(allowedOrigins []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &state{w: w, want: r.Header.Get(TransportHeader) == "cookie", device: presentedDevice(r)}
		if c, err := r.Cookie(Refresh); err == nil {
			st.sent, st.value = true, c.Value
			mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			origin := r.Header.Get("Origin")
			st.csrfOK = r.Method == http.MethodPost && mediaType == "application/json" &&
				(origin == "" || slices.Contains(allowedOrigins, origin))
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), contextKey{}, st)))
	})
}

func fromContext(ctx context.Context) *state {
	st, _ := ctx.Value(contextKey{}).(*state)
	return st
}

// presentedDevice returns the device proof r carries: the header, else the
// cookie; "" when neither holds something that could be a token. The cookie
// needs no CSRF check: it proves nothing on its own, it only decides which
// counter a password check is counted on.
func presentedDevice(r *http.Request) string {
	if v := r.Header.Get(DeviceHeader); v != "" {
		if auth.WellFormed(v) {
			return v
		}
		return ""
	}
	if c, err := r.Cookie(Device); err == nil && auth.WellFormed(c.Value) {
		return c.Value
	}
	return ""
}

// DeviceProof returns the device proof the request presented (the
// X-Device-Token header, else the device cookie), for login; "" when none.
func DeviceProof(ctx context.Context) string {
	if st := fromContext(ctx); st != nil {
		return st.device
	}
	return ""
}

var errRefused = &auth.Error{Code: auth.CodeUnauthenticated,
	Message: "the refresh-token cookie is accepted only in a JSON POST from an allowed origin"}

// RefreshToken returns the refresh-token cookie's token, for refresh and
// logout of a request that sent no Authorization header; "" when there is no
// cookie or it could not be a token (the domain refuses "" as
// UNAUTHENTICATED). A token it returns makes the request cookie-authenticated:
// a refresh's successor then goes back as the cookie (DeliverRefresh).
// Errors: UNAUTHENTICATED when the request fails the CSRF checks.
func RefreshToken(ctx context.Context) (string, error) {
	st := fromContext(ctx)
	switch {
	case st == nil || !st.sent:
		return "", nil
	case !st.csrfOK:
		return "", errRefused
	case !auth.WellFormed(st.value):
		return "", nil
	}
	st.used = true
	return st.value, nil
}

// DeliverRefresh sets the refresh-token cookie to token, expiring at expires
// (now is the clock expires was fixed by, for Max-Age), when the client asked
// for cookie transport or the request was authenticated by the cookie (its
// successor must replace it, and a browser client must never see it). It
// reports whether it did; the payload then carries refreshToken: null.
func DeliverRefresh(ctx context.Context, token string, expires, now time.Time) bool {
	st := fromContext(ctx)
	if st == nil || !(st.want || st.used) {
		return false
	}
	set(st.w, Refresh, token, expires, now)
	return true
}

// DeliverDevice sets the device-proof cookie to token, expiring at expires
// (now as for DeliverRefresh), when the client asked for cookie transport and
// there is a proof to deliver. It reports whether it did; the payload then
// carries deviceToken: null.
func DeliverDevice(ctx context.Context, token string, expires, now time.Time) bool {
	st := fromContext(ctx)
	if token == "" || st == nil || !st.want {
		return false
	}
	set(st.w, Device, token, expires, now)
	return true
}

// ClearRefresh tells the browser to forget the refresh-token cookie, when
// the request sent one or asked for cookie transport: after logout or
// deleteMyAccount, whose session is over.
func ClearRefresh(ctx context.Context) {
	st := fromContext(ctx)
	if st == nil || !(st.sent || st.want) {
		return
	}
	http.SetCookie(st.w, &http.Cookie{
		Name: Refresh, Value: "", Path: "/", MaxAge: -1, Expires: time.Unix(0, 0),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
}

// set writes a token cookie that lives until expires, by Max-Age (which
// browsers prefer, and which a client's skewed clock cannot shift) and by
// Expires for older clients.
func set(w http.ResponseWriter, name, token string, expires, now time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    token,
		Path:     "/",
		Expires:  expires.UTC(),
		MaxAge:   max(1, int(expires.Sub(now)/time.Second)),
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	})
}
