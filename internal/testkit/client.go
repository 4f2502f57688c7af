// Package testkit is the harness every package's tests share: one GraphQL
// client (Client), one way to start an instance (Serve for a handler,
// StartRun for the program's run function, StartBinary for the built
// program), one readiness wait (the program's "listening" log line), one
// race switch (Race) and a log sink that goroutines may share (SyncBuffer).
// The backend guard is pgtest.PostgresOnly.
//
// It imports nothing of the module but its test databases, so that the
// domain's own tests can use it too.
package testkit

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Client speaks GraphQL over HTTP to one server. Its methods that take a
// *testing.T end the test on a failure; Call and Do return it instead, for
// goroutines and for loops that count failures.
type Client struct {
	URL  string // http://host:port, without a trailing slash
	HTTP *http.Client
	// Patient retries an answer of SERVICE_UNAVAILABLE a few times, as a
	// client of a server whose database may blip does; otherwise the
	// first answer is the answer.
	Patient bool
}

// NewClient returns a client of the server at url, with a timeout well over
// any bound a test asserts (so a hang fails as a hang); its idle connections
// close when t ends.
func NewClient(t testing.TB, url string) *Client {
	c := &Client{URL: url, HTTP: &http.Client{
		Timeout:   ClientTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
	}}
	t.Cleanup(c.HTTP.CloseIdleConnections)
	return c
}

// ClientTimeout is how long a Client waits for any answer.
const ClientTimeout = 30 * time.Second

// Error is one entry of a GraphQL answer's errors.
type Error struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

// Response is a GraphQL answer with what HTTP said about it.
type Response struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []Error                    `json:"errors"`

	Status      int            `json:"-"`
	Header      http.Header    `json:"-"`
	Cookies     []*http.Cookie `json:"-"`
	ContentType string         `json:"-"`
	// Top holds the body's top-level entries as sent, to tell a "data":
	// null from a missing data.
	Top map[string]json.RawMessage `json:"-"`
}

// Code returns the extensions.code of the first error, or "" when none.
func (r Response) Code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// Field decodes data.name into v, failing the test when there is none.
func (r Response) Field(t testing.TB, name string, v any) {
	t.Helper()
	raw, ok := r.Data[name]
	if !ok || string(raw) == "null" {
		t.Fatalf("no data.%s in response; errors: %+v", name, r.Errors)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("data.%s: %v", name, err)
	}
}

// HasData reports whether any field of r's data is set.
func (r Response) HasData() bool {
	for _, v := range r.Data {
		if string(v) != "null" {
			return true
		}
	}
	return false
}

// Do sends req and decodes its answer. Besides transport failures it
// reports as errors what the contract forbids whatever happens: a 5xx, a
// body that is not JSON (an HTML error page) and an error without
// extensions.code.
func (c *Client) Do(req *http.Request) (Response, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	out := Response{Status: resp.StatusCode, Header: resp.Header, Cookies: resp.Cookies(), ContentType: resp.Header.Get("Content-Type")}
	if err != nil {
		return out, err
	}
	if resp.StatusCode >= 500 {
		return out, fmt.Errorf("status %d: %.200q", resp.StatusCode, raw)
	}
	if mt, _, _ := mime.ParseMediaType(out.ContentType); mt != "application/json" && mt != "application/graphql-response+json" {
		return out, fmt.Errorf("status %d, content type %q: %.200q", resp.StatusCode, out.ContentType, raw)
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return out, fmt.Errorf("status %d, body %.200q: %v", resp.StatusCode, raw, err)
	}
	if err := json.Unmarshal(raw, &out.Top); err != nil {
		return out, fmt.Errorf("status %d, body %.200q: %v", resp.StatusCode, raw, err)
	}
	for _, e := range out.Errors {
		if _, ok := e.Extensions["code"].(string); !ok {
			return out, fmt.Errorf("error without extensions.code: %+v", e)
		}
	}
	return out, nil
}

// Request builds a POST of body to /graphql: a string is sent as it is, any
// other value as its JSON. h is copied onto it; Content-Type is
// application/json unless h sets one.
func (c *Client) Request(h http.Header, body any) *http.Request {
	raw, ok := body.(string)
	if !ok {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		raw = string(b)
	}
	req, err := http.NewRequest(http.MethodPost, c.URL+"/graphql", strings.NewReader(raw))
	if err != nil {
		panic(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// Send posts body (see Request) with the headers h; with Patient, it
// retries SERVICE_UNAVAILABLE. It fails the test on a transport or contract
// error.
func (c *Client) Send(t testing.TB, h http.Header, body any) Response {
	t.Helper()
	for try := 0; ; try++ {
		r, err := c.Do(c.Request(h, body))
		if err != nil {
			t.Fatal(err)
		}
		if !c.Patient || r.Code() != "SERVICE_UNAVAILABLE" || try == 20 {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// PostHeader sends one GraphQL operation with the headers h.
func (c *Client) PostHeader(t testing.TB, h http.Header, query string, vars map[string]any) Response {
	t.Helper()
	return c.Send(t, h, map[string]any{"query": query, "variables": vars})
}

// Post sends one GraphQL operation with token as its bearer ("" for none).
func (c *Client) Post(t testing.TB, token, query string, vars map[string]any) Response {
	t.Helper()
	return c.PostHeader(t, Bearer(token), query, vars)
}

// Call is Post for a goroutine or a loop: it returns a failure instead of
// ending the test, and never retries.
func (c *Client) Call(token, query string, vars map[string]any) (Response, error) {
	return c.Do(c.Request(Bearer(token), map[string]any{"query": query, "variables": vars}))
}

// Bearer is the Authorization header of token; none for "".
func Bearer(token string) http.Header {
	if token == "" {
		return http.Header{}
	}
	return http.Header{"Authorization": {"Bearer " + token}}
}

// Get fetches path and returns its status.
func (c *Client) Get(path string) (int, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Get(c.URL + path)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Status fetches path and returns its status, failing the test when the
// request fails.
func (c *Client) Status(t testing.TB, path string) int {
	t.Helper()
	got, err := c.Get(path)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// WaitStatus polls path until it answers want.
func (c *Client) WaitStatus(t testing.TB, path string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got, err := c.Get(path)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s = %d (%v), want %d within %v", path, got, err, want, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WantCode fails unless r carries the error code want.
func WantCode(t testing.TB, r Response, want string) {
	t.Helper()
	if got := r.Code(); got != want {
		t.Fatalf("code = %q, want %q (errors %+v)", got, want, r.Errors)
	}
}

// WantOK fails if r carries any error.
func WantOK(t testing.TB, r Response) {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("unexpected errors: %+v", r.Errors)
	}
}

// WithPatience returns a copy of c that retries SERVICE_UNAVAILABLE (see
// Patient).
func (c *Client) WithPatience() *Client {
	p := *c
	p.Patient = true
	return &p
}

// Fetch sends req as it is (any method, body or headers), failing the test
// on a transport or contract error (see Do).
func (c *Client) Fetch(t testing.TB, req *http.Request) Response {
	t.Helper()
	r, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
