package api

import (
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

func retryAfter(t *testing.T, r testkit.Response) float64 {
	t.Helper()
	testkit.WantCode(t, r, "RATE_LIMITED")
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
	a.SignUp(t, "victim@example.com")

	testkit.WantCode(t, a.Post(t, "", testkit.LoginMutation, testkit.LoginVars("victim@example.com", "guess one")), "INVALID_CREDENTIALS")
	testkit.WantCode(t, b.Post(t, "", testkit.LoginMutation, testkit.LoginVars("VICTIM@example.com", "guess two")), "INVALID_CREDENTIALS")
	testkit.WantCode(t, a.Post(t, "", testkit.LoginMutation, testkit.LoginVars("victim@example.com", "guess three")), "INVALID_CREDENTIALS")

	secs := retryAfter(t, b.Post(t, "", testkit.LoginMutation, testkit.LoginVars("victim@example.com", testkit.Password)))
	if secs > 5 {
		t.Fatalf("retryAfterSeconds = %v, beyond the 5s window", secs)
	}
	retryAfter(t, a.Post(t, "", testkit.LoginMutation, testkit.LoginVars("victim@example.com", "guess four")))
	// Other accounts are not affected.
	a.SignUp(t, "bystander@example.com")
	testkit.WantOK(t, b.Post(t, "", testkit.LoginMutation, testkit.LoginVars("bystander@example.com", testkit.Password)))

	time.Sleep(time.Duration(secs*float64(time.Second)) + 200*time.Millisecond)
	testkit.WantOK(t, b.Post(t, "", testkit.LoginMutation, testkit.LoginVars("victim@example.com", testkit.Password)))
}

// TestRightPasswordKeepsOthersFailures: a right password gives back only its
// own place; the failures before it stand until the window closes (an
// attacker must not get a fresh budget each time the owner signs in), and a
// device that signed in before is not locked out by them (TestDeviceProof…).
func TestRightPasswordKeepsOthersFailures(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 2 })
	s.SignUp(t, "clear@example.com")
	testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("clear@example.com", "wrong one")), "INVALID_CREDENTIALS")
	testkit.WantOK(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("clear@example.com", testkit.Password)))
	testkit.WantOK(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("clear@example.com", testkit.Password)))
	testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("clear@example.com", "wrong two")), "INVALID_CREDENTIALS")
	retryAfter(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("clear@example.com", testkit.Password)))
}

func TestLoginUnknownEmailIsThrottledToo(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 2 })
	for range 2 {
		testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("ghost@example.com", "whatever1")), "INVALID_CREDENTIALS")
	}
	// Same answer as for a real account: the limit reveals nothing.
	retryAfter(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("ghost@example.com", "whatever1")))
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
	s.SignUp(t, "real@example.com")
	for i := range 4 {
		h := http.Header{"X-Forwarded-For": {fmt.Sprintf("203.0.113.%d", i)}}
		r := s.PostHeader(t, h, testkit.LoginMutation, testkit.LoginVars(fmt.Sprintf("target%d@example.com", i), "Spring2026!"))
		testkit.WantCode(t, r, "INVALID_CREDENTIALS")
	}
	h := http.Header{"X-Forwarded-For": {"198.51.100.7"}}
	retryAfter(t, s.PostHeader(t, h, testkit.LoginMutation, testkit.LoginVars("target9@example.com", "Spring2026!")))
	// Even a correct password from that address waits.
	retryAfter(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("real@example.com", testkit.Password)))
}

func TestThrottleCountersAreCleanedUp(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.Window = 500 * time.Millisecond })
	for i := range 3 {
		s.Post(t, "", testkit.LoginMutation, testkit.LoginVars(fmt.Sprintf("gone%d@example.com", i), "whatever1"))
	}
	count := func() int64 {
		n, err := s.db.NewSelect().Table("login_throttle").Count(testkit.Context(t))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if count() == 0 {
		t.Fatal("no counters were recorded")
	}
	time.Sleep(600 * time.Millisecond)
	if _, err := s.svc.Housekeep(testkit.Context(t)); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d expired counters left after housekeeping", n)
	}
}

// verified is how many passwords the instances have checked with argon2.
func verified(servers ...*testServer) int64 {
	var n int64
	for _, s := range servers {
		n += s.svc.PasswordWork().Verified
	}
	return n
}

// codes counts the extensions.code of each response ("" for success).
type codes struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *codes) add(r testkit.Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[r.Code()]++
}

