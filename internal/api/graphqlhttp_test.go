package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/example/sessionauth/internal/testkit"
)

func TestNegotiate(t *testing.T) {
	parseFailed := gqlerror.List{{Message: "syntax", Extensions: map[string]any{"code": "GRAPHQL_PARSE_FAILED"}}}
	cases := []struct {
		accept string
		want   string // "default", a media type, or "406"
	}{
		{"", "default"},
		{"application/json", "application/json"},
		{"application/graphql-response+json", graphqlResponseJSON},
		{"*/*", "application/json"},
		{"application/*", "application/json"},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/json"},
		// The spec's recommended client header, and its order reversed.
		{"application/graphql-response+json, application/json;q=0.9", graphqlResponseJSON},
		{"application/json;q=0.9, application/graphql-response+json", graphqlResponseJSON},
		// Equal q: the one listed first (GraphiQL's, then Apollo Kotlin's).
		{"application/json, multipart/mixed", "application/json"},
		{"multipart/mixed, application/graphql-response+json, application/json", graphqlResponseJSON},
		// A type named outright beats a wildcard of the same q.
		{"*/*, application/graphql-response+json", graphqlResponseJSON},
		// q=0 refuses a type, even where a wildcard would admit it.
		{"application/json;q=0, */*", graphqlResponseJSON},
		{"application/graphql-response+json;q=0, application/*", "application/json"},
		{"APPLICATION/GRAPHQL-RESPONSE+JSON", graphqlResponseJSON},
		{"text/html", "406"},
		{"application/json;q=0", "406"},
		{"application/json;q=2", "406"},
		{"not a media type", "406"},
	}
	for _, c := range cases {
		f, ok := negotiate(http.Header{"Accept": {c.accept}})
		got := f.contentType
		switch {
		case !ok:
			got = "406"
		case f.requestErrorStatus(parseFailed) == http.StatusUnprocessableEntity:
			got = "default"
		}
		if got != c.want {
			t.Errorf("Accept %q: %s, want %s", c.accept, got, c.want)
		}
	}
	// Two Accept headers read as one list.
	if f, _ := negotiate(http.Header{"Accept": {"application/json;q=0.5", "application/graphql-response+json"}}); f.contentType != graphqlResponseJSON {
		t.Errorf("two Accept headers: %s", f.contentType)
	}
}

// postAccepting posts body as it is, with accept as the Accept header
// ("" for none).
func (s *testServer) postAccepting(t *testing.T, accept, body string) testkit.Response {
	t.Helper()
	h := http.Header{}
	if accept != "" {
		h.Set("Accept", accept)
	}
	return s.Send(t, h, body)
}

// TestResponseFormats: a request error (one raised before execution) is
// served as the client's Accept asks. On main, application/json answered
// 422 and application/graphql-response+json carried "data": null.
func TestResponseFormats(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	requestErrors := map[string]string{
		"Parse":      `{"query": "{"}`,
		"Validation": `{"query": "{ nope }"}`,
		"Coercion":   `{"query": "query Q($id: ID!) { __typename }", "variables": {"id": null}}`,
		"Limit":      `{"query": "{` + strings.Repeat(" __typename", maxQueryRepeats+1) + `}"}`,
	}
	cases := []struct {
		accept, contentType string
		status              map[string]int // by request error; missing: 200
		data                bool           // whether a request error carries "data": null
	}{
		// No Accept: API.md's clients, as before (limits_test's
		// TestPlaygroundOff asserts the 422).
		{"", "application/json", map[string]int{"Parse": 422, "Validation": 422, "Coercion": 422}, true},
		{"application/json", "application/json", nil, true},
		{"*/*", "application/json", nil, true},
		{graphqlResponseJSON, graphqlResponseJSON, map[string]int{"Parse": 400, "Validation": 400, "Coercion": 400, "Limit": 400}, false},
	}
	for _, c := range cases {
		for name, body := range requestErrors {
			r := s.postAccepting(t, c.accept, body)
			want := c.status[name]
			if want == 0 {
				want = http.StatusOK
			}
			_, hasData := r.Top["data"]
			if r.Status != want || r.ContentType != c.contentType || hasData != c.data || r.Top["errors"] == nil {
				t.Errorf("Accept %q, %s error: status %d, Content-Type %q, data %v, body %s; want %d, %q, data %v",
					c.accept, name, r.Status, r.ContentType, hasData, r.Top, want, c.contentType, c.data)
			}
		}
		// A request that runs answers 200 with its data in every format.
		if r := s.postAccepting(t, c.accept, `{"query": "{ __typename }"}`); r.Status != http.StatusOK || r.ContentType != c.contentType || string(r.Top["data"]) != `{"__typename":"Query"}` {
			t.Errorf("Accept %q: status %d, Content-Type %q, body %s", c.accept, r.Status, r.ContentType, r.Top)
		}
	}
}

