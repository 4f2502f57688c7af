package api

import (
	"encoding/json"
	"html"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vektah/gqlparser/v2"

	"github.com/example/sessionauth/graph"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/playground"
	"github.com/example/sessionauth/internal/testkit"
)

// playgroundOperations are the example operations the playground opens with,
// in order.
var playgroundOperations = []string{"SignUp", "Login", "Me", "MySessions", "RenameSession", "MySecurityEvents", "Reauthenticate", "Refresh", "Logout", "DeleteMyAccount", "SecurityEvents"}

func TestPlayground(t *testing.T) {
	mux := http.NewServeMux()
	mountPlayground(mux)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type %q", ct)
	}
	body := html.UnescapeString(rec.Body.String())
	for _, op := range playgroundOperations {
		if !strings.Contains(body, " "+op+" {") {
			t.Errorf("page lacks the %s operation", op)
		}
	}
	for _, hint := range []string{`data-endpoint="/graphql"`, "X-Token-Transport: cookie", "__Host-refresh_token", "ALLOWED_ORIGINS", "Authorization: Bearer <accessToken>"} {
		if !strings.Contains(body, hint) {
			t.Errorf("page lacks %q", hint)
		}
	}
	// The assets are mounted too.
	asset := regexp.MustCompile(`src="(` + playground.AssetPrefix + `[^"]+)"`).FindStringSubmatch(rec.Body.String())
	if asset == nil {
		t.Fatal("the page loads no asset")
	}
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, asset[1], nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s = %d", asset[1], rec.Code)
	}
}

// TestPlaygroundOffServesNoAssets: with PLAYGROUND=false nothing of the
// playground is served (TestPlaygroundOff covers / and introspection).
func TestPlaygroundOffServesNoAssets(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Playground = false })
	resp, err := http.Get(s.URL + playground.AssetPrefix)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET %s = %d with PLAYGROUND=false", playground.AssetPrefix, resp.StatusCode)
	}
}

func TestPlaygroundDocumentIsValid(t *testing.T) {
	schema := graph.NewExecutableSchema(graph.Config{}).Schema()
	doc, errs := gqlparser.LoadQuery(schema, playground.Document)
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
	if playground.Headers != "" {
		var headers map[string]string
		if err := json.Unmarshal([]byte(playground.Headers), &headers); err != nil {
			t.Fatalf("default headers are not a JSON object: %v", err)
		}
	}
}

// TestPlaygroundDocumentRuns runs the example operations through the real
// handler with the tokens the playground sends for each (the access token,
// the refresh token for Refresh), and with none, as on a first visit.
func TestPlaygroundDocumentRuns(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	run := func(authorization, operation string) testkit.Response {
		t.Helper()
		return s.runPlayground(t, authorization, operation)
	}

	r := run("", "SignUp")
	testkit.WantOK(t, r)
	var signedUp testkit.Payload
	r.Field(t, "signUp", &signedUp)
	testkit.WantCode(t, run("", "SignUp"), "EMAIL_TAKEN")

	r = run("", "Login")
	testkit.WantOK(t, r)
	var loggedIn testkit.Payload
	r.Field(t, "login", &loggedIn)

	access := "Bearer " + loggedIn.AccessToken
	testkit.WantCode(t, run("", "Me"), "UNAUTHENTICATED")
	testkit.WantOK(t, run(access, "Me"))
	var list []testkit.Session
	run(access, "MySessions").Field(t, "mySessions", &list)
	if len(list) != 2 {
		t.Fatalf("MySessions listed %d sessions, want 2", len(list))
	}
	testkit.WantCode(t, run(access, "RenameSession"), "NOT_FOUND")
	var events eventConnection
	run(access, "MySecurityEvents").Field(t, "mySecurityEvents", &events)
	if len(events.Edges) != 2 || events.Edges[0].Node.Kind != "SIGNED_IN" || events.Edges[1].Node.Kind != "SIGNED_UP" {
		t.Fatalf("MySecurityEvents: %+v", events)
	}
	var reauth testkit.Session
	run(access, "Reauthenticate").Field(t, "reauthenticate", &reauth)
	if reauth.ID != loggedIn.Session.ID || !reauth.Current {
		t.Fatalf("Reauthenticate: %+v", reauth)
	}

	testkit.WantCode(t, run(access, "Refresh"), "UNAUTHENTICATED")
	r = run("Bearer "+loggedIn.Refresh(), "Refresh")
	testkit.WantOK(t, r)
	var refreshed testkit.Payload
	r.Field(t, "refresh", &refreshed)
	testkit.WantCode(t, run(access, "Me"), "UNAUTHENTICATED")

	testkit.WantOK(t, run("Bearer "+refreshed.AccessToken, "Logout"))
	testkit.WantCode(t, run("Bearer "+refreshed.AccessToken, "Me"), "UNAUTHENTICATED")
	testkit.WantOK(t, run("Bearer "+signedUp.Refresh(), "Logout"))

	// Last: the account goes, and SignUp works again.
	r = run("", "Login")
	r.Field(t, "login", &loggedIn)
	testkit.WantCode(t, run("", "DeleteMyAccount"), "UNAUTHENTICATED")
	testkit.WantOK(t, run("Bearer "+loggedIn.AccessToken, "DeleteMyAccount"))
	testkit.WantCode(t, run("Bearer "+loggedIn.AccessToken, "Me"), "UNAUTHENTICATED")
	testkit.WantOK(t, run("", "SignUp"))
}