// TestConcurrentWrongPasswordsVerifyAtMostTheLimit sends 50 wrong passwords
// for one account at once, spread over two instances: every attempt is
// counted before its hash, so at most LOGIN_MAX_FAILURES passwords are
// checked and every other attempt answers RATE_LIMITED.
func TestConcurrentWrongPasswordsVerifyAtMostTheLimit(t *testing.T) {
	t.Parallel()
	edit := func(c *config) { c.Auth.Throttle.MaxFailures = 5 }
	a, b := twoInstances(t, edit)
	a.SignUp(t, "target@example.com")
	before := verified(a, b)

	got := race(50, a, b, func(i int, s *testServer) testkit.Response {
		return s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("target@example.com", fmt.Sprintf("guess %d!", i)))
	})
	if n := verified(a, b) - before; n > 5 {
		t.Errorf("%d passwords verified, want at most 5", n)
	}
	if got.n["INVALID_CREDENTIALS"] > 5 || got.n["INVALID_CREDENTIALS"]+got.n["RATE_LIMITED"] != 50 {
		t.Errorf("answers %v, want at most 5 INVALID_CREDENTIALS and RATE_LIMITED for the rest", got.n)
	}
}

// TestConcurrentSprayVerifiesAtMostThePerAddressLimit is the same race on
// the per-address limit: 50 wrong passwords for 50 accounts at once from one
// address, over two instances.
func TestConcurrentSprayVerifiesAtMostThePerAddressLimit(t *testing.T) {
	t.Parallel()
	edit := func(c *config) { c.Auth.Throttle.MaxFailuresPerIP = 5 }
	a, b := twoInstances(t, edit)
	got := race(50, a, b, func(i int, s *testServer) testkit.Response {
		return s.Post(t, "", testkit.LoginMutation, testkit.LoginVars(fmt.Sprintf("user%d@example.com", i), "Spring2026!"))
	})
	if n := verified(a, b); n > 5 {
		t.Errorf("%d passwords verified, want at most 5", n)
	}
	if got.n["INVALID_CREDENTIALS"] > 5 || got.n["INVALID_CREDENTIALS"]+got.n["RATE_LIMITED"] != 50 {
		t.Errorf("answers %v, want at most 5 INVALID_CREDENTIALS and RATE_LIMITED for the rest", got.n)
	}
}

// TestConcurrentRightPasswordDoesNotReopenGuessing races the owner's right
// password against 49 wrong ones over two instances: the wrong ones still
// get at most LOGIN_MAX_FAILURES checks in all, and the failures they earned
// still lock the account afterwards.
func TestConcurrentRightPasswordDoesNotReopenGuessing(t *testing.T) {
	t.Parallel()
	edit := func(c *config) { c.Auth.Throttle.MaxFailures = 5 }
	a, b := twoInstances(t, edit)
	a.SignUp(t, "owner@example.com")

	got := race(50, a, b, func(i int, s *testServer) testkit.Response {
		password := fmt.Sprintf("guess %d!", i)
		if i == 25 {
			password = testkit.Password
		}
		return s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("owner@example.com", password))
	})
	if got.n["INVALID_CREDENTIALS"] > 5 || got.n["INVALID_CREDENTIALS"]+got.n["RATE_LIMITED"]+got.n[""] != 50 || got.n[""] > 1 {
		t.Fatalf("answers %v, want at most 5 INVALID_CREDENTIALS", got.n)
	}
	if got.n["INVALID_CREDENTIALS"] == 5 {
		// The window's failures stand: no more guesses, on either instance.
		retryAfter(t, a.Post(t, "", testkit.LoginMutation, testkit.LoginVars("owner@example.com", "one more guess")))
		retryAfter(t, b.Post(t, "", testkit.LoginMutation, testkit.LoginVars("owner@example.com", "one more guess")))
	}
}

// TestConcurrentRightPasswordsAllGetIn: attempts in flight fill the limit
// only for a moment, so concurrent logins with the right password wait for
// each other instead of answering RATE_LIMITED.
func TestConcurrentRightPasswordsAllGetIn(t *testing.T) {
	t.Parallel()
	edit := func(c *config) { c.Auth.Throttle.MaxFailures = 3 }
	a, b := twoInstances(t, edit)
	a.SignUp(t, "fleet@example.com")
	var wg sync.WaitGroup
	for i := range 6 {
		s := []*testServer{a, b}[i%2]
		wg.Go(func() {
			testkit.WantOK(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("fleet@example.com", testkit.Password)))
		})
	}
	wg.Wait()
}

