package api

import (
	"strconv"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/example/sessionauth/internal/playground"
)

func TestQueryLimitsShape(t *testing.T) {
	limits := defaultQueryLimits()
	cases := []struct {
		name  string
		query string
		ok    bool
	}{
		{"Shallow", "{ me { id } }", true},
		{"Introspection", introspectionQuery, true},
		{"Playground", playground.Document, true},
		{"AtDepthLimit", strings.Repeat("{ a ", 15) + strings.Repeat("}", 15), true},
		{"TooDeep", strings.Repeat("{ a ", 16) + strings.Repeat("}", 16), false},
		{"TooDeepThroughFragments", "{ ...F8 } " + fragmentChain(8, "a { a { ", " } }"), false},
		{"TwentyAliases", "{" + aliases(20) + "}", true},
		{"TwentyOneAliases", "{" + aliases(21) + "}", false},
		{"AliasesInAnUnusedFragment", "{ me { id } } fragment F on Query {" + aliases(21) + "}", false},
		{"AliasesAcrossOperations", "query A {" + aliases(11) + "} query B {" + aliases(11) + "}", false},
		{"TooManyFields", "{" + strings.Repeat(" me { id email createdAt }", 126) + "}", false},
		{"TooManyFieldsInOperations", strings.Repeat("query { me { id email createdAt } } ", 126), false},
		{"FragmentBomb", "{ ...F30 } fragment F0 on Query { __typename } " + fragmentChain(30, "", ""), false},
		{"FieldsPerUseOfAFragment", "{ me { ...U ...U ...U ...U } } fragment U on User {" + strings.Repeat(" a: id", 1) + strings.Repeat(" email", 8) + "}", false},
		{"RepeatedAtLimit", "{" + strings.Repeat(" __typename", 8) + "}", true},
		{"RepeatedField", "{" + strings.Repeat(" __typename", 9) + "}", false},
		{"RepeatedNested", "{ me {" + strings.Repeat(" id", 9) + "} }", false},
		{"RepeatedThroughInlineFragments", "{" + strings.Repeat(" ... on Query { __typename }", 9) + "}", false},
		{"RepeatedThroughSpreads", "{ __typename ...A ...B } fragment A on Query {" + strings.Repeat(" __typename", 4) + "} fragment B on Query {" + strings.Repeat(" __typename", 4) + "}", false},
		{"RepeatedAlias", "{" + strings.Repeat(" x: me { id }", 9) + "}", false},
		{"SchemaOnce", "{ __schema { queryType { name } } }", true},
		{"SchemaTwice", "{ a: __schema { queryType { name } } b: __schema { types { name } } }", false},
		{"SchemaTwiceThroughAFragment", "{ __schema { queryType { name } } ...S } fragment S on Query { __schema { types { name } } }", false},
		{"FragmentCycle", "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc, err := parser.ParseQuery(&ast.Source{Input: c.query})
			if err != nil {
				t.Fatal(err)
			}
			gotErr := limits.checkDocument(doc)
			if (gotErr == nil) != c.ok {
				t.Fatalf("error = %v, want ok=%v", gotErr, c.ok)
			}
			want := "COMPLEXITY_LIMIT_EXCEEDED"
			if strings.HasPrefix(c.name, "FragmentCycle") {
				want = "GRAPHQL_VALIDATION_FAILED" // gqlparser's own code for it
			}
			if gotErr != nil && gotErr.Extensions["code"] != want {
				t.Fatalf("code %v", gotErr.Extensions["code"])
			}
		})
	}
}

// aliases selects me n times, each under its own alias.
func aliases(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(" m")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(": me { id }")
	}
	return b.String()
}

// fragmentChain defines F1…Fn on Query, each spreading the one before twice
// inside open … close.
func fragmentChain(n int, open, close string) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(" fragment F" + strconv.Itoa(i) + " on Query { " + open + "...F" + strconv.Itoa(i-1) + " ...F" + strconv.Itoa(i-1) + close + " }")
	}
	return b.String()
}
