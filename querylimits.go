package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
)

// queryLimits refuses operations whose shape alone makes them expensive,
// before any resolver runs: deep nesting, many aliases (one request must not
// run a thousand logins or lookups), too many fields once fragments are
// expanded, and more than one password-hashing or token-rotating mutation.
type queryLimits struct {
	maxDepth   int
	maxAliases int
	maxFields  int
	// costly names root mutation fields allowed once per request.
	costly map[string]bool
}

func defaultQueryLimits() queryLimits {
	return queryLimits{
		maxDepth:   15, // GraphiQL's introspection query needs about 13
		maxAliases: 20,
		maxFields:  1000,
		costly:     map[string]bool{"signUp": true, "login": true, "changePassword": true, "refresh": true},
	}
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = queryLimits{}

func (queryLimits) ExtensionName() string                   { return "QueryLimits" }
func (queryLimits) Validate(graphql.ExecutableSchema) error { return nil }
func limitError(format string, args ...any) *gqlerror.Error {
	return &gqlerror.Error{Message: fmt.Sprintf(format, args...),
		Extensions: map[string]any{"code": "COMPLEXITY_LIMIT_EXCEEDED"}}
}

func (q queryLimits) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	w := walker{limits: q}
	if err := w.walk(oc.Operation.SelectionSet, 1); err != nil {
		return err
	}
	if oc.Operation.Operation == ast.Mutation {
		costly := 0
		for _, f := range graphql.CollectFields(oc, oc.Operation.SelectionSet, []string{"Mutation"}) {
			if q.costly[f.Name] {
				costly++
			}
		}
		if costly > 1 {
			return limitError("at most one signUp, login, changePassword or refresh per request")
		}
	}
	return nil
}

type walker struct {
	limits          queryLimits
	fields, aliases int
}

func (w *walker) walk(set ast.SelectionSet, depth int) *gqlerror.Error {
	if len(set) > 0 && depth > w.limits.maxDepth {
		return limitError("the query is nested deeper than %d levels", w.limits.maxDepth)
	}
	for _, sel := range set {
		switch sel := sel.(type) {
		case *ast.Field:
			w.fields++
			if sel.Alias != "" && sel.Alias != sel.Name {
				w.aliases++
			}
			if w.fields > w.limits.maxFields {
				return limitError("the query selects more than %d fields", w.limits.maxFields)
			}
			if w.aliases > w.limits.maxAliases {
				return limitError("the query uses more than %d aliases", w.limits.maxAliases)
			}
			if err := w.walk(sel.SelectionSet, depth+1); err != nil {
				return err
			}
		case *ast.InlineFragment:
			if err := w.walk(sel.SelectionSet, depth); err != nil {
				return err
			}
		case *ast.FragmentSpread:
			if sel.Definition != nil {
				if err := w.walk(sel.Definition.SelectionSet, depth); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// getQueriesOnly is gqlgen's GET transport, refusing mutations with a coded
// GraphQL error (gqlgen's own refusal carries no extensions.code): a link or
// an <img> must never change state.
type getQueriesOnly struct{ transport.GET }

func (g getQueriesOnly) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	query := r.URL.Query()
	if doc, err := parser.ParseQuery(&ast.Source{Input: query.Get("query")}); err == nil {
		if op := doc.Operations.ForName(query.Get("operationName")); op != nil && op.Operation != ast.Query {
			w.Header().Set("Allow", "POST")
			writeError(w, http.StatusMethodNotAllowed, "BAD_USER_INPUT", "mutations are accepted only in a POST request")
			return
		}
	}
	g.GET.Do(w, r, exec)
}