// TestChangePasswordCountsFailures: wrong current passwords given to
// changePassword count with the account's failed logins, concurrently too,
// and answer RATE_LIMITED with retryAfterSeconds at the limit; so does a
// login then.
func TestChangePasswordCountsFailures(t *testing.T) {
	t.Parallel()
	edit := func(c *config) { c.Auth.Throttle.MaxFailures = 3 }
	a, b := twoInstances(t, edit)
	p := a.SignUp(t, "oracle@example.com")
	before := verified(a, b)

	got := race(12, a, b, func(i int, s *testServer) testkit.Response {
		vars := map[string]any{"cur": fmt.Sprintf("guess %d!", i), "new": "a new password 1"}
		return s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, vars)
	})
	if n := verified(a, b) - before; n > 3 {
		t.Errorf("%d passwords verified, want at most 3", n)
	}
	if got.n["INVALID_CREDENTIALS"] != 3 || got.n["RATE_LIMITED"] != 9 {
		t.Errorf("answers %v, want 3 INVALID_CREDENTIALS and 9 RATE_LIMITED", got.n)
	}
	retryAfter(t, b.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "a new password 1"}))
	retryAfter(t, a.Post(t, "", testkit.LoginMutation, testkit.LoginVars("oracle@example.com", testkit.Password)))
}

// TestChangePasswordRightPasswordIsNotAFailure: a successful change gives
// its place back.
func TestChangePasswordRightPasswordIsNotAFailure(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 1 })
	p := s.SignUp(t, "changer@example.com")
	testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "a new password 1"}))
	testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": "a new password 1", "new": "a new password 2"}))
	testkit.WantOK(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("changer@example.com", "a new password 2")))
}

func signUpVars(email string) map[string]any {
	return map[string]any{"email": email, "password": testkit.Password}
}

func from(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }

// trustLocal believes X-Forwarded-For from the test client, so a test can
// pick its client address.
func trustLocal(t *testing.T, c *config) {
	c.Auth.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

func hashed(servers ...*testServer) int64 {
	var n int64
	for _, s := range servers {
		n += s.svc.PasswordWork().Hashed
	}
	return n
}

// TestSignUpLimitedPerAddress: sign-up attempts count per client address
// (EMAIL_TAKEN ones too), over every instance, before any hashing; at
// SIGNUP_MAX_PER_IP they answer RATE_LIMITED with retryAfterSeconds, also
// when they race, while other addresses are not affected.
func TestSignUpLimitedPerAddress(t *testing.T) {
	t.Parallel()
	edit := func(c *config) {
		trustLocal(t, c)
		c.Auth.Throttle.MaxSignUpsPerIP = 3
		c.Auth.Throttle.SignUpWindow = time.Hour
	}
	a, b := twoInstances(t, edit)
	h := from("203.0.113.7")
	testkit.WantOK(t, a.PostHeader(t, h, testkit.SignUpMutation, signUpVars("one@example.com")))
	testkit.WantOK(t, b.PostHeader(t, h, testkit.SignUpMutation, signUpVars("two@example.com")))
	testkit.WantCode(t, a.PostHeader(t, h, testkit.SignUpMutation, signUpVars("ONE@example.com")), "EMAIL_TAKEN")
	before := hashed(a, b)
	secs := retryAfter(t, b.PostHeader(t, h, testkit.SignUpMutation, signUpVars("three@example.com")))
	if secs > 3600 {
		t.Fatalf("retryAfterSeconds = %v, beyond the window", secs)
	}
	if n := hashed(a, b) - before; n != 0 {
		t.Fatalf("a refused sign-up hashed %d passwords", n)
	}
	// Malformed input is refused before it is counted.
	testkit.WantCode(t, b.PostHeader(t, from("203.0.113.9"), testkit.SignUpMutation, signUpVars("not an email")), "BAD_USER_INPUT")

	// 20 at once from another address, over both instances: 3 get in.
	var got codes
	var wg sync.WaitGroup
	before = hashed(a, b)
	for i := range 20 {
		s := []*testServer{a, b}[i%2]
		wg.Go(func() {
			got.add(s.PostHeader(t, from("203.0.113.9"), testkit.SignUpMutation, signUpVars(fmt.Sprintf("burst%d@example.com", i))))
		})
	}
	wg.Wait()
	if got.n[""] != 3 || got.n["RATE_LIMITED"] != 17 {
		t.Fatalf("answers %v, want 3 sign-ups and 17 RATE_LIMITED", got.n)
	}
	if n := hashed(a, b) - before; n != 3 {
		t.Fatalf("%d passwords hashed, want 3", n)
	}
	testkit.WantOK(t, a.PostHeader(t, from("198.51.100.1"), testkit.SignUpMutation, signUpVars("elsewhere@example.com")))
}

// TestSignUpTakenEmailSpendsNoHash: EMAIL_TAKEN is answered before the
// password is hashed.
func TestSignUpTakenEmailSpendsNoHash(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	s.SignUp(t, "taken@example.com")
	before := hashed(s)
	testkit.WantCode(t, s.Post(t, "", testkit.SignUpMutation, signUpVars(" Taken@Example.com")), "EMAIL_TAKEN")
	if n := hashed(s) - before; n != 0 {
		t.Fatalf("a sign-up with a taken email hashed %d passwords", n)
	}
}

// TestIPv6ClientsCountPerSlash64: every per-address limit (failed logins,
// sign-ups) counts an IPv6 client by its /64, which one subscriber holds
// whole; IPv4 addresses and other /64s keep budgets of their own.
func TestIPv6ClientsCountPerSlash64(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) {
		trustLocal(t, c)
		c.Auth.Throttle.MaxFailuresPerIP = 3
		c.Auth.Throttle.MaxSignUpsPerIP = 2
	})
	for i, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:aaaa:bbbb:cccc:dddd"} {
		testkit.WantCode(t, s.PostHeader(t, from(ip), testkit.LoginMutation, testkit.LoginVars(fmt.Sprintf("v6-%d@example.com", i), "Spring2026!")), "INVALID_CREDENTIALS")
	}
	retryAfter(t, s.PostHeader(t, from("2001:db8:1:2:ffff::9"), testkit.LoginMutation, testkit.LoginVars("v6-9@example.com", "Spring2026!")))
	testkit.WantCode(t, s.PostHeader(t, from("2001:db8:1:3::1"), testkit.LoginMutation, testkit.LoginVars("v6-9@example.com", "Spring2026!")), "INVALID_CREDENTIALS")
	testkit.WantCode(t, s.PostHeader(t, from("203.0.113.1"), testkit.LoginMutation, testkit.LoginVars("v6-9@example.com", "Spring2026!")), "INVALID_CREDENTIALS")

	testkit.WantOK(t, s.PostHeader(t, from("2001:db8:9:9::1"), testkit.SignUpMutation, signUpVars("six1@example.com")))
	testkit.WantOK(t, s.PostHeader(t, from("2001:db8:9:9::2"), testkit.SignUpMutation, signUpVars("six2@example.com")))
	retryAfter(t, s.PostHeader(t, from("2001:db8:9:9:1:2:3:4"), testkit.SignUpMutation, signUpVars("six3@example.com")))
	testkit.WantOK(t, s.PostHeader(t, from("2001:db8:9:a::1"), testkit.SignUpMutation, signUpVars("six3@example.com")))
	// The session still shows the client's own address, not its /64.
	var p testkit.Payload
	s.PostHeader(t, from("2001:db8:1:3::42"), testkit.SignUpMutation, signUpVars("six4@example.com")).Field(t, "signUp", &p)
	if p.Session.IPAddress == nil || *p.Session.IPAddress != "2001:db8:1:3::42" {
		t.Fatalf("ipAddress = %v", p.Session.IPAddress)
	}
}

