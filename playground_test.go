package main

import (
	"bytes"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql/playground"
	"github.com/vektah/gqlparser/v2"

	"github.com/example/sessionauth/graph"
)

// playgroundOperations are the example operations the playground opens with,
// in order.
var playgroundOperations = []string{"SignUp", "Login", "Me", "MySessions", "RenameSession", "Refresh", "Logout"}

func TestPlayground(t *testing.T) {
	rec := httptest.NewRecorder()
	playgroundHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type %q", ct)
	}
	body := rec.Body.String()
	for _, op := range playgroundOperations {
		if !strings.Contains(body, " "+op+" {") {
			t.Errorf("page lacks the %s operation", op)
		}
	}
	for _, hint := range []string{"defaultQuery:", "defaultHeaders:", `\"Authorization\": \"Bearer `, "Authorization: Bearer "} {
		if !strings.Contains(body, hint) {
			t.Errorf("page lacks %q", hint)
		}
	}
}

func TestPlaygroundDocumentIsValid(t *testing.T) {
	schema := graph.NewExecutableSchema(graph.Config{}).Schema()
	doc, errs := gqlparser.LoadQuery(schema, playgroundDocument)
	if errs != nil {
		t.Fatalf("the playground's document does not validate against the schema: %v", errs)
	}
	var names []string
	for _, op := range doc.Operations {
		names = append(names, op.Name)
	}
	if !slices.Equal(names, playgroundOperations) {
		t.Fatalf("operations %v, want %v", names, playgroundOperations)
	}
	var headers map[string]string
	if err := json.Unmarshal([]byte(playgroundHeaders), &headers); err != nil {
		t.Fatalf("default headers are not JSON: %v", err)
	}
	if !strings.HasPrefix(headers["Authorization"], "Bearer ") {
		t.Fatalf("default headers %v lack an Authorization: Bearer hint", headers)
	}
}

// The page loads the very builds gqlgen's own playground loads, so a gqlgen
// upgrade that moves them makes this fail rather than silently diverge.
func TestPlaygroundAssetsMatchGqlgen(t *testing.T) {
	rec := httptest.NewRecorder()
	playground.Handler("x", "/graphql").ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	theirs := html.UnescapeString(rec.Body.String())
	rec = httptest.NewRecorder()
	playgroundHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	ours := html.UnescapeString(rec.Body.String())
	a := playgroundAssets
	for _, s := range []string{a.ReactJS, a.ReactJSSRI, a.ReactDOMJS, a.ReactDOMJSSRI, a.GraphiQLJS, a.GraphiQLJSSRI, a.GraphiQLCSS, a.GraphiQLCSSRI} {
		if !strings.Contains(theirs, s) {
			t.Errorf("gqlgen's playground no longer loads %s", s)
		}
		if !strings.Contains(ours, s) {
			t.Errorf("our page does not load %s as written", s)
		}
	}
}

// TestPlaygroundDocumentRuns runs the example operations through the real
// handler with the tokens their comments name, including the placeholder
// header a newcomer will send before pasting anything.
func TestPlaygroundDocumentRuns(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	var placeholder map[string]string
	if err := json.Unmarshal([]byte(playgroundHeaders), &placeholder); err != nil {
		t.Fatal(err)
	}
	run := func(authorization, operation string) gqlResponse {
		t.Helper()
		return s.runPlayground(t, authorization, operation)
	}

	r := run(placeholder["Authorization"], "SignUp")
	wantOK(t, r)
	var signedUp payload
	r.field(t, "signUp", &signedUp)
	wantCode(t, run("", "SignUp"), "EMAIL_TAKEN")

	r = run(placeholder["Authorization"], "Login")
	wantOK(t, r)
	var loggedIn payload
	r.field(t, "login", &loggedIn)

	access := "Bearer " + loggedIn.AccessToken
	wantCode(t, run(placeholder["Authorization"], "Me"), "UNAUTHENTICATED")
	wantOK(t, run(access, "Me"))
	var list []session
	run(access, "MySessions").field(t, "mySessions", &list)
	if len(list) != 2 {
		t.Fatalf("MySessions listed %d sessions, want 2", len(list))
	}
	wantCode(t, run(access, "RenameSession"), "NOT_FOUND")

	wantCode(t, run(access, "Refresh"), "UNAUTHENTICATED")
	r = run("Bearer "+loggedIn.refresh(), "Refresh")
	wantOK(t, r)
	var refreshed payload
	r.field(t, "refresh", &refreshed)
	wantCode(t, run(access, "Me"), "UNAUTHENTICATED")

	wantOK(t, run("Bearer "+refreshed.AccessToken, "Logout"))
	wantCode(t, run("Bearer "+refreshed.AccessToken, "Me"), "UNAUTHENTICATED")
	wantOK(t, run("Bearer "+signedUp.refresh(), "Logout"))
}

// runPlayground sends playgroundDocument as GraphiQL does, selecting
// operation by name, with authorization as the Authorization header ("" for
// none).
func (s *testServer) runPlayground(t *testing.T, authorization, operation string) gqlResponse {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": playgroundDocument, "operationName": operation})
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out gqlResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s: status %d, body %q: %v", operation, resp.StatusCode, raw, err)
	}
	out.Status = resp.StatusCode
	return out
}
