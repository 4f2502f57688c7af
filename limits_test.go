package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestInputLimits(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.signUp(t, "limits@example.com")

	t.Run("BodyOver1MiB", func(t *testing.T) {
		r := s.post(t, "", `{ __typename }`, map[string]any{"pad": strings.Repeat("x", 1<<20)})
		wantCode(t, r, "BAD_USER_INPUT")
		if r.Status != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", r.Status)
		}
	})
	t.Run("HugeAuthorizationHeader", func(t *testing.T) {
		h := http.Header{"Authorization": {"Bearer " + strings.Repeat("A", 8000)}}
		wantCode(t, s.postHeader(t, h, meQuery, nil), "UNAUTHENTICATED")
	})
	t.Run("ThousandLoginsInOneRequest", func(t *testing.T) {
		var q strings.Builder
		q.WriteString("mutation {")
		for i := range 1000 {
			fmt.Fprintf(&q, ` l%d: login(input: {email: "limits@example.com", password: "guess%d"}) { accessToken }`, i, i)
		}
		q.WriteString("}")
		wantCode(t, s.post(t, "", q.String(), nil), "COMPLEXITY_LIMIT_EXCEEDED")
	})
	t.Run("TwoLoginsInOneRequest", func(t *testing.T) {
		q := `mutation { a: login(input: {email: "x@example.com", password: "12345678"}) { accessToken }
			b: login(input: {email: "y@example.com", password: "12345678"}) { accessToken } }`
		wantCode(t, s.post(t, "", q, nil), "COMPLEXITY_LIMIT_EXCEEDED")
	})
	t.Run("ThousandMeAliases", func(t *testing.T) {
		var q strings.Builder
		q.WriteString("{")
		for i := range 1000 {
			fmt.Fprintf(&q, " m%d: me { id }", i)
		}
		q.WriteString("}")
		wantCode(t, s.post(t, p.AccessToken, q.String(), nil), "COMPLEXITY_LIMIT_EXCEEDED")
	})
	t.Run("DeepQuery", func(t *testing.T) {
		// Only introspection nests this deep in our schema; gqlparser's own
		// introspection-depth rule or ours must refuse it.
		q := "{ __schema { types { " + strings.Repeat("fields { type { ", 8) + "name" + strings.Repeat(" } }", 8) + " } } }"
		if c := s.post(t, "", q, nil).code(); c != "COMPLEXITY_LIMIT_EXCEEDED" && c != "GRAPHQL_VALIDATION_FAILED" {
			t.Fatalf("deep query answered %q", c)
		}
	})
	t.Run("IntrospectionStillWorks", func(t *testing.T) {
		wantOK(t, s.post(t, "", introspectionQuery, nil))
	})
	t.Run("LongPasswordRefusedBeforeHashing", func(t *testing.T) {
		wantCode(t, s.post(t, "", loginMutation, loginVars("limits@example.com", strings.Repeat("p", 100000))), "BAD_USER_INPUT")
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
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?query="+url.QueryEscape(meQuery), nil)
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
	s := newTestServer(t, func(c *config) { c.Playground = false })
	resp, err := http.Get(s.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET / = %d with PLAYGROUND=false", resp.StatusCode)
	}
	r := s.post(t, "", `{ __schema { types { name } } }`, nil)
	if r.code() == "" {
		t.Fatal("introspection answered with PLAYGROUND=false")
	}
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
