package auth

import (
	"context"
	"strings"
)

// Long-lived connections (GraphQL subscriptions over a WebSocket) are
// authenticated once, when they open, with the access token of their
// connection_init message or of the upgrade request; everything that runs on
// the connection afterwards (each subscription's resolvers, the
// @authenticated directive) sees that identity through CurrentIdentity and
// IdentityFromContext, as a request's code does. The connection must not
// outlive what the token would authenticate: see WatchSession.

// AuthenticateConnection authenticates a long-lived connection opened by the
// request whose context is ctx (it must have passed through Middleware).
// authorization is the "Bearer <token>" the client sent when opening the
// connection (connection_init's Authorization), or "" to use the upgrade
// request's Authorization header. It returns the context for everything the
// connection runs, and its identity, nil for an anonymous connection (no
// token at all: the schema's @authenticated refuses it field by field).
// Errors: UNAUTHENTICATED (malformed, unknown or revoked token, wrong kind),
// TOKEN_EXPIRED, SERVICE_UNAVAILABLE.
func (s *Service) AuthenticateConnection(ctx context.Context, authorization string) (context.Context, *Identity, error) {
	parent := requestFromContext(ctx)
	conn := &request{svc: s}
	if parent != nil {
		conn.client = parent.client
		conn.bearer, conn.hasBearer = parent.bearer, parent.hasBearer
	}
	if authorization != "" {
		conn.bearer, conn.hasBearer = ParseBearer(authorization), true
	}
	var id *Identity
	var err error
	switch {
	case !conn.hasBearer:
		err = errUnauthenticated // anonymous: answered field by field
	case conn.bearer == "":
		return ctx, nil, errUnauthenticated
	default:
		id, err = s.authenticateAccess(ctx, conn.bearer)
		if err != nil {
			return ctx, nil, err
		}
	}
	// The identity is fixed for the connection's life: the watch closes
	// the connection when it would no longer authenticate.
	conn.once.Do(func() { conn.identity, conn.err = id, err })
	if id != nil {
		conn.subject = [2]string{id.Session.UserID, id.Session.ID}
	}
	return context.WithValue(ctx, contextKey{}, conn), id, nil
}

// InitAuthorization returns the Authorization value of a connection_init
// payload, its key compared case-insensitively (API.md, "Subscriptions"), and
// whether one was there. An empty string is no token (anonymous); a value
// that is not a string is a malformed one (UNAUTHENTICATED).
func InitAuthorization(payload map[string]any) (value string, ok bool) {
	for k, v := range payload {
		if strings.EqualFold(k, "Authorization") {
			s, isString := v.(string)
			if !isString {
				return "malformed", true
			}
			return s, s != ""
		}
	}
	return "", false
}
