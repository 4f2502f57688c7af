package main

// Reliability (issue 5): the real program, run(), between a test and a
// PostgreSQL database that a TCP proxy under the test's control can cut,
// refuse or slow down. The machine's shared PostgreSQL is never touched.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/tcpproxy"
	"github.com/example/sessionauth/internal/testkit"
	"github.com/example/sessionauth/migrations"
)

// settle waits until no other connection to the test's database is running
// a statement or holds a transaction open: after a cut, PostgreSQL has then
// finished with, committed or rolled back whatever reached it.
func settle(t *testing.T, db *bun.DB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var busy int
		err := db.NewRaw(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()
			AND state IS DISTINCT FROM 'idle'`).Scan(context.Background(), &busy)
		if err != nil {
			t.Fatal(err)
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still busy on the database", busy)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

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

// chaos cuts the proxy's connections at random moments, or arms a cut a
// random number of chunks ahead, until ctx ends.
func chaos(ctx context.Context, proxy *tcpproxy.Proxy) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(300+rand.IntN(400)) * time.Millisecond):
		}
		if rand.IntN(3) == 0 {
			proxy.Cut()
		} else {
			proxy.CutAfter(rand.IntN(60))
		}
	}
}

// TestRefreshChainsSurviveCuts refreshes many sessions while connections
// to the database are cut at random points. A client keeps the refresh
// token of its last answer and retries it after SERVICE_UNAVAILABLE (or
// after a response it pretends it lost). However the cuts fall, it is never
// logged out: the retry returns the pair the server committed, the same
// pair every time, and afterwards every chain refreshes and authenticates.
// The reuse window is 0, so only "the successor was never used" keeps the
// retry valid: the strictest setting.
func TestRefreshChainsSurviveCuts(t *testing.T) {
	t.Parallel()
	viaProxy, direct, proxy := testkit.ProxiedDatabase(t)
	prog := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": viaProxy, "REFRESH_REUSE_WINDOW": "0"})
	c := prog.WithPatience()

	type chain struct {
		access, refresh string
		pending         bool             // the last refresh's outcome is unknown
		lost            *testkit.Payload // a pair the client received and threw away
	}
	chains := make([]*chain, 6)
	for i := range chains {
		p := c.SignUp(t, fmt.Sprintf("chain%d@example.com", i))
		chains[i] = &chain{access: p.AccessToken, refresh: p.Refresh()}
	}

	var ok, unavailable, retriedSame, lost atomic.Int64
	var mu sync.Mutex
	var violations []string
	violate := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(violations) < 20 {
			violations = append(violations, fmt.Sprintf(format, args...))
		}
	}

	ctx, stopChaos := context.WithCancel(context.Background())
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		chaos(ctx, proxy)
	}()
	start := time.Now()
	enough := func() bool {
		took := time.Since(start)
		return took > 20*time.Second ||
			took > 3*time.Second && ok.Load() >= 200 && unavailable.Load() >= 50
	}
	var wg sync.WaitGroup
	for i, ch := range chains {
		wg.Go(func() {
			for !enough() {
				if !ch.pending && rand.IntN(3) == 0 {
					r, err := c.Call(ch.access, testkit.MeQuery, nil)
					switch {
					case err != nil:
						violate("chain %d: me: %v", i, err)
					case r.Code() == "SERVICE_UNAVAILABLE":
						unavailable.Add(1)
					case r.Code() != "":
						violate("chain %d: me with the access token of the last answer: %s", i, r.Code())
					}
					continue
				}
				r, err := c.Call(ch.refresh, testkit.RefreshMutation, nil)
				if err != nil {
					violate("chain %d: refresh: %v", i, err)
					continue
				}
				switch r.Code() {
				case "":
					ok.Add(1)
					p, err := testkit.PayloadOf(r, "refresh")
					if err != nil {
						violate("chain %d: %v", i, err)
						continue
					}
					if ch.lost != nil {
						if p.AccessToken != ch.lost.AccessToken || p.Refresh() != ch.lost.Refresh() ||
							!p.RefreshTokenExpiresAt.Equal(ch.lost.RefreshTokenExpiresAt) {
							violate("chain %d: a retry got a different pair than the first answer", i)
						}
						retriedSame.Add(1)
						ch.lost = nil
					}
					if rand.IntN(5) == 0 {
						lost.Add(1)
						ch.lost, ch.pending = &p, true // as if the answer never arrived
						continue
					}
					ch.access, ch.refresh, ch.pending = p.AccessToken, p.Refresh(), false
				case "SERVICE_UNAVAILABLE":
					unavailable.Add(1)
					ch.pending = true
				default:
					violate("chain %d: refresh with the token of the last answer (pending %v): %s %s", i, ch.pending, r.Code(), r.Errors[0].Message)
				}
			}
		})
	}
	wg.Wait()
	stopChaos()
	<-chaosDone
	proxy.Restore()
	cuts := proxy.Stats().Cuts
	t.Logf("%v: %d refreshes answered, %d SERVICE_UNAVAILABLE, %d answers thrown away, %d retries returned the same pair, %d cuts",
		time.Since(start).Round(time.Millisecond), ok.Load(), unavailable.Load(), lost.Load(), retriedSame.Load(), cuts)
	for _, v := range violations {
		t.Error(v)
	}
	if unavailable.Load() == 0 || ok.Load() < 20 {
		t.Error("the cuts hit no request, or left almost none through: this proved little")
	}

	// After the storm every client recovers with the token it holds.
	c.WaitStatus(t, "/readyz", http.StatusOK, 15*time.Second)
	for i, ch := range chains {
		p := c.Refresh(t, ch.refresh)
		if ch.lost != nil && p.AccessToken != ch.lost.AccessToken {
			t.Errorf("chain %d: the final retry got a different pair than the lost answer", i)
		}
		testkit.WantOK(t, c.Post(t, p.AccessToken, testkit.MeQuery, nil))
		n := c.Refresh(t, p.Refresh())
		testkit.WantOK(t, c.Post(t, n.AccessToken, testkit.MeQuery, nil))
	}
	db := testkit.OpenDirect(t, direct)
	var sessions, revoked int
	err := db.NewRaw("SELECT count(*), count(revoked_at) FROM sessions").Scan(context.Background(), &sessions, &revoked)
	if err != nil {
		t.Fatal(err)
	}
	if sessions != len(chains) || revoked != 0 {
		t.Errorf("%d sessions, %d revoked; want %d, none revoked", sessions, revoked, len(chains))
	}
	prog.CheckLogs(t)
}

// cutSweep runs one round for each cut point 0..points-1: setup prepares
// the round, then the proxy is armed to cut every connection after that
// many chunks of database conversation and op runs, so that the cut falls
// before, inside and after the operation's transaction. check sees op's
// answer once PostgreSQL has settled and reports whether the operation took
// effect.
func cutSweep(t *testing.T, proxy *tcpproxy.Proxy, db *bun.DB, points int,
	setup func(n int), op func(n int) (testkit.Response, error), check func(n int, r testkit.Response) (done bool)) {
	t.Helper()
	var unavailable int
	outcomes := make([]string, 0, points)
	for n := range points {
		setup(n)
		proxy.CutAfter(n)
		r, err := op(n)
		proxy.Restore()
		if err != nil {
			t.Fatalf("cut after %d chunks: %v", n, err)
		}
		switch r.Code() {
		case "":
		case "SERVICE_UNAVAILABLE":
			unavailable++
		default:
			t.Fatalf("cut after %d chunks: code %q (%s), want success or SERVICE_UNAVAILABLE", n, r.Code(), r.Errors[0].Message)
		}
		settle(t, db)
		switch done := check(n, r); {
		case r.Code() == "":
			outcomes = append(outcomes, "ok")
		case done:
			outcomes = append(outcomes, "503:done")
		default:
			outcomes = append(outcomes, "503:undone")
		}
	}
	t.Logf("outcome by cut point: %s", strings.Join(outcomes, " "))
	if unavailable == 0 {
		t.Fatal("no cut hit the operation")
	}
}

// TestRevocationsUnderCuts cuts logout, revokeOtherSessions and
// changePassword at every point of their database conversation: each
// leaves the old state or the new one, never a mix, and an answer of
// success always means the new one.
func TestRevocationsUnderCuts(t *testing.T) {
	t.Parallel()
	viaProxy, direct, proxy := testkit.ProxiedDatabase(t)
	prog := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": viaProxy})
	c := prog.WithPatience()
	db := testkit.OpenDirect(t, direct)
	ctx := context.Background()

	liveSessions := func(userID string) int {
		var n int
		if err := db.NewRaw("SELECT count(*) FROM sessions WHERE user_id = ? AND revoked_at IS NULL", userID).Scan(ctx, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	isRevoked := func(sessionID string) bool {
		var revoked bool
		if err := db.NewRaw("SELECT revoked_at IS NOT NULL FROM sessions WHERE id = ?", sessionID).Scan(ctx, &revoked); err != nil {
			t.Fatal(err)
		}
		return revoked
	}

	t.Run("Logout", func(t *testing.T) {
		owner := c.SignUp(t, "logout@example.com")
		var s testkit.Payload
		cutSweep(t, proxy, db, 10, func(int) {
			s = c.Login(t, "logout@example.com", testkit.Password)
		}, func(int) (testkit.Response, error) {
			return c.Call(s.AccessToken, testkit.LogoutMutation, nil)
		}, func(n int, r testkit.Response) bool {
			revoked := isRevoked(s.Session.ID)
			if r.Code() == "" && !revoked {
				t.Fatalf("cut after %d: logout answered true but the session is live", n)
			}
			me := c.Post(t, s.AccessToken, testkit.MeQuery, nil)
			if revoked != (me.Code() == "UNAUTHENTICATED") {
				t.Fatalf("cut after %d: revoked %v but me answered %q", n, revoked, me.Code())
			}
			return revoked
		})
		if live := liveSessions(owner.User.ID); live < 1 {
			t.Fatalf("the untouched session was ended too: %d live", live)
		}
	})

	t.Run("RevokeOtherSessions", func(t *testing.T) {
		caller := c.SignUp(t, "others@example.com")
		var before int
		cutSweep(t, proxy, db, 8, func(int) {
			for liveSessions(caller.User.ID) < 3 {
				c.Login(t, "others@example.com", testkit.Password)
			}
			before = liveSessions(caller.User.ID)
		}, func(int) (testkit.Response, error) {
			return c.Call(caller.AccessToken, testkit.RevokeOthersMutation, nil)
		}, func(n int, r testkit.Response) bool {
			after := liveSessions(caller.User.ID)
			if after != 1 && after != before {
				t.Fatalf("cut after %d: %d of %d sessions live: a partial revocation", n, after, before)
			}
			if r.Code() == "" && after != 1 {
				t.Fatalf("cut after %d: answered success but %d sessions live", n, after)
			}
			if isRevoked(caller.Session.ID) {
				t.Fatalf("cut after %d: the caller's own session was ended", n)
			}
			return after == 1
		})
	})

	t.Run("ChangePassword", func(t *testing.T) {
		const email = "password@example.com"
		caller := c.SignUp(t, email)
		password := testkit.Password
		other := c.Login(t, email, password)
		var hashBefore, next string
		passwordHash := func() string {
			var h string
			if err := db.NewRaw("SELECT password_hash FROM users WHERE id = ?", caller.User.ID).Scan(ctx, &h); err != nil {
				t.Fatal(err)
			}
			return h
		}
		cutSweep(t, proxy, db, 16, func(n int) {
			hashBefore = passwordHash()
			next = fmt.Sprintf("new password %d", n)
		}, func(int) (testkit.Response, error) {
			return c.Call(caller.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": password, "new": next})
		}, func(n int, r testkit.Response) bool {
			changed := passwordHash() != hashBefore
			othersEnded := isRevoked(other.Session.ID)
			if changed != othersEnded {
				t.Fatalf("cut after %d: password changed %v but other sessions ended %v", n, changed, othersEnded)
			}
			if r.Code() == "" && !changed {
				t.Fatalf("cut after %d: answered success but nothing changed", n)
			}
			if isRevoked(caller.Session.ID) {
				t.Fatalf("cut after %d: the caller's own session was ended", n)
			}
			if changed {
				password = next
				other = c.Login(t, email, password)
			}
			return changed
		})
		c.Login(t, email, password)
	})
	prog.CheckLogs(t)
}

// TestGracefulShutdown stops the program (as SIGTERM does) while a request
// is in flight on a slow database: new connections are refused at once, the
// request still completes and its work is committed, and run returns nil.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	viaProxy, direct, proxy := testkit.ProxiedDatabase(t)
	prog := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": viaProxy})
	c := prog.WithPatience()
	p := c.SignUp(t, "shutdown@example.com")

	proxy.SetDelay(150 * time.Millisecond) // a refresh now takes a couple of seconds
	type answer struct {
		r   testkit.Response
		err error
	}
	inFlight := make(chan answer, 1)
	chunks := proxy.Stats().Chunks
	go func() {
		r, err := c.Call(p.Refresh(), testkit.RefreshMutation, nil)
		inFlight <- answer{r, err}
	}()
	waitForDatabaseTraffic(t, proxy, chunks) // the request is in its handler
	stopped := make(chan error, 1)
	go func() { stopped <- prog.Stop() }()

	refusedWhileInFlight := false
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", prog.Addr, time.Second)
		if err != nil {
			refusedWhileInFlight = len(inFlight) == 0
			break
		}
		conn.Close()
		time.Sleep(5 * time.Millisecond)
	}
	if !refusedWhileInFlight {
		t.Error("new connections were still accepted, or only refused after the in-flight request ended")
	}
	a := <-inFlight
	if a.err != nil {
		t.Fatalf("in-flight request: %v", a.err)
	}
	n, err := testkit.PayloadOf(a.r, "refresh")
	if err != nil {
		t.Fatalf("in-flight request did not complete: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("run returned %v", err)
	}
	if !strings.Contains(prog.Logs.String(), `"msg":"stopped"`) {
		t.Error(`run did not log "stopped"`)
	}
	prog.CheckLogs(t)

	// The answer the client got is what the database holds.
	after := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": direct})
	testkit.WantOK(t, after.Post(t, n.AccessToken, testkit.MeQuery, nil))
}

// waitForDatabaseTraffic waits until the proxy has carried more than after
// chunks: a request has started talking to the database.
func waitForDatabaseTraffic(t *testing.T, proxy *tcpproxy.Proxy, after int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); proxy.Stats().Chunks <= after; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the database")
		}
	}
}

// TestSIGTERM builds the program and sends the running process a real
// SIGTERM while a request is in flight: the request completes, and the
// process exits 0.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	viaProxy, _, proxy := testkit.ProxiedDatabase(t)
	prog := testkit.StartBinary(t, testkit.Build(t, "."), "", map[string]string{"DATABASE_URL": viaProxy, "GORACE": "halt_on_error=1"})
	c := prog.WithPatience()
	p := c.SignUp(t, "sigterm@example.com")

	proxy.SetDelay(150 * time.Millisecond)
	inFlight := make(chan error, 1)
	chunks := proxy.Stats().Chunks
	go func() {
		r, err := c.Call(p.Refresh(), testkit.RefreshMutation, nil)
		if err == nil {
			_, err = testkit.PayloadOf(r, "refresh")
		}
		inFlight <- err
	}()
	waitForDatabaseTraffic(t, proxy, chunks)
	stopped := make(chan error, 1)
	go func() { stopped <- prog.Stop() }() // SIGTERM
	if err := <-inFlight; err != nil {
		t.Errorf("the request in flight at SIGTERM: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("the program exited with %v; output:\n%s", err, prog.Logs)
	}
	if _, err := net.DialTimeout("tcp", prog.Addr, time.Second); err == nil {
		t.Error("the address still accepts connections after exit")
	}
	if out := prog.Logs.String(); !strings.Contains(out, `"msg":"stopped"`) || strings.Contains(out, "DATA RACE") {
		t.Errorf("want a clean stop in the output:\n%s", out)
	}
}

// TestPoolSettings checks what openDB sets on every connection unless the
// URL says otherwise: dead clients' transactions end after 15 s, and
// queries are not prepared (bun inlines values, so no statement repeats).
func TestPoolSettings(t *testing.T) {
	t.Parallel()
	pgtest.PostgresOnly(t, "these are PostgreSQL connection settings")
	base, err := url.Parse(pgtest.New(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t)
	for _, tc := range []struct {
		param, want string
	}{
		{"", "15s"},
		{"1min", "1min"},
	} {
		u := *base
		if tc.param != "" {
			q := u.Query()
			q.Set("idle_in_transaction_session_timeout", tc.param)
			u.RawQuery = q.Encode()
		}
		db, err := database.Open(database.Source{Backend: database.Postgres, URL: u.String()})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var got string
		if err := conn.NewRaw("SHOW idle_in_transaction_session_timeout").Scan(ctx, &got); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("URL %s: idle_in_transaction_session_timeout = %s, want %s", u.RawQuery, got, tc.want)
		}
		var prepared int
		for i := range 3 {
			if err := conn.NewRaw("SELECT count(*) FROM pg_prepared_statements WHERE ? >= 0", i).Scan(ctx, &prepared); err != nil {
				t.Fatal(err)
			}
		}
		if prepared != 0 {
			t.Errorf("URL %s: %d statements prepared on the connection, want none", u.RawQuery, prepared)
		}
	}
}

// TestConcurrentStartup starts two programs at the same moment on an empty
// database: both migrate-or-wait, both serve, and each migration is
// recorded once.
func TestConcurrentStartup(t *testing.T) {
	t.Parallel()
	pgtest.PostgresOnly(t, "a SQLite file belongs to one process, so two instances never share one")
	url := pgtest.NewURL(t)
	env := map[string]string{"DATABASE_URL": url}
	progs := []*testkit.Program{testkit.LaunchRun(t, run, env), testkit.LaunchRun(t, run, env)}
	for _, p := range progs {
		if err := p.WaitListening(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	a, b := progs[0].WithPatience(), progs[1].WithPatience()
	a.WaitStatus(t, "/readyz", http.StatusOK, 10*time.Second)
	b.WaitStatus(t, "/readyz", http.StatusOK, 10*time.Second)
	p := a.SignUp(t, "twins@example.com")
	testkit.WantOK(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil))

	db := testkit.OpenDirect(t, url)
	var names []string
	if err := db.NewRaw("SELECT name FROM bun_migrations ORDER BY name").Scan(context.Background(), &names); err != nil {
		t.Fatal(err)
	}
	want := migrations.For(db).Sorted()
	seen := map[string]int{}
	for _, n := range names {
		seen[n]++
	}
	for _, m := range want {
		if seen[m.Name] != 1 {
			t.Errorf("migration %s recorded %d times, want once", m.Name, seen[m.Name])
		}
	}
	if len(names) != len(want) {
		t.Errorf("bun_migrations has %d rows for %d migrations: %v", len(names), len(want), names)
	}
}

// TestSoak runs mixed traffic (login, me, refresh, mySessions, logout) from
// SOAK_WORKERS goroutines (default 8) against the real program for SOAK (a
// Go duration), then reports throughput, latency, memory and goroutines.
// Errors must be 0, and goroutines must return to where they started. It is
// skipped unless SOAK is set:
//
//	SOAK=60s go test -run TestSoak -count=1 -v .
func TestSoak(t *testing.T) {
	if os.Getenv("SOAK") == "" {
		t.Skip("soak test skipped: set SOAK to a duration to run it, e.g. SOAK=60s go test -run TestSoak -count=1 -v .")
	}
	duration, err := time.ParseDuration(os.Getenv("SOAK"))
	if err != nil || duration <= 0 {
		t.Fatalf("SOAK=%q: want a Go duration such as 60s", os.Getenv("SOAK"))
	}
	workers := 8
	if w := os.Getenv("SOAK_WORKERS"); w != "" {
		if workers, err = strconv.Atoi(w); err != nil || workers < 1 {
			t.Fatalf("SOAK_WORKERS=%q: want a positive number", w)
		}
	}

	before := settledGoroutines(0)
	url := pgtest.New(t)
	prog := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": url, "SESSION_CACHE": os.Getenv("SOAK_CACHE")})
	c := prog.WithPatience()
	emails := make([]string, workers)
	for i := range emails {
		emails[i] = fmt.Sprintf("soak%d@example.com", i)
		c.SignUp(t, emails[i])
	}

	var requests, failures atomic.Int64
	var mu sync.Mutex
	var firstErrors []string
	latencies := make([][]time.Duration, workers)
	// step makes one request and returns data.field of its answer.
	step := func(w int, field, token, query string, vars map[string]any) (testkit.Payload, bool) {
		start := time.Now()
		r, err := c.Call(token, query, vars)
		latencies[w] = append(latencies[w], time.Since(start))
		requests.Add(1)
		if err == nil && len(r.Errors) > 0 {
			err = fmt.Errorf("%s: %s", r.Code(), r.Errors[0].Message)
		}
		if err != nil {
			failures.Add(1)
			mu.Lock()
			if len(firstErrors) < 10 {
				firstErrors = append(firstErrors, fmt.Sprintf("%s: %v", field, err))
			}
			mu.Unlock()
			return testkit.Payload{}, false
		}
		var p testkit.Payload
		if raw := r.Data[field]; len(raw) > 0 && raw[0] == '{' {
			json.Unmarshal(raw, &p)
		}
		return p, true
	}
	iteration := func(w int, i int) {
		p, ok := step(w, "login", "", testkit.LoginMutation, map[string]any{"email": emails[w], "password": testkit.Password})
		if !ok {
			return
		}
		step(w, "me", p.AccessToken, testkit.MeQuery, nil)
		q, ok := step(w, "refresh", p.Refresh(), testkit.RefreshMutation, nil)
		if !ok {
			return
		}
		step(w, "me", q.AccessToken, testkit.MeQuery, nil)
		step(w, "mySessions", q.AccessToken, testkit.MySessionsQuery, nil)
		r, ok := step(w, "refresh", q.Refresh(), testkit.RefreshMutation, nil)
		if !ok {
			return
		}
		for range 3 {
			step(w, "me", r.AccessToken, testkit.MeQuery, nil)
		}
		token := r.AccessToken
		if i%2 == 1 {
			token = r.Refresh()
		}
		step(w, "logout", token, testkit.LogoutMutation, nil)
	}
	load := func(until time.Time) {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := 0; time.Now().Before(until); i++ {
					iteration(w, i)
				}
			})
		}
		wg.Wait()
	}

	load(time.Now().Add(min(duration/10, 5*time.Second))) // warm up: caches, pool, heap
	requests.Store(0)
	for w := range latencies {
		latencies[w] = latencies[w][:0]
	}
	sample := func(label string) soakSample {
		c.HTTP.CloseIdleConnections()
		s := soakSample{label: label, goroutines: settledGoroutines(0)}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		s.heap, s.sys, s.rss = m.HeapAlloc, m.Sys, vmRSS()
		t.Logf("%-6s heap %6.1f MiB  sys %6.1f MiB  rss %6.1f MiB  goroutines %d",
			label, mib(s.heap), mib(s.sys), mib(s.rss), s.goroutines)
		return s
	}
	first := sample("start")
	began := time.Now()
	end := began.Add(duration)
	for time.Now().Before(end) {
		until := time.Now().Add(10 * time.Second)
		if until.After(end) {
			until = end
		}
		load(until)
		if time.Now().Before(end) {
			sample(fmt.Sprintf("%ds", int(time.Since(began).Seconds())))
		}
	}
	elapsed := time.Since(began)
	last := sample("end")
	if err := prog.Stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	after := settledGoroutines(before)

	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[int(p*float64(len(all)-1))].Round(100 * time.Microsecond) }
	t.Logf("%d workers, %v: %d requests, %d errors, %.0f requests/s; latency p50 %v, p99 %v, max %v",
		workers, elapsed.Round(time.Second), requests.Load(), failures.Load(),
		float64(requests.Load())/elapsed.Seconds(), pct(0.50), pct(0.99), all[len(all)-1].Round(time.Millisecond))
	t.Logf("goroutines: %d before the program, %d at start, %d at end, %d after it stopped", before, first.goroutines, last.goroutines, after)
	for _, e := range firstErrors {
		t.Error(e)
	}
	if failures.Load() > 0 {
		t.Errorf("%d requests failed", failures.Load())
	}
	if last.goroutines > first.goroutines+2 || after > before+2 {
		t.Errorf("goroutines leak: %d at start, %d at end; %d before the program, %d after", first.goroutines, last.goroutines, before, after)
	}
	if last.heap > 2*first.heap+32<<20 {
		t.Errorf("heap grew from %.1f MiB to %.1f MiB", mib(first.heap), mib(last.heap))
	}
	prog.CheckLogs(t)
}

type soakSample struct {
	label          string
	heap, sys, rss uint64
	goroutines     int
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// vmRSS returns the process's resident set size from /proc/self/status, or
// 0 where there is no such file.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// settledGoroutines waits up to 5 s for the goroutine count to come down to
// target (0: until it stops falling) and returns it.
func settledGoroutines(target int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		m := runtime.NumGoroutine()
		if target > 0 && m <= target || target == 0 && m >= n {
			return m
		}
		n = m
	}
	return n
}
