package main

// Reliability (issue 5), cuts: the real program, run(), while a TCP proxy
// cuts its connections to PostgreSQL at random points or at each point of
// an operation's database conversation. See outage_test.go.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/tcpproxy"
	"github.com/example/sessionauth/internal/testkit"
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
