package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/99designs/gqlgen/graphql/playground"
	"github.com/uptrace/bun"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/graph"
	"github.com/example/sessionauth/resolvers"
)

// newServer assembles the whole HTTP handler: the one that run serves and that
// tests drive.
func newServer(cfg config, db *bun.DB, svc *auth.Service, logger *slog.Logger) http.Handler {
	resolver := &resolvers.Resolver{Auth: svc}
	gql := handler.New(graph.NewExecutableSchema(resolver.Config()))
	gql.AddTransport(transport.Options{})
	gql.AddTransport(transport.GET{})
	gql.AddTransport(transport.POST{})
	gql.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	if cfg.Playground {
		gql.Use(extension.Introspection{})
	}
	gql.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](100)})
	gql.SetErrorPresenter(presentError(logger))
	gql.SetRecoverFunc(func(ctx context.Context, v any) error {
		logger.ErrorContext(ctx, "panic in resolver", "panic", v, "request_id", requestID(ctx))
		return errors.New("panic in resolver")
	})

	mux := http.NewServeMux()
	mux.Handle("/graphql", svc.Middleware(gql))
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
		mux.Handle("GET /{$}", playground.Handler("Session auth", "/graphql"))
	}
	return withRequestID(logger, mux)
}

// presentError gives every error an extensions.code: domain errors keep
// theirs, gqlgen's own (parse, validation) keep theirs, and anything else is
// logged with the request id and shown only as INTERNAL.
func presentError(logger *slog.Logger) graphql.ErrorPresenterFunc {
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
		case gqlErr.Unwrap() == nil:
			// gqlgen's and gqlparser's own errors describe the request,
			// never our internals; keep their message and code.
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
