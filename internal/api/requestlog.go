package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/graph"
)

// requestInfo is what one request's log line says; the GraphQL layer fills in
// the operation and its outcome.
type requestInfo struct {
	id        string
	operation string // the client's operation name, if any
	fields    string // the root fields it selected (named by our schema, so bounded)
	outcome   string // "ok" or the first error code

	// The user and session the request acted as or on, filled in by
	// noteSubject and recordOperation: ids only, never a token.
	mu        sync.Mutex
	userID    string
	sessionID string
}

func (info *requestInfo) setSubject(userID, sessionID string) {
	info.mu.Lock()
	defer info.mu.Unlock()
	info.userID, info.sessionID = userID, sessionID
}

func (info *requestInfo) getSubject() (userID, sessionID string) {
	info.mu.Lock()
	defer info.mu.Unlock()
	return info.userID, info.sessionID
}

type requestInfoKey struct{}

func requestInfoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

func requestID(ctx context.Context) string {
	if info := requestInfoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}

// withRequestLog gives each request an id (echoed in X-Request-Id, carried in
// every log line about it) and logs one line per request when it ends: the
// id, the client's address (as the login limits see it, behind trusted
// proxies), route, operation, outcome, latency, and the user and session ids
// it acted as or on (a sign-in's new session, a refresh's, a logout's, or the
// access token's). Never a header, a body or a variable: that is where tokens
// and passwords travel.
func withRequestLog(logger *slog.Logger, trusted []netip.Prefix, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 8)
		rand.Read(b)
		info := &requestInfo{id: hex.EncodeToString(b)}
		w.Header().Set("X-Request-Id", info.id)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)))
		attrs := []any{"request_id", info.id, "client_ip", auth.ClientAddress(r, trusted), "method", r.Method, "path", r.URL.Path,
			"status", rec.status, "duration_ms", float64(time.Since(start).Microseconds()) / 1000}
		if info.fields != "" {
			attrs = append(attrs, "operation", info.operation, "fields", info.fields, "outcome", info.outcome)
		}
		if userID, sessionID := info.getSubject(); sessionID != "" {
			attrs = append(attrs, "user_id", userID, "session_id", sessionID)
		}
		logger.InfoContext(r.Context(), "request", attrs...)
	})
}

// noteSubject is a field middleware (of mutations, see mutationFieldHooks)
// that notes the user and session of an AuthPayload a root field returns
// (signUp, login, refresh) for the request's log line.
func noteSubject(ctx context.Context, next graphql.Resolver) (any, error) {
	res, err := next(ctx)
	if p, ok := res.(*graph.AuthPayload); ok && p != nil && p.User != nil && p.Session != nil {
		if info := requestInfoFrom(ctx); info != nil {
			info.setSubject(p.User.ID, p.Session.ID)
		}
	}
	return res, err
}

// recordOperation is a gqlgen response middleware that notes the operation
// and its outcome for the request's log line and metrics.
func recordOperation(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	resp := next(ctx)
	info := requestInfoFrom(ctx)
	if info == nil || !graphql.HasOperationContext(ctx) || wsConnFrom(ctx) != nil {
		// A WebSocket's operations share its upgrade request: the
		// connection is logged on its own (websocket.go).
		return resp
	}
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation != nil {
		info.operation = truncate(oc.OperationName, 64)
		var names []string
		for _, sel := range oc.Operation.SelectionSet {
			if f, ok := sel.(*ast.Field); ok {
				names = append(names, f.Name)
			}
		}
		info.fields = strings.Join(names, ",")
	}
	if _, sessionID := info.getSubject(); sessionID == "" {
		// Not a sign-in: the session of the access token, if one was
		// looked up, or of the session logout ended.
		info.setSubject(auth.Subject(ctx))
	}
	info.outcome = "ok"
	if resp != nil && len(resp.Errors) > 0 {
		info.outcome, _ = resp.Errors[0].Extensions["code"].(string)
	}
	return resp
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
