package api

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

// twoCachingInstances starts two handlers with the session cache on over one
// database and waits until both listeners are up.
func twoCachingInstances(t *testing.T, edit func(*config)) (a, b *testServer) {
	t.Helper()
	pgtest.PostgresOnly(t, "the session cache and its LISTEN/NOTIFY invalidation exist on PostgreSQL only; one SQLite process reads its file directly")
	url := pgtest.New(t)
	a = newTestServerOn(t, url, edit)
	b = newTestServerOn(t, url, edit)
	testkit.Eventually(t, "both caches on", func() bool { return a.svc.CacheLive() && b.svc.CacheLive() })
	return a, b
}

// warm makes both instances cache token's identity.
func warm(t *testing.T, token string, servers ...*testServer) {
	t.Helper()
	for _, s := range servers {
		for range 2 {
			testkit.WantOK(t, s.Post(t, token, testkit.MeQuery, nil))
		}
	}
}

// TestCacheRevocationIsInstantOnEveryInstance ends sessions on one instance
// and expects the other's very next request to refuse them, although both
// had the identity cached.
func TestCacheRevocationIsInstantOnEveryInstance(t *testing.T) {
	t.Parallel()
	a, b := twoCachingInstances(t, func(c *config) { c.Auth.ReuseWindow = 0 })

	t.Run("Logout", func(t *testing.T) {
		p := a.SignUp(t, "logout@example.com")
		warm(t, p.AccessToken, a, b)
		testkit.WantOK(t, a.Post(t, p.AccessToken, testkit.LogoutMutation, nil))
		testkit.WantCode(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, a.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	})
	t.Run("RefreshKillsOldAccessToken", func(t *testing.T) {
		p := a.SignUp(t, "rotate@example.com")
		warm(t, p.AccessToken, a, b)
		n := b.Refresh(t, p.Refresh())
		testkit.WantCode(t, a.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
		testkit.WantOK(t, a.Post(t, n.AccessToken, testkit.MeQuery, nil))
	})
	t.Run("RevokeSession", func(t *testing.T) {
		p := a.SignUp(t, "revoke@example.com")
		q := a.Login(t, "revoke@example.com", testkit.Password)
		warm(t, q.AccessToken, a, b)
		testkit.WantOK(t, a.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}))
		testkit.WantCode(t, b.Post(t, q.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	})
	t.Run("RevokeOtherSessions", func(t *testing.T) {
		p := a.SignUp(t, "others@example.com")
		q := a.Login(t, "others@example.com", testkit.Password)
		warm(t, q.AccessToken, a, b)
		testkit.WantOK(t, b.Post(t, p.AccessToken, testkit.RevokeOthersMutation, nil))
		testkit.WantCode(t, a.Post(t, q.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
		testkit.WantOK(t, a.Post(t, p.AccessToken, testkit.MeQuery, nil))
	})
	t.Run("ChangePassword", func(t *testing.T) {
		p := a.SignUp(t, "pw@example.com")
		q := a.Login(t, "pw@example.com", testkit.Password)
		warm(t, q.AccessToken, a, b)
		testkit.WantOK(t, a.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "another fine password"}))
		testkit.WantCode(t, b.Post(t, q.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	})
	t.Run("ReplayDetection", func(t *testing.T) {
		p := a.SignUp(t, "replay@example.com")
		n := a.Refresh(t, p.Refresh())
		warm(t, n.AccessToken, a, b)
		testkit.WantCode(t, b.Post(t, p.Refresh(), testkit.RefreshMutation, nil), "REFRESH_TOKEN_REUSED")
		testkit.WantCode(t, a.Post(t, n.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	})
	t.Run("DeleteMyAccount", func(t *testing.T) {
		p := a.SignUp(t, "gone@example.com")
		q := a.Login(t, "gone@example.com", testkit.Password)
		warm(t, q.AccessToken, a, b)
		testkit.WantOK(t, a.Post(t, p.AccessToken, deleteMutation, map[string]any{"pw": testkit.Password}))
		testkit.WantCode(t, b.Post(t, q.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	})
	t.Run("OperatorCommand", func(t *testing.T) {
		p := a.SignUp(t, "incident@example.com")
		warm(t, p.AccessToken, a, b)
		if _, err := a.svc.RevokeUserSessions(testkit.Context(t), "incident@example.com"); err != nil {
			t.Fatal(err)
		}
		testkit.WantCode(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	})
}

// TestCacheHitReadsNoDatabase hides the sessions table: a cached identity is
// still served (no query on the hot path), one not cached is not.
func TestCacheHitReadsNoDatabase(t *testing.T) {
	t.Parallel()
	a, _ := twoCachingInstances(t, nil)
	hot := a.SignUp(t, "hot@example.com")
	cold := a.SignUp(t, "cold@example.com")
	warm(t, hot.AccessToken, a)

	a.exec(t, "ALTER TABLE sessions RENAME TO sessions_hidden")
	testkit.WantOK(t, a.Post(t, hot.AccessToken, testkit.MeQuery, nil))
	testkit.WantCode(t, a.Post(t, cold.AccessToken, testkit.MeQuery, nil), "INTERNAL")
	a.exec(t, "ALTER TABLE sessions_hidden RENAME TO sessions")
	testkit.WantOK(t, a.Post(t, cold.AccessToken, testkit.MeQuery, nil))
}

// TestCacheDistrustedWhileListenerIsDown cuts the network between one
// instance and the database: its listener drops, and from then on it serves
// no cached identity (answering SERVICE_UNAVAILABLE rather than a possibly
// revoked session), misses the revocation made meanwhile by another
// instance, and yet refuses the revoked token once the network is back.
func TestCacheDistrustedWhileListenerIsDown(t *testing.T) {
	t.Parallel()
	viaProxy, direct, proxy := testkit.ProxiedDatabase(t)
	a := newTestServerOn(t, direct, nil)
	b := newTestServerOn(t, viaProxy, nil)
	testkit.Eventually(t, "both caches on", func() bool { return a.svc.CacheLive() && b.svc.CacheLive() })
	p := a.SignUp(t, "partitioned@example.com")
	warm(t, p.AccessToken, b)

	proxy.Refuse()
	proxy.Cut()
	testkit.Eventually(t, "b's cache off", func() bool { return !b.svc.CacheLive() })
	testkit.WantCode(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil), "SERVICE_UNAVAILABLE")
	testkit.WantOK(t, a.Post(t, p.AccessToken, testkit.LogoutMutation, nil)) // b cannot hear of it

	proxy.Restore()
	testkit.WantCode(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.Eventually(t, "b's cache back", b.svc.CacheLive)
	testkit.WantCode(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
}

// cachingViaProxy starts an instance whose pool talks to the database
// directly but whose LISTEN connection goes through proxy, so that the proxy
// stalls or cuts the invalidation stream and nothing else.
func cachingViaProxy(t *testing.T, direct, viaProxy string, logs *testkit.SyncBuffer, edit func(*config)) *testServer {
	t.Helper()
	s := newLoggedTestServer(t, direct, func(c *config) {
		if edit != nil {
			edit(c)
		}
		c.SessionCache = false
	}, logs)
	s.svc.EnableCache(t.Context(), viaProxy)
	return s
}

// TestCacheStalledListener stalls one instance's LISTEN connection (open,
// but delivering nothing, as behind a wedged middlebox): a logout on the
// other instance returns within the lease bound and the stalled instance
// refuses the token at once, serving from the database meanwhile; when the
// stall ends it notices, reconnects and trusts its cache again.
func TestCacheStalledListener(t *testing.T) {
	t.Parallel()
	viaProxy, direct, proxy := testkit.ProxiedDatabase(t)
	var logs testkit.SyncBuffer
	a := newTestServerOn(t, direct, nil)
	b := cachingViaProxy(t, direct, viaProxy, &logs, nil)
	testkit.Eventually(t, "both caches on", func() bool { return a.svc.CacheLive() && b.svc.CacheLive() })
	p := a.SignUp(t, "stalled@example.com")
	q := a.Login(t, "stalled@example.com", testkit.Password)
	warm(t, p.AccessToken, a, b)
	warm(t, q.AccessToken, a, b)

	proxy.Stall()
	start := time.Now()
	testkit.WantOK(t, a.Post(t, p.AccessToken, testkit.LogoutMutation, nil))
	// Liveness, not speed: the logout waits for b at most the lease (1 s)
	// plus margin, never for b's acknowledgement.
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("logout took %v with one listener stalled", took)
	}
	testkit.WantCode(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantCode(t, a.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	if b.svc.CacheLive() {
		t.Error("b still trusts its cache after a revocation it cannot have heard of")
	}
	testkit.WantOK(t, b.Post(t, q.AccessToken, testkit.MeQuery, nil)) // from the database
	if proxy.Stats().Dropped == 0 {
		t.Fatal("the proxy dropped nothing: the stall was not exercised")
	}
	testkit.Eventually(t, "b to log that it distrusts its cache", func() bool {
		return strings.Contains(logs.String(), "no heartbeat came back within the lease")
	})

	proxy.Restore()
	testkit.Eventually(t, "b's cache back", b.svc.CacheLive)
	warm(t, q.AccessToken, b)
	testkit.WantOK(t, a.Post(t, q.AccessToken, testkit.LogoutMutation, nil))
	testkit.WantCode(t, b.Post(t, q.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
}

// TestCacheRevocationRacesWhileHeartbeatsAreLost runs refreshes, concurrent
// refreshes of one token on both instances, replays, logouts and
// revocations across two instances while one instance's invalidation stream
// is repeatedly stalled (heartbeats and invalidations lost) and cut. After
// every revoking request has returned, neither instance may accept what it
// revoked.
func TestCacheRevocationRacesWhileHeartbeatsAreLost(t *testing.T) {
	t.Parallel()
	viaProxy, direct, proxy := testkit.ProxiedDatabase(t)
	noGrace := func(c *config) { c.Auth.ReuseWindow = 0 }
	a := newTestServerOn(t, direct, noGrace)
	b := cachingViaProxy(t, direct, viaProxy, &testkit.SyncBuffer{}, noGrace)
	testkit.Eventually(t, "both caches on", func() bool { return a.svc.CacheLive() && b.svc.CacheLive() })

	ctx, stop := context.WithCancel(t.Context())
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		for ctx.Err() == nil {
			sleepCtx(ctx, 250*time.Millisecond)
			proxy.Stall()
			sleepCtx(ctx, 400*time.Millisecond)
			proxy.Cut() // the watchdog would take 3 s; a cut reconnects at once
			proxy.Restore()
		}
	}()
	servers := [2]*testServer{a, b}
	t.Run("group", func(t *testing.T) {
		for i := range 2 {
			x, y := servers[i%2], servers[1-i%2]
			email := func(what string) string { return fmt.Sprintf("%s%d@example.com", what, i) }
			t.Run(fmt.Sprintf("Refresh%d", i), func(t *testing.T) {
				t.Parallel()
				p := x.SignUp(t, email("refresh"))
				warm(t, p.AccessToken, a, b)
				n := y.Refresh(t, p.Refresh())
				testkit.WantCode(t, x.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
				testkit.WantCode(t, y.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
				testkit.WantOK(t, x.Post(t, n.AccessToken, testkit.MeQuery, nil))
			})
			t.Run(fmt.Sprintf("ConcurrentRefresh%d", i), func(t *testing.T) {
				t.Parallel()
				p := x.SignUp(t, email("concurrent"))
				warm(t, p.AccessToken, a, b)
				var got [2]testkit.Response
				var errs [2]error
				var wg sync.WaitGroup
				for k, s := range servers {
					wg.Go(func() { got[k], errs[k] = s.Call(p.Refresh(), testkit.RefreshMutation, nil) })
				}
				wg.Wait()
				var pairs [2]testkit.Payload
				for k := range got {
					if errs[k] != nil {
						t.Fatal(errs[k])
					}
					got[k].Field(t, "refresh", &pairs[k])
				}
				if pairs[0].AccessToken != pairs[1].AccessToken {
					t.Fatal("two concurrent refreshes of one token got different pairs")
				}
				testkit.WantCode(t, a.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
				testkit.WantCode(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
			})
			t.Run(fmt.Sprintf("Replay%d", i), func(t *testing.T) {
				t.Parallel()
				p := x.SignUp(t, email("replay"))
				n := x.Refresh(t, p.Refresh())
				warm(t, n.AccessToken, a, b) // marks the pair used: the old token is now a replay
				testkit.WantCode(t, y.Post(t, p.Refresh(), testkit.RefreshMutation, nil), "REFRESH_TOKEN_REUSED")
				testkit.WantCode(t, x.Post(t, n.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
				testkit.WantCode(t, y.Post(t, n.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
			})
			t.Run(fmt.Sprintf("Logout%d", i), func(t *testing.T) {
				t.Parallel()
				p := x.SignUp(t, email("logout"))
				warm(t, p.AccessToken, a, b)
				testkit.WantOK(t, x.Post(t, p.AccessToken, testkit.LogoutMutation, nil))
				testkit.WantCode(t, y.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
			})
			t.Run(fmt.Sprintf("RevokeOthers%d", i), func(t *testing.T) {
				t.Parallel()
				p := x.SignUp(t, email("others"))
				q := y.Login(t, email("others"), testkit.Password)
				warm(t, q.AccessToken, a, b)
				testkit.WantOK(t, x.Post(t, p.AccessToken, testkit.RevokeOthersMutation, nil))
				testkit.WantCode(t, y.Post(t, q.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
				testkit.WantCode(t, x.Post(t, q.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
			})
		}
	})
	stop()
	<-chaosDone
	if st := proxy.Stats(); st.Dropped == 0 || st.Cuts == 0 {
		t.Fatalf("proxy %+v: the stalls and cuts were not exercised", st)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
