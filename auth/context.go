package auth

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/example/sessionauth/models"
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

	subjectMu sync.Mutex
	subject   [2]string      // user and session id, for Subject
	streams   []*eventStream // a connection's securityEvents streams (eventstream.go)
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
		req := &request{
			svc:       s,
			hasBearer: has,
			client:    clientInfo{UserAgent: r.UserAgent(), IP: clientIP(r, s.cfg.TrustedProxies)},
		}
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

// WellFormed reports whether token could be one of ours (TokenLength
// characters of the URL-safe base64 alphabet), so that a transport can
// ignore garbage it carries. It never touches the database.
func WellFormed(token string) bool { return wellFormed(token) }

// clientIP returns the client's address: the peer's, unless the peer is a
// trusted proxy, in which case the nearest X-Forwarded-For entry that is not
// itself a trusted proxy. A header from anyone else is ignored, so it cannot
// be spoofed to dodge the per-address login limit.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	addr := peer.Addr().Unmap()
	if !isTrusted(addr, trusted) {
		return addr.String()
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // garbage from here leftwards is not to be believed
		}
		addr = hop.Unmap()
		if !isTrusted(addr, trusted) {
			break
		}
	}
	return addr.String()
}

func isTrusted(addr netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
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
		r.identity, r.err = r.svc.authenticateWellFormed(ctx, r.bearer) // from ParseBearer
		if r.identity != nil {
			noteSubject(ctx, r.identity.Session)
		}
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

// BearerToken returns the token of the request's Authorization header, ""
// when the header is not a bearer token that could be one of ours, and
// whether the header was sent at all: refresh and logout act on it when it
// was, and a transport may offer another token (a cookie) when it was not.
// Refresh and Logout refuse "" as UNAUTHENTICATED.
func BearerToken(ctx context.Context) (token string, sent bool) {
	if r := requestFromContext(ctx); r != nil {
		return r.bearer, r.hasBearer
	}
	return "", false
}

// ClientAddress returns the client's address as the per-address login limit
// and Session.ipAddress see it: the peer's, or with TRUSTED_PROXIES the
// nearest X-Forwarded-For entry that is not a trusted proxy. For logs.
func ClientAddress(r *http.Request, trusted []netip.Prefix) string {
	return clientIP(r, trusted)
}

// Subject returns the ids of the user and session the request authenticated
// as (its access token, once something looked it up), or whose session it
// ended (logout); "" when none. For logs: it never looks a token up itself.
func Subject(ctx context.Context) (userID, sessionID string) {
	r := requestFromContext(ctx)
	if r == nil {
		return "", ""
	}
	r.subjectMu.Lock()
	defer r.subjectMu.Unlock()
	return r.subject[0], r.subject[1]
}

func noteSubject(ctx context.Context, sess *models.Session) {
	if r := requestFromContext(ctx); r != nil {
		r.subjectMu.Lock()
		r.subject = [2]string{sess.UserID, sess.ID}
		r.subjectMu.Unlock()
	}
}
