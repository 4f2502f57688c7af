package api

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/example/sessionauth/auth"
)

// TestCostlyIsDeclaredInTheSchema: the mutations limited to one per request
// and counted by result are those marked @costly in schema.graphqls, each
// with its counter (the three of main's metrics keep their names).
func TestCostlyIsDeclaredInTheSchema(t *testing.T) {
	want := []costlyMutation{
		{"signUp", "sessionauth_signups_total"},
		{"login", "sessionauth_logins_total"},
		{"refresh", "sessionauth_refreshes_total"},
		{"changePassword", "sessionauth_password_changes_total"},
		{"reauthenticate", "sessionauth_reauthentications_total"},
		{"deleteMyAccount", "sessionauth_account_deletions_total"},
	}
	if got := schemaCostly(); !slices.Equal(got, want) {
		t.Fatalf("@costly mutations %v, want %v", got, want)
	}
	if got := defaultQueryLimits().costly; !slices.Equal(got, costlyNames(want)) {
		t.Fatalf("queryLimits.costly = %v", got)
	}
}

// TestNewCostlyMutationNeedsOnlyTheMark: a mutation marked @costly in a
// schema is limited, named in the refusal and counted in its own metric with
// nothing else written (on main each took an edit of querylimits.go and
// metrics.go, and forgetting one failed silently).
func TestNewCostlyMutationNeedsOnlyTheMark(t *testing.T) {
	schema := gqlparser.MustLoadSchema(&ast.Source{Name: "test.graphqls", Input: `
		directive @costly(metric: String!) on FIELD_DEFINITION
		type Query { ok: Boolean }
		type Mutation {
			login: Boolean @costly(metric: "sessionauth_logins_total")
			sendMagicLink: Boolean @costly(metric: "sessionauth_magic_links_total")
			logout: Boolean
		}`})
	costly := costlyMutations(schema)
	limits := defaultQueryLimits()
	limits.costly = costlyNames(costly)
	refused := func(query string) string {
		doc := gqlparser.MustLoadQuery(schema, query)
		err := limits.MutateOperationContext(context.Background(), &graphql.OperationContext{Doc: doc, Operation: doc.Operations[0]})
		if err == nil {
			return ""
		}
		return err.Message
	}
	if msg := refused(`mutation { a: sendMagicLink b: sendMagicLink }`); msg != "at most one login or sendMagicLink per request" {
		t.Errorf("two sendMagicLink: %q", msg)
	}
	if msg := refused(`mutation { sendMagicLink login }`); msg == "" {
		t.Error("sendMagicLink and login together were accepted")
	}
	if msg := refused(`mutation { sendMagicLink logout }`); msg != "" {
		t.Errorf("sendMagicLink and logout: %q", msg)
	}

	m := newMetricsCounting(costly)
	call := func(field string, err error) {
		ctx := graphql.WithFieldContext(context.Background(), &graphql.FieldContext{Object: "Mutation", Field: graphql.CollectedField{Field: &ast.Field{Name: field}}})
		m.countField(ctx, func(context.Context) (any, error) { return true, err })
	}
	call("sendMagicLink", nil)
	call("sendMagicLink", auth.Errorf(auth.CodeRateLimited, "slow down"))
	call("sendMagicLink", errors.New("database down"))
	call("logout", nil)
	families, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "sessionauth_") || f.GetName() == "sessionauth_sessions_revoked_total" ||
			strings.HasPrefix(f.GetName(), "sessionauth_websocket_") { // the connections' (websocket.go)
			continue
		}
		for _, s := range f.GetMetric() {
			got[f.GetName()+"/"+s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"sessionauth_magic_links_total/ok": 1, "sessionauth_magic_links_total/limited": 1, "sessionauth_magic_links_total/error": 1}
	if !maps.Equal(got, want) {
		t.Errorf("counted %v, want %v", got, want)
	}
}

// TestResultLabels: one code, one result, whichever costly mutation answered
// it (on main, signUp's RATE_LIMITED was counted as "error" and its
// BAD_USER_INPUT as "refused" where login's was "invalid").
func TestResultLabels(t *testing.T) {
	for code, want := range map[string]string{
		"ok": "ok", auth.CodeInvalidCredentials: "failed", auth.CodeRateLimited: "limited",
		auth.CodeBadUserInput: "invalid", auth.CodeEmailTaken: "refused", auth.CodeForbidden: "refused",
		auth.CodeRefreshTokenReused: "reused", auth.CodeTokenExpired: "expired",
		auth.CodeUnauthenticated: "unauthenticated", auth.CodeInternal: "error", auth.CodeServiceUnavailable: "error",
	} {
		if got := result(code); got != want {
			t.Errorf("result(%s) = %q, want %q", code, got, want)
		}
	}
}

// TestFieldHooksOnlyInMutations: countField and noteSubject wrap the fields
// of mutations and of no other operation, inside nothing and around the
// field middlewares gqlgen was given.
func TestFieldHooksOnlyInMutations(t *testing.T) {
	m := newMetrics()
	hooks := mutationFieldHooks{m}
	logouts := func() float64 {
		t.Helper()
		families, err := m.registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "sessionauth_sessions_revoked_total" {
				for _, s := range f.GetMetric() {
					if s.GetLabel()[0].GetValue() == "logout" {
						return s.GetCounter().GetValue()
					}
				}
			}
		}
		return 0
	}
	for _, tc := range []struct {
		op   ast.Operation
		want float64 // logouts counted so far
	}{{ast.Query, 0}, {ast.Subscription, 0}, {ast.Mutation, 1}} {
		inner := 0
		oc := &graphql.OperationContext{
			Operation: &ast.OperationDefinition{Operation: tc.op},
			ResolverMiddleware: func(ctx context.Context, next graphql.Resolver) (any, error) {
				inner++
				return next(ctx)
			},
		}
		if err := hooks.MutateOperationContext(context.Background(), oc); err != nil {
			t.Fatal(err)
		}
		// A field context no query has, to see whether countField ran.
		ctx := graphql.WithFieldContext(context.Background(), &graphql.FieldContext{Object: "Mutation", Field: graphql.CollectedField{Field: &ast.Field{Name: "logout"}}})
		res, err := oc.ResolverMiddleware(ctx, func(context.Context) (any, error) { return true, nil })
		if res != true || err != nil || inner != 1 {
			t.Fatalf("%s: got %v, %v with the inner middleware run %d times", tc.op, res, err, inner)
		}
		if got := logouts(); got != tc.want {
			t.Errorf("after a %s: %v logouts counted, want %v", tc.op, got, tc.want)
		}
	}
}
