package main

import (
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"
)

func TestQueryLimitsWalker(t *testing.T) {
	limits := defaultQueryLimits()
	cases := []struct {
		name  string
		query string
		ok    bool
	}{
		{"Shallow", "{ me { id } }", true},
		{"AtDepthLimit", strings.Repeat("{ a ", 15) + strings.Repeat("}", 15), true},
		{"TooDeep", strings.Repeat("{ a ", 16) + strings.Repeat("}", 16), false},
		{"TwentyAliases", "{" + strings.Repeat(" x: me { id }", 20) + "}", true},
		{"TwentyOneAliases", "{" + strings.Repeat(" x: me { id }", 21) + "}", false},
		{"TooManyFields", "{" + strings.Repeat(" me { id }", 501) + "}", false},
		{"InlineFragmentsCount", "{ ... on Query {" + strings.Repeat(" x: me { id }", 21) + "} }", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc, err := parser.ParseQuery(&ast.Source{Input: c.query})
			if err != nil {
				t.Fatal(err)
			}
			w := walker{limits: limits}
			gotErr := w.walk(doc.Operations[0].SelectionSet, 1)
			if (gotErr == nil) != c.ok {
				t.Fatalf("walk error = %v, want ok=%v", gotErr, c.ok)
			}
			if gotErr != nil && gotErr.Extensions["code"] != "COMPLEXITY_LIMIT_EXCEEDED" {
				t.Fatalf("code %v", gotErr.Extensions["code"])
			}
		})
	}
}