// smallPools caps each instance's connections: the tests' PostgreSQL server
// is shared, and 50 concurrent requests on two instances must not take 40
// of its connections. Requests wait for a connection instead.
func smallPools(servers ...*testServer) {
	for _, s := range servers {
		s.db.SetMaxOpenConns(4)
	}
}

// twoInstances starts two instances on one fresh database, each with a
// small pool: the concurrency tests open many connections at once on a
// server other tests share.
func twoInstances(t *testing.T, edit func(*config)) (a, b *testServer) {
	t.Helper()
	url := pgtest.New(t)
	a, b = newTestServerOn(t, url, edit), newTestServerOn(t, url, edit)
	smallPools(a, b)
	return a, b
}

// race runs n requests at once, the even ones on a and the odd ones on b,
// and counts their answers' codes.
func race(n int, a, b *testServer, do func(i int, s *testServer) testkit.Response) *codes {
	var got codes
	var wg sync.WaitGroup
	for i := range n {
		s := []*testServer{a, b}[i%2]
		wg.Go(func() { got.add(do(i, s)) })
	}
	wg.Wait()
	return &got
}

// TestConcurrentLoginsAndRevocationsOfOneAccount: logins of one account
// from one address, racing each other and revokeOtherSessions over two
// instances, all get in. Settling two counters with one UPDATE used to lock
// them in the order they lay on disk, against reserve's order, and the two
// deadlocked: INTERNAL, and places never given back that then answered
// RATE_LIMITED to the right password.
func TestConcurrentLoginsAndRevocationsOfOneAccount(t *testing.T) {
	t.Parallel()
	url := pgtest.New(t)
	a, b := newTestServerOn(t, url, nil), newTestServerOn(t, url, nil)
	p := a.SignUp(t, "many@example.com")
	for round := range 10 {
		got := race(16, a, b, func(i int, s *testServer) testkit.Response {
			if i%4 == 3 {
				return s.Post(t, p.AccessToken, `mutation { revokeOtherSessions }`, nil)
			}
			return s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("many@example.com", testkit.Password))
		})
		if got.n[""] != 16 {
			t.Fatalf("round %d: answers %v, want 16 successes", round, got.n)
		}
	}
}
