package main

// Reliability (issue 5): the real program, run(), between a test and a
// PostgreSQL database that a TCP proxy under the test's control can cut,
// refuse or slow down. The machine's shared PostgreSQL is never touched.

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/testkit"
)

// TestDatabaseOutage cuts the database away from a running program: every
// operation answers SERVICE_UNAVAILABLE promptly, in JSON, with no token
// accepted unchecked; /readyz says 503 and /healthz 200. When the database
// is back, the same process serves the same tokens again.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	viaProxy, _, proxy := testkit.ProxiedDatabase(t)
	prog := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": viaProxy})
	c := prog.WithPatience()

	p := c.SignUp(t, "outage@example.com")
	testkit.WantOK(t, c.Post(t, p.AccessToken, testkit.MeQuery, nil)) // possibly cached from now on
	other := c.Login(t, "outage@example.com", testkit.Password)       // never used: not cached

	proxy.Refuse()
	proxy.Cut()
	c.WaitStatus(t, "/readyz", http.StatusServiceUnavailable, 10*time.Second)

	ops := map[string]struct {
		token, query string
		vars         map[string]any
	}{
		"me":                  {p.AccessToken, testkit.MeQuery, nil},
		"meUnusedToken":       {other.AccessToken, testkit.MeQuery, nil},
		"mySessions":          {p.AccessToken, testkit.MySessionsQuery, nil},
		"refresh":             {p.Refresh(), testkit.RefreshMutation, nil},
		"logout":              {other.AccessToken, testkit.LogoutMutation, nil},
		"revokeSession":       {p.AccessToken, testkit.RevokeMutation, map[string]any{"id": other.Session.ID}},
		"revokeOtherSessions": {p.AccessToken, testkit.RevokeOthersMutation, nil},
		"changePassword":      {p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "another good password"}},
		"login":               {"", testkit.LoginMutation, map[string]any{"email": "outage@example.com", "password": testkit.Password}},
		"signUp":              {"", testkit.SignUpMutation, map[string]any{"email": "new@example.com", "password": testkit.Password}},
	}
	var wg sync.WaitGroup
	for name, op := range ops {
		wg.Go(func() {
			start := time.Now()
			r, err := c.Call(op.token, op.query, op.vars)
			took := time.Since(start)
			switch {
			case err != nil:
				t.Errorf("%s: %v", name, err)
			case r.Code() != "SERVICE_UNAVAILABLE":
				t.Errorf("%s during the outage: code %q, data %s; want SERVICE_UNAVAILABLE", name, r.Code(), r.Data)
			case r.HasData():
				t.Errorf("%s during the outage returned data: %s", name, r.Data)
			case strings.Contains(r.Errors[0].Message, "127.0.0.1") || strings.Contains(r.Errors[0].Message, "dial"):
				t.Errorf("%s: message leaks internals: %q", name, r.Errors[0].Message)
			case took > testkit.ClientTimeout/2:
				t.Errorf("%s took %v to fail", name, took)
			}
		})
	}
	wg.Wait()
	if got, err := c.Get("/healthz"); got != http.StatusOK {
		t.Errorf("/healthz during the outage = %d (%v), want 200", got, err)
	}

	proxy.Restore()
	c.WaitStatus(t, "/readyz", http.StatusOK, 15*time.Second)
	// Nothing that failed was half-done: the old tokens and password work.
	testkit.WantOK(t, c.Post(t, p.AccessToken, testkit.MeQuery, nil))
	testkit.WantOK(t, c.Post(t, other.AccessToken, testkit.MeQuery, nil))
	n := c.Refresh(t, p.Refresh())
	testkit.WantOK(t, c.Post(t, n.AccessToken, testkit.MeQuery, nil))
	c.Login(t, "outage@example.com", testkit.Password)
	prog.CheckLogs(t)
}

// TestDatabaseBlip cuts every connection once while the program is busy:
// what fails, fails as SERVICE_UNAVAILABLE, and the program is serving again
// by itself within moments.
func TestDatabaseBlip(t *testing.T) {
	t.Parallel()
	viaProxy, _, proxy := testkit.ProxiedDatabase(t)
	prog := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": viaProxy})
	c := prog.WithPatience()
	p := c.SignUp(t, "blip@example.com")

	for range 3 {
		proxy.Cut()
		var unavailable int
		for i := range 20 {
			r, err := c.Call(p.AccessToken, testkit.MySessionsQuery, nil)
			if err != nil {
				t.Fatal(err)
			}
			switch r.Code() {
			case "":
			case "SERVICE_UNAVAILABLE":
				unavailable++
			default:
				t.Fatalf("request %d after a cut: %q", i, r.Code())
			}
		}
		// At most one failure per pooled connection the cut killed.
		if unavailable > 20/2 {
			t.Fatalf("%d of 20 requests failed after a single cut", unavailable)
		}
		testkit.WantOK(t, c.Post(t, p.AccessToken, testkit.MySessionsQuery, nil))
	}
	prog.CheckLogs(t)
}

// TestSlowDatabase delays everything between the program and PostgreSQL.
// A little latency only slows requests down; a database that stops
// answering fails them with SERVICE_UNAVAILABLE within the program's
// request deadline instead of holding them, and they recover after.
func TestSlowDatabase(t *testing.T) {
	t.Parallel()
	viaProxy, _, proxy := testkit.ProxiedDatabase(t)
	prog := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": viaProxy})
	c := prog.WithPatience()
	p := c.SignUp(t, "slow@example.com")
	q := c.Login(t, "slow@example.com", testkit.Password)

	proxy.SetDelay(20 * time.Millisecond)
	testkit.WantOK(t, c.Post(t, p.AccessToken, testkit.MySessionsQuery, nil))

	proxy.SetDelay(time.Hour) // as good as a database that never answers
	ops := map[string]struct {
		token, query string
		vars         map[string]any
	}{
		"meUnusedToken": {q.AccessToken, testkit.MeQuery, nil},
		"mySessions":    {p.AccessToken, testkit.MySessionsQuery, nil},
		"refresh":       {p.Refresh(), testkit.RefreshMutation, nil},
		"login":         {"", testkit.LoginMutation, map[string]any{"email": "slow@example.com", "password": testkit.Password}},
	}
	var wg sync.WaitGroup
	for name, op := range ops {
		wg.Go(func() {
			start := time.Now()
			r, err := c.Call(op.token, op.query, op.vars)
			took := time.Since(start)
			switch {
			case err != nil:
				t.Errorf("%s: %v (after %v)", name, err, took)
			case r.Code() != "SERVICE_UNAVAILABLE":
				t.Errorf("%s with the database not answering: code %q, want SERVICE_UNAVAILABLE", name, r.Code())
			case took > 20*time.Second:
				t.Errorf("%s took %v to fail", name, took)
			}
		})
	}
	wg.Go(func() {
		if got, err := c.Get("/readyz"); got != http.StatusServiceUnavailable {
			t.Errorf("/readyz with the database not answering = %d (%v), want 503", got, err)
		}
	})
	wg.Wait()

	proxy.Restore()
	c.WaitStatus(t, "/readyz", http.StatusOK, 15*time.Second)
	testkit.WantOK(t, c.Post(t, q.AccessToken, testkit.MeQuery, nil))
	n := c.Refresh(t, p.Refresh())
	testkit.WantOK(t, c.Post(t, n.AccessToken, testkit.MySessionsQuery, nil))
	prog.CheckLogs(t)
}
