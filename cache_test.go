package main

import (
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
)

// twoCachingInstances starts two handlers with the session cache on over one
// database and waits until both listeners are up.
func twoCachingInstances(t *testing.T, edit func(*config)) (a, b *testServer) {
	t.Helper()
	if pgtest.SQLite() {
		t.Skip("the session cache and its LISTEN/NOTIFY invalidation exist on PostgreSQL only; one SQLite process reads its file directly")
	}
	url := pgtest.New(t)
	a = newTestServerOn(t, url, edit)
	b = newTestServerOn(t, url, edit)
	waitFor(t, "both caches on", func() bool { return a.svc.CacheLive() && b.svc.CacheLive() })
	return a, b
}

// warm makes both instances cache token's identity.
func warm(t *testing.T, token string, servers ...*testServer) {
	t.Helper()
	for _, s := range servers {
		for range 2 {
			wantOK(t, s.post(t, token, meQuery, nil))
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
		p := a.signUp(t, "logout@example.com")
		warm(t, p.AccessToken, a, b)
		wantOK(t, a.post(t, p.AccessToken, logoutMutation, nil))
		wantCode(t, b.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
		wantCode(t, a.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	})
	t.Run("RefreshKillsOldAccessToken", func(t *testing.T) {
		p := a.signUp(t, "rotate@example.com")
		warm(t, p.AccessToken, a, b)
		n := b.refresh(t, p.refresh())
		wantCode(t, a.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
		wantCode(t, b.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
		wantOK(t, a.post(t, n.AccessToken, meQuery, nil))
	})
	t.Run("RevokeSession", func(t *testing.T) {
		p := a.signUp(t, "revoke@example.com")
		q := a.login(t, "revoke@example.com")
		warm(t, q.AccessToken, a, b)
		wantOK(t, a.post(t, p.AccessToken, revokeMutation, map[string]any{"id": q.Session.ID}))
		wantCode(t, b.post(t, q.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	})
	t.Run("RevokeOtherSessions", func(t *testing.T) {
		p := a.signUp(t, "others@example.com")
		q := a.login(t, "others@example.com")
		warm(t, q.AccessToken, a, b)
		wantOK(t, b.post(t, p.AccessToken, revokeOthersMutaion, nil))
		wantCode(t, a.post(t, q.AccessToken, meQuery, nil), "UNAUTHENTICATED")
		wantOK(t, a.post(t, p.AccessToken, meQuery, nil))
	})
	t.Run("ChangePassword", func(t *testing.T) {
		p := a.signUp(t, "pw@example.com")
		q := a.login(t, "pw@example.com")
		warm(t, q.AccessToken, a, b)
		wantOK(t, a.post(t, p.AccessToken, changePassword, map[string]any{"cur": testPassword, "new": "another fine password"}))
		wantCode(t, b.post(t, q.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	})
	t.Run("ReplayDetection", func(t *testing.T) {
		p := a.signUp(t, "replay@example.com")
		n := a.refresh(t, p.refresh())
		warm(t, n.AccessToken, a, b)
		wantCode(t, b.post(t, p.refresh(), refreshMutation, nil), "REFRESH_TOKEN_REUSED")
		wantCode(t, a.post(t, n.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	})
	t.Run("OperatorCommand", func(t *testing.T) {
		p := a.signUp(t, "incident@example.com")
		warm(t, p.AccessToken, a, b)
		if _, err := a.svc.RevokeUserSessions(ctxT(t), "incident@example.com"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, b.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	})
}

// TestCacheHitReadsNoDatabase hides the sessions table: a cached identity is
// still served (no query on the hot path), one not cached is not.
func TestCacheHitReadsNoDatabase(t *testing.T) {
	t.Parallel()
	a, _ := twoCachingInstances(t, nil)
	hot := a.signUp(t, "hot@example.com")
	cold := a.signUp(t, "cold@example.com")
	warm(t, hot.AccessToken, a)

	a.exec(t, "ALTER TABLE sessions RENAME TO sessions_hidden")
	wantOK(t, a.post(t, hot.AccessToken, meQuery, nil))
	wantCode(t, a.post(t, cold.AccessToken, meQuery, nil), "INTERNAL")
	a.exec(t, "ALTER TABLE sessions_hidden RENAME TO sessions")
	wantOK(t, a.post(t, cold.AccessToken, meQuery, nil))
}

// TestCacheDistrustedWhileListenerIsDown cuts the network between one
// instance and the database: its listener drops, and from then on it serves
// no cached identity (answering SERVICE_UNAVAILABLE rather than a possibly
// revoked session), misses the revocation made meanwhile by another
// instance, and yet refuses the revoked token once the network is back.
func TestCacheDistrustedWhileListenerIsDown(t *testing.T) {
	t.Parallel()
	viaProxy, direct, proxy := proxiedDatabase(t)
	a := newTestServerOn(t, direct, nil)
	b := newTestServerOn(t, viaProxy, nil)
	waitFor(t, "both caches on", func() bool { return a.svc.CacheLive() && b.svc.CacheLive() })
	p := a.signUp(t, "partitioned@example.com")
	warm(t, p.AccessToken, b)

	proxy.Refuse()
	proxy.Cut()
	waitFor(t, "b's cache off", func() bool { return !b.svc.CacheLive() })
	wantCode(t, b.post(t, p.AccessToken, meQuery, nil), "SERVICE_UNAVAILABLE")
	wantOK(t, a.post(t, p.AccessToken, logoutMutation, nil)) // b cannot hear of it

	proxy.Restore()
	wantCode(t, b.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	waitFor(t, "b's cache back", b.svc.CacheLive)
	wantCode(t, b.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
