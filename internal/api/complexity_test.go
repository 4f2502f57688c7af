package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/example/sessionauth/graph"
	"github.com/example/sessionauth/resolvers"
)

// complexityHandler serves the schema with only the query cache and a
// complexityLimit of max, and reports the complexity gqlgen's statistics
// held for each operation that ran.
func complexityHandler(max int, seen *[]int) http.Handler {
	cfg := (&resolvers.Resolver{}).Config()
	// A product team's measure, by the page size asked for.
	cfg.Complexity.Query.MySecurityEvents = func(child int, first *int, _ *string) int {
		if first == nil {
			return child
		}
		return child * *first
	}
	h := handler.New(graph.NewExecutableSchema(cfg))
	h.AddTransport(transport.POST{})
	cache := newQueryCache(queryCacheBytes, 1000)
	h.SetQueryCache(cache)
	h.Use(&complexityLimit{max: max, cache: cache})
	h.AroundOperations(func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		if s := extension.GetComplexityStats(ctx); s != nil {
			*seen = append(*seen, s.Complexity)
		}
		return next(ctx)
	})
	return h
}

func postTo(t *testing.T, h http.Handler, query string, vars map[string]any) (code string) {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var resp struct {
		Errors []struct {
			Message    string
			Extensions map[string]any
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("%s: %v", rec.Body, err)
	}
	if len(resp.Errors) == 0 {
		return ""
	}
	code, _ = resp.Errors[0].Extensions["code"].(string)
	if m := resp.Errors[0].Message; code == "COMPLEXITY_LIMIT_EXCEEDED" &&
		(!strings.HasPrefix(m, "operation has complexity ") || !strings.HasSuffix(m, ", which exceeds the limit of 4")) {
		t.Errorf("message %q, not gqlgen's", m) // as extension.FixedComplexityLimit words it
	}
	return code
}

// TestComplexityKeptOnlyWhereItCannotChange: complexityLimit answers as
// gqlgen's FixedComplexityLimit did, from the first request of a document
// and from the complexity it kept for the next ones, and never keeps it for
// an operation whose variables can change it.
func TestComplexityKeptOnlyWhereItCannotChange(t *testing.T) {
	var seen []int
	h := complexityHandler(4, &seen)

	// This is 5: refused the first time and every time after.
	const over = "{ me { id email } other: me { id } }"
	for range 3 {
		if code := postTo(t, h, over, nil); code != "COMPLEXITY_LIMIT_EXCEEDED" {
			t.Fatalf("%s answered %q, want COMPLEXITY_LIMIT_EXCEEDED", over, code)
		}
	}
	// Within the limit it runs, with the statistics gqlgen keeps.
	for range 2 {
		if code := postTo(t, h, "{ __typename }", nil); code != "" {
			t.Fatalf("{ __typename } answered %q", code)
		}
	}
	// With a variable, each request counts what it asks for: the page
	// size times what each page entry selects (3).
	q := "query Q($n: Int) { mySecurityEvents(first: $n) { edges { node { kind } } } }"
	for _, n := range []int{1, 5, 1, 5} {
		code := postTo(t, h, q, map[string]any{"n": n})
		if want := map[int]string{1: "", 5: "COMPLEXITY_LIMIT_EXCEEDED"}[n]; code != want {
			t.Fatalf("first: %d answered %q, want %q", n, code, want)
		}
	}
	if want := []int{1, 1, 3, 3}; !slices.Equal(seen, want) {
		t.Fatalf("complexities %v, want %v", seen, want)
	}
}

// TestComplexityGoesWithItsDocument: the cache keeps a complexity only with
// the cached document its operation belongs to, and forgets it with it.
func TestComplexityGoesWithItsDocument(t *testing.T) {
	c := newQueryCache(queryCacheBytes, 1)
	parse := func(q string) *ast.QueryDocument {
		doc, err := parser.ParseQuery(&ast.Source{Input: q})
		if err != nil {
			t.Fatal(err)
		}
		return doc
	}
	const q = "{ __typename }"
	c.keepComplexity(q, nil, 1) // not cached: nothing kept
	if _, ok := c.complexity(q, nil); ok {
		t.Fatal("a complexity kept for a document not cached")
	}
	doc := parse(q)
	c.Add(context.Background(), q, doc)
	stale := parse(q).Operations[0] // another parse of the same text
	c.keepComplexity(q, stale, 7)
	if _, ok := c.complexity(q, stale); ok {
		t.Fatal("a complexity kept for an operation of another parse")
	}
	op := doc.Operations[0]
	c.keepComplexity(q, op, 1)
	if n, ok := c.complexity(q, op); !ok || n != 1 {
		t.Fatalf("complexity %d, %v; want 1, true", n, ok)
	}
	c.Add(context.Background(), "{ me { id } }", parse("{ me { id } }")) // evicts q's (maxCount 1)
	if _, ok := c.complexity(q, op); ok {
		t.Fatal("a complexity outlived its document")
	}
}