// TestMalformedRequests: what is not a GraphQL-over-HTTP request at all
// answers 4xx in every format, with a coded error and no echo of the body.
func TestMalformedRequests(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	for _, accept := range []string{"", "application/json", graphqlResponseJSON} {
		for _, c := range []struct {
			name, body string
			status     int
		}{
			// On main: 422 without Accept, 200 with application/json.
			{"MisspeltQuery", `{"qeury": "{ __typename }"}`, http.StatusBadRequest},
			{"NotJSON", `{"query": "{ __typename }", "password": "hunter22`, http.StatusBadRequest},
			{"VariablesNotAMap", `{"query": "{ __typename }", "variables": [7]}`, http.StatusBadRequest},
		} {
			r := s.postAccepting(t, accept, c.body)
			if r.Status != c.status || !strings.Contains(string(r.Top["errors"]), `"code":"BAD_USER_INPUT"`) || strings.Contains(string(r.Top["errors"]), "hunter22") {
				t.Errorf("Accept %q, %s: status %d, body %s", accept, c.name, r.Status, r.Top)
			}
		}
	}

	t.Run("NotAcceptable", func(t *testing.T) {
		r := s.postAccepting(t, "text/html", `{"query": "{ __typename }"}`)
		if r.Status != http.StatusNotAcceptable || !strings.Contains(string(r.Top["errors"]), `"code":"BAD_USER_INPUT"`) {
			t.Fatalf("status %d, body %s", r.Status, r.Top)
		}
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?query="+url.QueryEscape("{ __typename }"), nil)
		req.Header.Set("Accept", "text/plain")
		if r := s.Fetch(t, req); r.Status != http.StatusNotAcceptable {
			t.Fatalf("GET: status %d, body %s", r.Status, r.Top)
		}
	})

	// A body over maxBodyBytes without a Content-Length is cut while it is
	// read: 413, as with one (on main: 200, "could not read request body").
	t.Run("ChunkedBodyTooLarge", func(t *testing.T) {
		body := `{"query": "{ __typename }", "variables": {"x": "` + strings.Repeat("x", maxBodyBytes) + `"}}`
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", io.MultiReader(strings.NewReader(body)))
		req.Header.Set("Content-Type", "application/json")
		if req.ContentLength != 0 {
			t.Fatalf("ContentLength %d: the body would not be chunked", req.ContentLength)
		}
		if r := s.Fetch(t, req); r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.Top["errors"]), `"code":"BAD_USER_INPUT"`) {
			t.Fatalf("status %d, body %s", r.Status, r.Top)
		}
	})
}

// TestPersistedMutationOverGET: a mutation known by its persisted-query hash
// alone is refused over GET with a coded 405, as one sent in full is (on main:
// gqlgen's 406 without extensions.code).
func TestPersistedMutationOverGET(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	// getByHash POSTs query with its persisted-query hash, then GETs it by
	// the hash alone.
	getByHash := func(query string) testkit.Response {
		sum := sha256.Sum256([]byte(query))
		ext := `{"persistedQuery": {"version": 1, "sha256Hash": "` + hex.EncodeToString(sum[:]) + `"}}`
		s.postAccepting(t, "", `{"query": "`+query+`", "extensions": `+ext+`}`)
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?extensions="+url.QueryEscape(ext), nil)
		return s.Fetch(t, req)
	}
	if r := getByHash(`mutation { logout }`); r.Status != http.StatusMethodNotAllowed || !strings.Contains(string(r.Top["errors"]), `"code":"BAD_USER_INPUT"`) {
		t.Fatalf("mutation: status %d, body %s", r.Status, r.Top)
	}
	if r := getByHash(`{ __typename }`); r.Status != http.StatusOK || string(r.Top["data"]) != `{"__typename":"Query"}` {
		t.Fatalf("query: status %d, body %s", r.Status, r.Top)
	}
}

// TestGraphQLOverHTTPAudit runs the graphql-http package's server audits of
// the GraphQL-over-HTTP spec (internal/playground/web/http-audit.mjs)
// against the real handler: every MUST and every SHOULD passes (on main: 13/13
// MUST, 18/23 SHOULD). It needs node and npm ci --prefix
// internal/playground/web (bash test.sh does both); without them it fails,
// saying so.
func TestGraphQLOverHTTPAudit(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: install Node.js 20 or later with npm, then bash test.sh")
	}
	if _, err := os.Stat(filepath.Join(playgroundWeb, "node_modules", "graphql-http", "package.json")); err != nil {
		t.Fatal("graphql-http is not installed: npm ci --prefix " + playgroundWeb + " (bash test.sh does it)")
	}
	s := newTestServer(t, nil)
	cmd := exec.CommandContext(t.Context(), node, "http-audit.mjs", s.URL+"/graphql")
	cmd.Dir = playgroundWeb
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the audit did not run: %v\n%s", err, out)
	}
	var results []struct{ ID, Name, Status, Reason string }
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	passed := map[string]int{}
	total := map[string]int{}
	for _, r := range results {
		level, _, _ := strings.Cut(r.Name, " ")
		total[level]++
		if r.Status == "ok" {
			passed[level]++
		} else if level == "MUST" || level == "SHOULD" {
			t.Errorf("%s %s: %s", r.ID, r.Name, r.Reason)
		}
	}
	t.Logf("MUST %d/%d, SHOULD %d/%d, MAY %d/%d", passed["MUST"], total["MUST"], passed["SHOULD"], total["SHOULD"], passed["MAY"], total["MAY"])
	if total["MUST"] == 0 || total["SHOULD"] == 0 {
		t.Fatalf("the audit ran no MUST or SHOULD: %s", out)
	}
}
