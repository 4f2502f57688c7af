package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/uptrace/bun"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/validator/core"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/graph"
	"github.com/example/sessionauth/internal/api/cookies"
	"github.com/example/sessionauth/resolvers"
)

// Server is the API's handler (what ADDR serves) with the metrics its
// requests feed (what METRICS_ADDR serves).
type Server struct {
	http.Handler
	metrics *metrics
	ws      *wsHub // its WebSocket connections, closed apart at shutdown
}

// Metrics serves GET /metrics, in the Prometheus text format, and nothing
// else: for a listener of its own, never the API's.
func (s *Server) Metrics() http.Handler { return s.metrics.handler() }

// CloseWebSockets closes every WebSocket connection with 1001 (going away)
// and returns when they are closed or ctx ends. A graceful stop calls it
// beside http.Server.Shutdown, which does not see hijacked connections.
func (s *Server) CloseWebSockets(ctx context.Context) { s.ws.closeAll(ctx) }

// New assembles the whole HTTP handler over the domain service svc (and
// db, which /readyz pings): the one the program serves and tests drive. Its
// metrics are served apart (Server.Metrics), on a listener of their own.
func New(cfg Config, db *bun.DB, svc *auth.Service, logger *slog.Logger) *Server {
	resolver := &resolvers.Resolver{Auth: svc}
	gql := handler.New(graph.NewExecutableSchema(resolver.Config()))
	m := newMetrics()
	ws := newWSHub(svc, cfg.WebSocket, logger, m)
	// First: a GET that upgrades is a subscription connection, not a query.
	gql.AddTransport(wsTransport{transport.Websocket{
		Implementation: wsImplementation{ws},
		InitFunc:       ws.initFunc,
		InitTimeout:    cfg.WebSocket.InitTimeout,
		// Pings: one ticker for the whole hub (wsHub.pinger), not a
		// goroutine per connection as gqlgen's PingPongInterval has.
	}})
	gql.AddTransport(transport.Options{})
	gql.AddTransport(getQueriesOnly{})
	gql.AddTransport(postJSON{})
	// Parsing and validation run before any extension that sees the parsed
	// document: bound their work first (see querylimits.go).
	cache := newQueryCache(queryCacheBytes, 1000)
	gql.SetQueryCache(cache)
	gql.SetParserTokenLimit(maxQueryTokens)
	if cfg.Playground {
		gql.Use(extension.Introspection{})
	} else {
		// Without the playground the schema is not public: refuse
		// introspection as a validation error (the client's, not ours),
		// and name no fields in "Did you mean" suggestions.
		gql.SetValidationRulesFn(rulesWithoutIntrospection)
		gql.SetDisableSuggestion(true)
	}
	gql.Use(queryTextLimit{max: maxQueryBytes})
	gql.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](persistedQueries)})
	limits := defaultQueryLimits()
	limits.validated = cache
	gql.Use(limits)
	gql.Use(&complexityLimit{max: maxComplexity, cache: cache})
	gql.AroundOperations(ws.limitSubscriptions)
	gql.Use(mutationFieldHooks{m})
	gql.AroundResponses(recordOperation)
	gql.AroundResponses(limitErrors)
	gql.SetErrorPresenter(presentError(logger, !cfg.Playground))
	gql.SetRecoverFunc(func(ctx context.Context, v any) error {
		logger.ErrorContext(ctx, "panic in resolver", "panic", v, "request_id", requestID(ctx))
		return errors.New("panic in resolver")
	})

	mux := http.NewServeMux()
	overHTTP := noStore(m.instrument("graphql", withCORS(cfg.Auth.AllowedOrigins, limitBody(maxBodyBytes, cookies.Middleware(cfg.Auth.AllowedOrigins, svc.Middleware(gql))))))
	// A WebSocket is long-lived: no body limit, no latency histogram (it
	// has its own gauge and closes counter), no deadline (withDeadline).
	// No cookies either: Set-Cookie cannot reach a client over an upgraded
	// connection, so its tokens travel in the messages.
	overWS := noStore(ws.handler(cfg.Auth.AllowedOrigins, svc.Middleware(gql)))
	mux.HandleFunc("/graphql", func(w http.ResponseWriter, r *http.Request) {
		if isWebSocketUpgrade(r) {
			overWS.ServeHTTP(w, r)
			return
		}
		overHTTP.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := db.PingContext(ctx); err != nil {
			http.Error(w, "database unreachable", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	if cfg.Playground {
		mountPlayground(mux)
	}
	return &Server{Handler: withRequestLog(logger, cfg.Auth.TrustedProxies, withDeadline(RequestTimeout, mux)), metrics: m, ws: ws}
}

// RequestTimeout bounds each request's work: when the database stops
// answering, its queries end with SERVICE_UNAVAILABLE instead of holding the
// request, its goroutine and a pool connection. The program's shutdown
// timeout is longer, so a graceful stop always lets in-flight requests end.
const RequestTimeout = 10 * time.Second

func withDeadline(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isWebSocketUpgrade(r) {
			next.ServeHTTP(w, r) // a connection, bounded by its token (websocket.go)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// noStore marks every answer as not to be stored by any cache: most carry
// tokens or say something about a session (RFC 6749 section 5.1; Pragma for
// HTTP/1.0 caches). Errors too: they are set before anything is written.
func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// rulesWithoutIntrospection is gqlparser's validation plus a rule that
// refuses __schema and __type: a refusal at validation answers
// GRAPHQL_VALIDATION_FAILED, where gqlgen's own (a resolver error) would be
// presented as INTERNAL and logged as ours.
func rulesWithoutIntrospection() *rules.Rules {
	r := rules.NewDefaultRules()
	r.AddRule("NoIntrospection", func(observers *core.Events, addError core.AddErrFunc) {
		observers.OnField(func(_ *core.Walker, f *ast.Field) {
			if f.Name == "__schema" || f.Name == "__type" {
				addError(core.Message("introspection is disabled on this server"), core.At(f.Position))
			}
		})
	})
	return r
}

// presentError gives every error an extensions.code: domain errors keep
// theirs, gqlgen's own (parse, validation) keep theirs, and anything else is
// logged with the request id and shown only as INTERNAL. With
// hideSuggestions, validation messages lose their "Did you mean …?" (field,
// argument, type and enum names the schema would otherwise reveal; gqlgen's
// SetDisableSuggestion covers only fields).
func presentError(logger *slog.Logger, hideSuggestions bool) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gqlErr := graphql.DefaultErrorPresenter(ctx, err)
		var domain *auth.Error
		switch {
		case errors.As(err, &domain):
			if domain.Code == auth.CodeServiceUnavailable || domain.Code == auth.CodeInternal {
				logger.ErrorContext(ctx, "request failed", "code", domain.Code, "err", err, "request_id", requestID(ctx))
			}
			gqlErr.Message = domain.Message
			setCode(gqlErr, domain.Code)
			if domain.RetryAfter > 0 {
				gqlErr.Extensions["retryAfterSeconds"] = domain.RetryAfter
			}
		case gqlErr.Unwrap() == nil:
			// gqlgen's and gqlparser's own errors describe the request,
			// never our internals; keep their message and code, but not
			// the echo of the request body (it may hold a password).
			if msg, _, cut := strings.Cut(gqlErr.Message, " body:"); cut {
				gqlErr.Message = msg
			}
			if msg, _, cut := strings.Cut(gqlErr.Message, " Did you mean "); cut && hideSuggestions {
				gqlErr.Message = msg
			}
			if _, ok := gqlErr.Extensions["code"]; !ok {
				setCode(gqlErr, auth.CodeBadUserInput)
			}
		default:
			logger.ErrorContext(ctx, "internal error", "err", err, "request_id", requestID(ctx))
			gqlErr.Message = "internal error"
			setCode(gqlErr, auth.CodeInternal)
		}
		return gqlErr
	}
}

func setCode(e *gqlerror.Error, code string) {
	if e.Extensions == nil {
		e.Extensions = map[string]any{}
	}
	e.Extensions["code"] = code
}

// maxBodyBytes bounds a GraphQL request body, and the query string of a GET:
// room for a query of maxQueryBytes and its variables. Decoding JSON costs
// about 80 ms of CPU per MiB of variables (BENCHMARKS.md), before any other
// limit can look at it.
const maxBodyBytes = 32 << 10

// limitBody refuses bodies over n bytes (at once when Content-Length says so,
// while reading otherwise) and POST bodies that are not JSON.
func limitBody(n int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			writeError(w, http.StatusRequestEntityTooLarge, auth.CodeBadUserInput, fmt.Sprintf("the request body is larger than %d bytes", n))
			return
		}
		if r.Method == http.MethodPost {
			if mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mediaType != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, auth.CodeBadUserInput, "POST a JSON body with Content-Type: application/json")
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, n)
		next.ServeHTTP(w, r)
	})
}

// withCORS lets the allowed origins call the API from a browser, with
// credentials (the refresh-token cookie); other origins get no CORS headers,
// so browsers keep their pages from reading any answer.
func withCORS(allowed []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		if len(allowed) > 0 {
			h.Add("Vary", "Origin")
		}
		if origin == "" || !slices.Contains(allowed, origin) {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, "+cookies.TransportHeader+", "+cookies.DeviceHeader)
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", "X-Request-Id")
		next.ServeHTTP(w, r)
	})
}

// writeError answers with a GraphQL error document outside gqlgen.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{
		{"message": message, "extensions": map[string]any{"code": code}},
	}})
}
