// Package resolvers holds the GraphQL resolvers: they read arguments, call the
// auth domain package and convert its results into graph types.
package resolvers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/graph"
)

// Resolver is the root resolver and the point where dependencies come in.
type Resolver struct {
	Auth *auth.Service
}

// Config returns the executable-schema configuration: the resolvers and the
// implementation of the schema's directives.
func (r *Resolver) Config() graph.Config {
	return graph.Config{
		Resolvers:  r,
		Directives: graph.DirectiveRoot{Authenticated: Authenticated},
	}
}

// Authenticated implements the @authenticated directive: the field resolves
// only for a request with a valid access token, and answers UNAUTHENTICATED
// or TOKEN_EXPIRED otherwise; with maxAge, also REAUTHENTICATION_REQUIRED
// when the session's password proof is older than maxAge. Resolvers behind
// it may call auth.IdentityFromContext and get a non-nil identity.
func Authenticated(ctx context.Context, _ any, next graphql.Resolver, maxAge *string) (any, error) {
	if maxAge == nil {
		if _, err := auth.CurrentIdentity(ctx); err != nil {
			return nil, err
		}
		return next(ctx)
	}
	d, err := parseMaxAge(*maxAge)
	if err != nil {
		return nil, err // CheckSchema refused it at start-up: unreachable
	}
	if _, err := auth.RequireRecentPassword(ctx, d); err != nil {
		return nil, err
	}
	return next(ctx)
}

func parseMaxAge(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("maxAge %q is not a positive Go duration such as \"5m\"", v)
	}
	return d, nil
}

// CheckSchema checks what the GraphQL validation of the schema cannot: that
// every @authenticated(maxAge: …) is a positive Go duration. The server
// calls it at start-up with graph's parsed schema and refuses to start on
// an error, which names each offending field.
func CheckSchema(schema *ast.Schema) error {
	var errs []error
	for _, typ := range schema.Types {
		for _, field := range typ.Fields {
			for _, dir := range field.Directives.ForNames("authenticated") {
				arg := dir.Arguments.ForName("maxAge")
				if arg == nil || arg.Value == nil || arg.Value.Kind == ast.NullValue {
					continue
				}
				if arg.Value.Kind != ast.StringValue {
					errs = append(errs, fmt.Errorf("%s.%s: @authenticated maxAge must be a string such as \"5m\"", typ.Name, field.Name))
					continue
				}
				if _, err := parseMaxAge(arg.Value.Raw); err != nil {
					errs = append(errs, fmt.Errorf("%s.%s: @authenticated %w", typ.Name, field.Name, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}
