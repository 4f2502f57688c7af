package auth

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"
)

// request is what the middleware records about the caller. The bearer token
// is resolved lazily, once, by the first piece of code that asks: requests
// that never need a user (the playground, `{ __typename }`, login) and
// requests whose bearer is a refresh token (refresh, logout) skip a useless
// access-token lookup.
type request struct {
	svc       *Service
	bearer    string // the raw token after "Bearer ", "" when absent
	hasBearer bool   // an Authorization header was sent
	client    clientInfo

	once     sync.Once
	identity *Identity
	err      error
}

type clientInfo struct {
	UserAgent string
	IP        string
}

func (c clientInfo) userAgent() *string {
	ua := c.UserAgent
	if ua == "" {
		return nil
	}
	if len(ua) > maxUserAgentLen {
		ua = ua[:maxUserAgentLen]
		for !utf8.ValidString(ua) {
			ua = ua[:len(ua)-1]
		}
	}
	return &ua
}

func (c clientInfo) ipAddress() *string {
	if c.IP == "" {
		return nil
	}
	return &c.IP
}

type contextKey struct{}

func requestFromContext(ctx context.Context) *request {
	r, _ := ctx.Value(contextKey{}).(*request)
	return r
}

func clientFromContext(ctx context.Context) clientInfo {
	if r := requestFromContext(ctx); r != nil {
		return r.client
	}
	return clientInfo{}
}

// Middleware records the request's bearer token and client in its context
// for CurrentIdentity and the operations of s. It never answers by itself:
// login and refresh must work even when a client sends a stale header; the
// schema decides who may pass.
func (s *Service) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header, has := r.Header["Authorization"]
		req := &request{svc: s, hasBearer: has, client: clientInfo{UserAgent: r.UserAgent(), IP: remoteIP(r)}}
		if has && len(header) == 1 {
			req.bearer = ParseBearer(header[0])
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), contextKey{}, req)))
	})
}

// ParseBearer returns the token of an `Authorization: Bearer <token>` header
// value, or "" when the value is not of that form or the token could not be
// one of ours. It never touches the database.
func ParseBearer(header string) string {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	token = strings.TrimSpace(token)
	if !wellFormed(token) {
		return ""
	}
	return token
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// CurrentIdentity returns who is calling: the session and user of the request's
// access token. The token is looked up once per request.
// Errors: UNAUTHENTICATED (no token, unknown, revoked, not an access token),
// TOKEN_EXPIRED, SERVICE_UNAVAILABLE.
func CurrentIdentity(ctx context.Context) (*Identity, error) {
	r := requestFromContext(ctx)
	if r == nil || r.bearer == "" {
		return nil, errUnauthenticated
	}
	r.once.Do(func() {
		r.identity, r.err = r.svc.authenticateAccess(ctx, r.bearer)
	})
	return r.identity, r.err
}

// IdentityFromContext returns who is calling, or nil when the request is
// anonymous or its token does not authenticate. Behind the @authenticated
// directive it is never nil.
func IdentityFromContext(ctx context.Context) *Identity {
	id, _ := CurrentIdentity(ctx)
	return id
}

// BearerToken returns the request's bearer token, whichever kind it is, or
// UNAUTHENTICATED when there is none.
func BearerToken(ctx context.Context) (string, error) {
	r := requestFromContext(ctx)
	if r == nil || r.bearer == "" {
		return "", errUnauthenticated
	}
	return r.bearer, nil
}
