package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
)

func loginVars(email, password string) map[string]any {
	return map[string]any{"email": email, "password": password}
}

func retryAfter(t *testing.T, r gqlResponse) float64 {
	t.Helper()
	wantCode(t, r, "RATE_LIMITED")
	secs, ok := r.Errors[0].Extensions["retryAfterSeconds"].(float64)
	if !ok || secs < 1 {
		t.Fatalf("retryAfterSeconds = %v", r.Errors[0].Extensions["retryAfterSeconds"])
	}
	return secs
}

// TestLoginBruteForce walks the brute-force sequence across two instances
// sharing one database: the count is shared, the right password is refused
// while limited, and the window's end lets the user in again.
func TestLoginBruteForce(t *testing.T) {
	t.Parallel()
	url := pgtest.New(t)
	edit := func(c *config) {
		c.Auth.Throttle.MaxFailures = 3
		c.Auth.Throttle.Window = 5 * time.Second
	}
	a := newTestServerOn(t, url, edit)
	b := newTestServerOn(t, url, edit)
	a.signUp(t, "victim@example.com")

	wantCode(t, a.post(t, "", loginMutation, loginVars("victim@example.com", "guess one")), "INVALID_CREDENTIALS")
	wantCode(t, b.post(t, "", loginMutation, loginVars("VICTIM@example.com", "guess two")), "INVALID_CREDENTIALS")
	wantCode(t, a.post(t, "", loginMutation, loginVars("victim@example.com", "guess three")), "INVALID_CREDENTIALS")

	secs := retryAfter(t, b.post(t, "", loginMutation, loginVars("victim@example.com", testPassword)))
	if secs > 5 {
		t.Fatalf("retryAfterSeconds = %v, beyond the 5s window", secs)
	}
	retryAfter(t, a.post(t, "", loginMutation, loginVars("victim@example.com", "guess four")))
	// Other accounts are not affected.
	a.signUp(t, "bystander@example.com")
	wantOK(t, b.post(t, "", loginMutation, loginVars("bystander@example.com", testPassword)))

	time.Sleep(time.Duration(secs*float64(time.Second)) + 200*time.Millisecond)
	wantOK(t, b.post(t, "", loginMutation, loginVars("victim@example.com", testPassword)))
}

func TestLoginSuccessClearsFailures(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 2 })
	s.signUp(t, "clear@example.com")
	wantCode(t, s.post(t, "", loginMutation, loginVars("clear@example.com", "wrong one")), "INVALID_CREDENTIALS")
	wantOK(t, s.post(t, "", loginMutation, loginVars("clear@example.com", testPassword)))
	wantCode(t, s.post(t, "", loginMutation, loginVars("clear@example.com", "wrong two")), "INVALID_CREDENTIALS")
	wantOK(t, s.post(t, "", loginMutation, loginVars("clear@example.com", testPassword)))
}

func TestLoginUnknownEmailIsThrottledToo(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 2 })
	for range 2 {
		wantCode(t, s.post(t, "", loginMutation, loginVars("ghost@example.com", "whatever1")), "INVALID_CREDENTIALS")
	}
	// Same answer as for a real account: the limit reveals nothing.
	retryAfter(t, s.post(t, "", loginMutation, loginVars("ghost@example.com", "whatever1")))
}

// TestPasswordSprayingFromOneAddress fails logins for many emails from one
// client address: the per-address limit stops it, and a spoofed
// X-Forwarded-For from an untrusted peer does not help.
func TestPasswordSprayingFromOneAddress(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) {
		c.Auth.Throttle.MaxFailures = 5
		c.Auth.Throttle.MaxFailuresPerIP = 4
	})
	s.signUp(t, "real@example.com")
	for i := range 4 {
		h := http.Header{"X-Forwarded-For": {fmt.Sprintf("203.0.113.%d", i)}}
		r := s.postHeader(t, h, loginMutation, loginVars(fmt.Sprintf("target%d@example.com", i), "Spring2026!"))
		wantCode(t, r, "INVALID_CREDENTIALS")
	}
	h := http.Header{"X-Forwarded-For": {"198.51.100.7"}}
	retryAfter(t, s.postHeader(t, h, loginMutation, loginVars("target9@example.com", "Spring2026!")))
	// Even a correct password from that address waits.
	retryAfter(t, s.post(t, "", loginMutation, loginVars("real@example.com", testPassword)))
}

func TestThrottleCountersAreCleanedUp(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.Window = 500 * time.Millisecond })
	for i := range 3 {
		s.post(t, "", loginMutation, loginVars(fmt.Sprintf("gone%d@example.com", i), "whatever1"))
	}
	count := func() int64 {
		n, err := s.db.NewSelect().Table("login_throttle").Count(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if count() == 0 {
		t.Fatal("no counters were recorded")
	}
	time.Sleep(600 * time.Millisecond)
	if _, err := s.svc.Housekeep(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d expired counters left after housekeeping", n)
	}
}