// runPlayground sends the playground's document as GraphiQL does, selecting
// operation by name, with authorization as the Authorization header ("" for
// none).
func (s *testServer) runPlayground(t *testing.T, authorization, operation string) testkit.Response {
	t.Helper()
	h := http.Header{}
	if authorization != "" {
		h.Set("Authorization", authorization)
	}
	return s.Send(t, h, map[string]any{"query": playground.Document, "operationName": operation})
}

// playgroundWeb is the npm project of the browser test (internal/playground/web).
const playgroundWeb = "../playground/web"

// TestPlaygroundInBrowser opens the playground of the real server in
// headless Chromium with every host but the loopback one blocked, and runs
// SignUp, Me, Refresh, Logout and Me from the UI with no header typed, then
// the cookie path (see internal/playground/web/browser-test.mjs). It saves a screenshot of each
// step under testdata/screenshots (PLAYGROUND_SCREENSHOTS overrides). It
// needs Debian's chromium (CHROMIUM overrides the path), node, and
// npm ci --prefix internal/playground/web; without them it fails, saying so.
func TestPlaygroundInBrowser(t *testing.T) {
	t.Parallel()
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium, _ = exec.LookPath("chromium")
	}
	if _, err := os.Stat(chromium); chromium == "" || err != nil {
		t.Fatal("no headless browser: apt-get install -y chromium (or set CHROMIUM to a Chromium binary); bash test.sh does it")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: install Node.js 20 or later with npm, then bash test.sh")
	}
	if _, err := os.Stat(filepath.Join(playgroundWeb, "node_modules", "playwright-core", "package.json")); err != nil {
		t.Fatal("playwright-core is not installed: npm ci --prefix " + playgroundWeb + " (bash test.sh does it)")
	}
	shots := os.Getenv("PLAYGROUND_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join("..", "..", "testdata", "screenshots", string(pgtest.Backend()))
	}
	shots, _ = filepath.Abs(shots)

	// The cookie path needs the page's origin in ALLOWED_ORIGINS, but a test
	// server's address is known only once it listens: the browser opens the
	// playground through a front that listens first and forwards everything.
	var backend atomic.Pointer[url.URL]
	front := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(backend.Load())
		r.Out.Host = r.In.Host
	}})
	t.Cleanup(front.Close)
	s := newTestServer(t, func(c *config) { c.Auth.AllowedOrigins = []string{front.URL} })
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	backend.Store(u)

	cmd := exec.CommandContext(t.Context(), node, "browser-test.mjs", front.URL+"/", shots)
	cmd.Dir = playgroundWeb
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium, "COOKIE_PATH=1")
	out, err := cmd.CombinedOutput()
	t.Logf("screenshots in %s\n%s", shots, out)
	if err != nil {
		t.Fatalf("the playground failed in the browser: %v", err)
	}
}
