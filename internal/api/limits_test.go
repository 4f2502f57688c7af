package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/playground"
	"github.com/example/sessionauth/internal/testkit"
)

func TestInputLimits(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.SignUp(t, "limits@example.com")

	t.Run("BodyOverLimit", func(t *testing.T) {
		r := s.Post(t, "", `{ __typename }`, map[string]any{"pad": strings.Repeat("x", maxBodyBytes)})
		testkit.WantCode(t, r, "BAD_USER_INPUT")
		if r.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", r.Status)
		}
	})
	t.Run("HugeAuthorizationHeader", func(t *testing.T) {
		h := http.Header{"Authorization": {"Bearer " + strings.Repeat("A", 8000)}}
		testkit.WantCode(t, s.PostHeader(t, h, testkit.MeQuery, nil), "UNAUTHENTICATED")
	})
	t.Run("ThousandLoginsInOneRequest", func(t *testing.T) {
		var q strings.Builder
		q.WriteString("mutation {")
		for i := range 1000 {
			fmt.Fprintf(&q, ` l%d: login(input: {email: "limits@example.com", password: "guess%d"}) { accessToken }`, i, i)
		}
		q.WriteString("}")
		// Refused by the body limit now, before the query limits.
		testkit.WantCode(t, s.Post(t, "", q.String(), nil), "BAD_USER_INPUT")
	})
	t.Run("TwentyLoginsInOneRequest", func(t *testing.T) {
		var q strings.Builder
		q.WriteString("mutation {")
		for i := range 20 {
			fmt.Fprintf(&q, ` l%d: login(input: {email: "limits@example.com", password: "guess%d"}) { accessToken }`, i, i)
		}
		q.WriteString("}")
		testkit.WantCode(t, s.Post(t, "", q.String(), nil), "COMPLEXITY_LIMIT_EXCEEDED")
	})
	t.Run("TwoLoginsInOneRequest", func(t *testing.T) {
		q := `mutation { a: login(input: {email: "x@example.com", password: "12345678"}) { accessToken }
			b: login(input: {email: "y@example.com", password: "12345678"}) { accessToken } }`
		testkit.WantCode(t, s.Post(t, "", q, nil), "COMPLEXITY_LIMIT_EXCEEDED")
	})
	t.Run("ThousandMeAliases", func(t *testing.T) {
		var q strings.Builder
		q.WriteString("{")
		for i := range 1000 {
			fmt.Fprintf(&q, " m%d: me { id }", i)
		}
		q.WriteString("}")
		// Refused by the parser's token limit now, before the alias limit.
		testkit.WantCode(t, s.Post(t, p.AccessToken, q.String(), nil), "GRAPHQL_PARSE_FAILED")
	})
	t.Run("TwentyOneMeAliases", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, p.AccessToken, "{"+aliases(21)+"}", nil), "COMPLEXITY_LIMIT_EXCEEDED")
	})
	t.Run("DeepQuery", func(t *testing.T) {
		// Only introspection nests this deep in our schema; gqlparser's own
		// introspection-depth rule or ours must refuse it.
		q := "{ __schema { types { " + strings.Repeat("fields { type { ", 8) + "name" + strings.Repeat(" } }", 8) + " } } }"
		if c := s.Post(t, "", q, nil).Code(); c != "COMPLEXITY_LIMIT_EXCEEDED" && c != "GRAPHQL_VALIDATION_FAILED" {
			t.Fatalf("deep query answered %q", c)
		}
	})
	t.Run("IntrospectionStillWorks", func(t *testing.T) {
		testkit.WantOK(t, s.Post(t, "", introspectionQuery, nil))
	})
	t.Run("LongPasswordRefusedBeforeHashing", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("limits@example.com", strings.Repeat("p", 20000))), "BAD_USER_INPUT")
	})
	t.Run("MalformedJSON", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", strings.NewReader(`{"query": "{ me { id } }", "variables": {"password": "hunter22"`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 || !strings.Contains(string(body), `"code":"BAD_USER_INPUT"`) || strings.Contains(string(body), "hunter22") {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
	})
	t.Run("MutationOverGET", func(t *testing.T) {
		resp, err := http.Get(s.URL + "/graphql?query=" + url.QueryEscape(`mutation { logout }`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(body), `"code":"BAD_USER_INPUT"`) {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
	})
	t.Run("QueryOverGET", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?query="+url.QueryEscape(testkit.MeQuery), nil)
		req.Header.Set("Authorization", "Bearer "+p.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "limits@example.com") {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
	})
}

func TestPlaygroundOff(t *testing.T) {
	t.Parallel()
	var logs testkit.SyncBuffer
	s := newLoggedTestServer(t, pgtest.New(t), func(c *config) { c.Playground = false }, &logs)
	resp, err := http.Get(s.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET / = %d with PLAYGROUND=false", resp.StatusCode)
	}
	t.Run("IntrospectionIsTheClientsError", func(t *testing.T) {
		for _, q := range []string{
			`{ __schema { types { name } } }`,
			`{ __type(name: "User") { fields { name } } }`,
			`{ ...I } fragment I on Query { __schema { queryType { name } } }`,
			introspectionQuery,
		} {
			r := s.Post(t, "", q, nil)
			testkit.WantCode(t, r, "GRAPHQL_VALIDATION_FAILED")
			if r.Status != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422", r.Status)
			}
		}
		if strings.Contains(logs.String(), `"level":"ERROR"`) {
			t.Fatalf("a refused introspection was logged as our error:\n%s", logs.String())
		}
	})
	t.Run("TypenameStillAnswers", func(t *testing.T) {
		testkit.WantOK(t, s.Post(t, "", `{ __typename }`, nil))
	})
	t.Run("NoSuggestions", func(t *testing.T) {
		on := newTestServer(t, nil)
		for _, q := range typoQueries {
			r := s.Post(t, "", q, nil)
			testkit.WantCode(t, r, "GRAPHQL_VALIDATION_FAILED")
			for _, e := range r.Errors {
				if strings.Contains(e.Message, "Did you mean") {
					t.Fatalf("%s: %q", q, e.Message)
				}
			}
			// With the playground on, the same query gets a suggestion:
			// the query does test one.
			if r := on.Post(t, "", q, nil); !strings.Contains(fmt.Sprint(r.Errors), "Did you mean") {
				t.Fatalf("%s with the playground on: no suggestion in %+v", q, r.Errors)
			}
		}
	})
}

