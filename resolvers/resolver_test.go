package resolvers

import (
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/example/sessionauth/graph"
)

func TestCheckSchema(t *testing.T) {
	t.Run("TheServedSchemaPasses", func(t *testing.T) {
		if err := CheckSchema(graph.NewExecutableSchema(graph.Config{}).Schema()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("BadDurationsAreNamed", func(t *testing.T) {
		schema := gqlparser.MustLoadSchema(&ast.Source{Name: "test.graphqls", Input: `
directive @authenticated(maxAge: String) on FIELD_DEFINITION
type Query {
  words: Int @authenticated(maxAge: "5 minutes")
  negative: Int @authenticated(maxAge: "-1m")
  zero: Int @authenticated(maxAge: "0s")
  fine: Int @authenticated(maxAge: "5m")
  plain: Int @authenticated
  none: Int @authenticated(maxAge: null)
}
type Mutation { delete: Int @authenticated(maxAge: "") }`})
		err := CheckSchema(schema)
		if err == nil {
			t.Fatal("no error")
		}
		for _, field := range []string{"Query.words", "Query.negative", "Query.zero", "Mutation.delete"} {
			if !strings.Contains(err.Error(), field) {
				t.Errorf("the error does not name %s: %v", field, err)
			}
		}
		for _, field := range []string{"Query.fine", "Query.plain", "Query.none"} {
			if strings.Contains(err.Error(), field+":") {
				t.Errorf("the error names %s: %v", field, err)
			}
		}
	})
}
