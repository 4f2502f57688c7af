package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

// scrape returns the samples of the /metrics at base as "name{labels}" -> value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetrics drives the real program and reads its counters where an
// operator's scraper would: on METRICS_ADDR, never on the API's ADDR.
func TestMetrics(t *testing.T) {
	t.Parallel()
	srv := testkit.StartRun(t, run, map[string]string{
		"DATABASE_URL": pgtest.New(t), "METRICS_ADDR": "127.0.0.1:0",
		"LOGIN_MAX_FAILURES": "1", "REFRESH_REUSE_WINDOW": "0",
	})
	s := srv
	p := s.SignUp(t, "metrics@example.com")
	s.Login(t, "metrics@example.com", testkit.Password)
	s.Login(t, "metrics@example.com", testkit.Password)
	s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("other@example.com", "wrong pass"))
	s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("other@example.com", "wrong pass"))
	n := s.Refresh(t, p.Refresh())
	testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil))
	testkit.WantCode(t, s.Post(t, p.Refresh(), testkit.RefreshMutation, nil), "REFRESH_TOKEN_REUSED")
	q := s.Login(t, "metrics@example.com", testkit.Password)
	testkit.WantOK(t, s.Post(t, q.AccessToken, testkit.RevokeOthersMutation, nil)) // ends the two earlier logins
	testkit.WantOK(t, s.Post(t, q.AccessToken, testkit.LogoutMutation, nil))

	if code := srv.Status(t, "/metrics"); code != http.StatusNotFound {
		t.Fatalf("GET /metrics on ADDR = %d, want 404", code)
	}
	got := scrape(t, srv.Metrics)
	for sample, want := range map[string]float64{
		`sessionauth_signups_total{result="ok"}`:                     1,
		`sessionauth_logins_total{result="ok"}`:                      3,
		`sessionauth_logins_total{result="failed"}`:                  1,
		`sessionauth_logins_total{result="limited"}`:                 1,
		`sessionauth_refreshes_total{result="ok"}`:                   1,
		`sessionauth_refreshes_total{result="reused"}`:               1,
		`sessionauth_sessions_revoked_total{reason="replay"}`:        1,
		`sessionauth_sessions_revoked_total{reason="revoke_others"}`: 2,
		`sessionauth_sessions_revoked_total{reason="logout"}`:        1,
	} {
		if got[sample] != want {
			t.Errorf("%s = %v, want %v", sample, got[sample], want)
		}
	}
	// A replay is counted once, as a revocation: a counter of replays
	// would only repeat it.
	if v, ok := got[`sessionauth_refresh_replays_total`]; ok {
		t.Errorf("sessionauth_refresh_replays_total = %v: it repeats sessionauth_sessions_revoked_total{reason=\"replay\"}", v)
	}
	if got[`sessionauth_request_duration_seconds_count{route="graphql"}`] < 10 {
		t.Errorf("request latency not recorded: %v", got[`sessionauth_request_duration_seconds_count{route="graphql"}`])
	}
}

// TestMetricsOffByDefault: with no METRICS_ADDR nothing serves metrics, the
// API's listener least of all, and the start-up line says how to turn them on.
func TestMetricsOffByDefault(t *testing.T) {
	t.Parallel()
	srv := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": pgtest.New(t)})
	if code := srv.Status(t, "/metrics"); code != http.StatusNotFound {
		t.Fatalf("GET /metrics on ADDR = %d, want 404", code)
	}
	if !strings.Contains(srv.Logs.String(), `"metrics_addr":"off: set METRICS_ADDR`) {
		t.Fatalf("the start-up line does not say metrics are off:\n%s", srv.Logs)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
}

// TestMetricsAddrUnavailable: a METRICS_ADDR that cannot be listened on
// stops the server at start with an error naming it, and frees ADDR; so does
// an ADDR that cannot.
func TestMetricsAddrUnavailable(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := testkit.FreePort(t)
	env := map[string]string{"DATABASE_URL": pgtest.New(t), "ADDR": addr, "METRICS_ADDR": taken.Addr().String()}
	err = run(t.Context(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "METRICS_ADDR="+taken.Addr().String()) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("run returned %v, want an error naming METRICS_ADDR", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("ADDR was left open: %v", err)
	}
	ln.Close()

	// And the API's own address taken: the error names ADDR.
	env = map[string]string{"DATABASE_URL": env["DATABASE_URL"], "ADDR": taken.Addr().String(), "METRICS_ADDR": "127.0.0.1:0"}
	err = run(t.Context(), nil, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ADDR="+taken.Addr().String()) || strings.Contains(err.Error(), "METRICS_ADDR") {
		t.Fatalf("run returned %v, want an error naming ADDR", err)
	}
}

func TestCheckMetricsAddr(t *testing.T) {
	for _, tt := range []struct {
		addr, metrics string
		ok            bool
	}{
		{":8080", "", true},
		{":8080", "127.0.0.1:9091", true},
		{":8080", ":9091", true},
		{"127.0.0.1:8080", "10.0.0.1:8080", true}, // two interfaces, one port: two listeners
		{"127.0.0.1:0", "127.0.0.1:0", true},      // two free ports
		{":8080", ":8080", false},
		{":8080", "127.0.0.1:8080", false},
		{"127.0.0.1:8080", ":8080", false},
		{"127.0.0.1:8080", "[::]:8080", false},
		{"localhost:8080", "localhost:8080", false},
		{":http", ":80", false},
		{":8080", "localhost", false},
		{":8080", "host:port", false},
	} {
		err := checkMetricsAddr(tt.addr, tt.metrics)
		if (err == nil) != tt.ok || err != nil && !strings.Contains(err.Error(), "METRICS_ADDR") {
			t.Errorf("ADDR=%q METRICS_ADDR=%q: %v, want ok=%v", tt.addr, tt.metrics, err, tt.ok)
		}
	}
}