// typoQueries each get a "Did you mean" from gqlparser: a field, an
// argument and an input field.
var typoQueries = []string{
	`{ me { emial } }`,
	`mutation { login(inptu: {email: "a@example.com", password: "12345678"}) { accessToken } }`,
	`mutation { login(input: {emial: "a@example.com", password: "12345678"}) { accessToken } }`,
}

func TestQueryCostLimits(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	// Each of these is refused before validation (or by it, for the
	// cycle): on main each took parsing and validation (or execution) first.
	cases := []struct {
		name, query, code string
	}{
		{"TextOverLimit", "{ __typename } #" + strings.Repeat("x", maxQueryBytes), "BAD_USER_INPUT"},
		{"TokensOverLimit", "{" + strings.Repeat(" me { id }", maxQueryTokens/4) + "}", "GRAPHQL_PARSE_FAILED"},
		{"RepeatedField", "{" + strings.Repeat(" __typename", maxQueryRepeats+1) + "}", "COMPLEXITY_LIMIT_EXCEEDED"},
		{"RepeatedThroughFragments", "{ me { ...U ...U ...U } } fragment U on User { id id id }", "COMPLEXITY_LIMIT_EXCEEDED"},
		// 5 ofType in each set, but 10 at __type.ofType.ofType once merged.
		{"RepeatedNested", "{ __type(name: \"User\") {" + strings.Repeat(" ofType { ofType { name } ofType { name } }", 5) + " } }", "COMPLEXITY_LIMIT_EXCEEDED"},
		{"SelectionsOverLimit", "{" + aliasesOf(20, "me { ...U ...U ...U ...U ...U ...U ...U ...U }") + "} fragment U on User { id email createdAt }", "COMPLEXITY_LIMIT_EXCEEDED"},
		{"SelectionsAcrossOperations", repeatf(30, "query Q%d { ...U } ") + "fragment U on Query {" + strings.Repeat(" me { id email createdAt } mySessions { id }", 4) + " }", "COMPLEXITY_LIMIT_EXCEEDED"},
		{"OperationsOverLimit", repeatf(maxOperations+1, "query Q%d { __typename } "), "COMPLEXITY_LIMIT_EXCEEDED"},
		{"AliasesOverLimit", "{" + aliases(21) + "}", "COMPLEXITY_LIMIT_EXCEEDED"},
		{"TooDeep", "{ __type(name: \"User\") {" + strings.Repeat(" ofType {", 15) + " name" + strings.Repeat(" }", 15) + " } }", "COMPLEXITY_LIMIT_EXCEEDED"},
		{"FragmentBomb", "{ ...F20 } fragment F0 on Query { __typename } " + fragmentChain(20, "", ""), "COMPLEXITY_LIMIT_EXCEEDED"},
		{"FragmentCycle", "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }", "GRAPHQL_VALIDATION_FAILED"},
		{"SchemaTwice", "{ a: __schema { queryType { name } } b: __schema { queryType { name } } }", "COMPLEXITY_LIMIT_EXCEEDED"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if len(c.query) > maxBodyBytes-100 {
				t.Fatalf("the query does not fit in a body (%d bytes)", len(c.query))
			}
			testkit.WantCode(t, s.Post(t, "", c.query, nil), c.code)
		})
		t.Run(c.name+"OverGET", func(t *testing.T) {
			if c.name == "TextOverLimit" {
				t.Skip("over the query-string limit: see QueryStringOverLimit")
			}
			testkit.WantCode(t, s.get(t, url.Values{"query": {c.query}}), c.code)
		})
	}
	t.Run("QueryStringOverLimit", func(t *testing.T) {
		r := s.get(t, url.Values{"query": {"{ __typename } #" + strings.Repeat("x", maxBodyBytes)}})
		testkit.WantCode(t, r, "BAD_USER_INPUT")
		if r.Status != http.StatusRequestURITooLong {
			t.Fatalf("status %d, want 414", r.Status)
		}
	})
	t.Run("PersistedQuery", func(t *testing.T) {
		q := "{" + strings.Repeat(" __typename", maxQueryRepeats+1) + "}"
		sum := sha256.Sum256([]byte(q))
		ext := map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hex.EncodeToString(sum[:])}}
		testkit.WantCode(t, s.postBody(t, map[string]any{"query": q, "extensions": ext}), "COMPLEXITY_LIMIT_EXCEEDED")
		// The persisted text is checked again when only its hash comes.
		testkit.WantCode(t, s.postBody(t, map[string]any{"extensions": ext}), "COMPLEXITY_LIMIT_EXCEEDED")
	})
	t.Run("PersistedQueryOverLimitIsNotKept", func(t *testing.T) {
		q := "{ __typename } #" + strings.Repeat("x", maxQueryBytes)
		sum := sha256.Sum256([]byte(q))
		ext := map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hex.EncodeToString(sum[:])}}
		testkit.WantCode(t, s.postBody(t, map[string]any{"query": q, "extensions": ext}), "BAD_USER_INPUT")
		testkit.WantCode(t, s.postBody(t, map[string]any{"extensions": ext}), "PERSISTED_QUERY_NOT_FOUND")
	})
	t.Run("ErrorsListedUpToLimit", func(t *testing.T) {
		r := s.Post(t, "", "{ __typename"+strings.Repeat(" @d", 300)+" }", nil)
		testkit.WantCode(t, r, "GRAPHQL_VALIDATION_FAILED")
		if len(r.Errors) != maxErrors {
			t.Fatalf("%d errors, want %d", len(r.Errors), maxErrors)
		}
	})
	t.Run("WithinTheLimits", func(t *testing.T) {
		testkit.WantOK(t, s.Post(t, "", "{"+strings.Repeat(" __typename", maxQueryRepeats)+"}", nil))
		testkit.WantOK(t, s.Post(t, "", introspectionQuery, nil))
		testkit.WantCode(t, s.postBody(t, map[string]any{"query": playground.Document, "operationName": "MySessions"}), "UNAUTHENTICATED")
		// The benchmark's worst cases must be admitted, or it measures a
		// refusal.
		for name, q := range worstQueries {
			switch c := s.Post(t, "", q, nil).Code(); c {
			case "BAD_USER_INPUT", "GRAPHQL_PARSE_FAILED", "COMPLEXITY_LIMIT_EXCEEDED":
				t.Errorf("%s: refused with %s", name, c)
			}
		}
	})
}

// aliasesOf selects sel n times, each under its own alias.
func aliasesOf(n int, sel string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " a%d: %s", i, sel)
	}
	return b.String()
}

// get sends a GraphQL GET request with params.
func (s *testServer) get(t *testing.T, params url.Values) testkit.Response {
	t.Helper()
	resp, err := http.Get(s.URL + "/graphql?" + params.Encode())
	if err != nil {
		t.Fatal(err)
	}
	return decodeResponse(t, resp)
}

// postBody sends body as it is (for fields post does not set).
func (s *testServer) postBody(t *testing.T, body map[string]any) testkit.Response {
	t.Helper()
	raw, _ := json.Marshal(body)
	resp, err := http.Post(s.URL+"/graphql", "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return decodeResponse(t, resp)
}

func decodeResponse(t *testing.T, resp *http.Response) testkit.Response {
	t.Helper()
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out testkit.Response
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("status %d, body %q: %v", resp.StatusCode, raw, err)
	}
	out.Status = resp.StatusCode
	return out
}

// introspectionQuery is GraphiQL's (graphql-js getIntrospectionQuery).
const introspectionQuery = `query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}`
