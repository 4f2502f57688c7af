// Package resolvers holds the GraphQL resolvers: they read arguments, call the
// auth domain package and convert its results into graph types.
package resolvers

import (
	"context"

	"github.com/99designs/gqlgen/graphql"

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
// or TOKEN_EXPIRED otherwise. Resolvers behind it may call
// auth.IdentityFromContext and get a non-nil identity.
func Authenticated(ctx context.Context, _ any, next graphql.Resolver) (any, error) {
	if _, err := auth.CurrentIdentity(ctx); err != nil {
		return nil, err
	}
	return next(ctx)
}
