package auth

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

// listeningService is a Service with its session cache on (so its
// listener) over a fresh database, once the cache is trusted, and the
// database's URL.
func listeningService(t *testing.T) (*Service, string) {
	t.Helper()
	pgtest.PostgresOnly(t, "LISTEN/NOTIFY and the session cache exist on PostgreSQL only")
	url := pgtest.New(t)
	s := newTestServiceOn(t, url, nil)
	s.EnableCache(t.Context(), url)
	testkit.Eventually(t, "cache live", s.CacheLive)
	return s, url
}

// TestOwnRevocationsAnnouncedAfterCommit: with the cache on, a logout (and
// every revocation the server makes) NOTIFYs nothing from its transaction,
// so its commit can share a WAL flush with others; the instance's heartbeat
// carries the ended session and the user whose events were recorded. A
// revocation by anyone else (an operator's SQL) is still NOTIFYed by the
// trigger.
func TestOwnRevocationsAnnouncedAfterCommit(t *testing.T) {
	s, url := listeningService(t)
	ctx := t.Context()
	l, err := database.Listen(ctx, url, invalidationChannel, eventStreamChannel)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// next returns the notifications up to the first for which stop is
	// true, which it includes.
	next := func(what string, stop func(database.Notification) bool) []database.Notification {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var seen []database.Notification
		for {
			n, err := l.WaitForNotification(wctx)
			if err != nil {
				t.Fatalf("waiting for %s: %v (seen %v)", what, err, seen)
			}
			seen = append(seen, n)
			if stop(n) {
				return seen
			}
		}
	}
	fence := func() {
		t.Helper()
		if _, err := s.db.ExecContext(ctx, "SELECT pg_notify(?, 'fence')", invalidationChannel); err != nil {
			t.Fatal(err)
		}
		next("the fence", func(n database.Notification) bool { return n.Payload == "fence" })
	}

	p := signUp(t, s, "quiet@example.com")
	other := signUp(t, s, "loud@example.com")
	fence()
	if err := s.Logout(ctx, p.AccessToken); err != nil {
		t.Fatal(err)
	}
	seen := next("a heartbeat carrying the logout", func(n database.Notification) bool {
		f := strings.Split(n.Payload, "|")
		return len(f) == 8 && f[0] == "h" && strings.Contains(f[5], p.Session.ID)
	})
	for _, n := range seen[:len(seen)-1] {
		if n.Channel == eventStreamChannel || strings.HasPrefix(n.Payload, "s:") || strings.HasPrefix(n.Payload, "u:") {
			t.Fatalf("the logout's transaction NOTIFYed %s %q", n.Channel, n.Payload)
		}
	}
	if f := strings.Split(seen[len(seen)-1].Payload, "|"); f[7] != p.User.ID {
		t.Fatalf("heartbeat %q does not name the user whose SIGNED_OUT was recorded", seen[len(seen)-1].Payload)
	}

	_, err = s.db.ExecContext(ctx, "UPDATE sessions SET revoked_at = now() WHERE id = ?", other.Session.ID)
	if err != nil {
		t.Fatal(err)
	}
	next("the trigger's notification of an operator's revocation", func(n database.Notification) bool {
		return n.Payload == "s:"+other.Session.ID
	})
}

// TestRetriedLogoutAnnouncesAgain: a logout of a session ended moments ago
// (a retry whose first attempt's instance may have died between its commit
// and its heartbeat) answers UNAUTHENTICATED and announces the end again.
func TestRetriedLogoutAnnouncesAgain(t *testing.T) {
	s, url := listeningService(t)
	ctx := t.Context()
	p := signUp(t, s, "retry@example.com")
	endUnannounced(t, s, p.Session.ID)
	l, err := database.Listen(ctx, url, invalidationChannel)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := s.Logout(ctx, p.AccessToken); ErrorCode(err) != CodeUnauthenticated {
		t.Fatalf("logout of an ended session: %v, want UNAUTHENTICATED", err)
	}
	awaitAnnounced(t, l, p.Session.ID)
}

// TestRetriedRevokeSessionAnnouncesAgain: revokeSession of a session that
// ended recently (as by an instance that died before its heartbeat) still
// answers NOT_FOUND, and announces the end again; one that never
// existed, or belongs to another user, announces nothing.
func TestRetriedRevokeSessionAnnouncesAgain(t *testing.T) {
	s, url := listeningService(t)
	ctx := t.Context()
	me := signUp(t, s, "revoker@example.com")
	device := newSession(t, s, me.User)
	other := signUp(t, s, "other@example.com")
	endUnannounced(t, s, device.Session.ID)
	endUnannounced(t, s, other.Session.ID)
	who := authenticate(t, s, me.AccessToken)
	l, err := database.Listen(ctx, url, invalidationChannel)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, id := range []string{other.Session.ID, "00000000-0000-4000-8000-000000000000", device.Session.ID} {
		if err := s.RevokeSession(ctx, who, id); ErrorCode(err) != CodeNotFound {
			t.Fatalf("revokeSession(%s): %v, want NOT_FOUND", id, err)
		}
	}
	// In commit order: the first heartbeat naming a session names ours.
	awaitAnnounced(t, l, device.Session.ID)
}

// endUnannounced ends session id as an instance would that died before the
// heartbeat announcing it.
func endUnannounced(t *testing.T, s *Service, id string) {
	t.Helper()
	err := s.db.RunInTx(t.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		ctx, _, err := s.announcing(ctx, tx)
		if err != nil {
			return err
		}
		return s.revokeSession(ctx, tx, id)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// awaitAnnounced waits on l for the first heartbeat that names an ended
// session, and fails unless it names session.
func awaitAnnounced(t *testing.T, l *database.Listener, session string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for {
		n, err := l.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("no heartbeat announced the ended session again: %v", err)
		}
		if f := strings.Split(n.Payload, "|"); len(f) == 8 && f[5] != "" {
			if f[5] != session {
				t.Fatalf("the heartbeat announced %q, want %q", f[5], session)
			}
			return
		}
	}
}

// TestSilentInstanceDropsCache: an instance that dies between a revocation's
// commit and its heartbeat announces nothing, and no client retries. Once
// its heartbeats have stopped for peerSilence, the instances that saw them
// drop their caches, so the ended session's token is refused there too,
// within seconds rather than cacheTTL. While it heartbeats, nothing is
// dropped.
func TestSilentInstanceDropsCache(t *testing.T) {
	s, _ := listeningService(t)
	ctx := t.Context()
	c := s.cache
	cached := func(token string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.entries[string(hashToken(token))]
		return ok
	}
	kept := signUp(t, s, "kept@example.com")
	ended := signUp(t, s, "ended@example.com")

	// "ghost": another instance's heartbeats, with nothing to announce.
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for seq := 1; ; seq++ {
			payload := fmt.Sprintf("h|ghost|%d|0||||", seq)
			if _, err := s.db.ExecContext(ctx, "SELECT pg_notify(?, ?)", invalidationChannel, payload); err != nil {
				t.Errorf("ghost's heartbeat: %v", err)
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(heartbeatEvery):
			}
		}
	}()
	testkit.Eventually(t, "the ghost's heartbeats seen", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.peers["ghost"] != nil
	})
	authenticate(t, s, kept.AccessToken)
	authenticate(t, s, ended.AccessToken)
	time.Sleep(peerSilence + 2*heartbeatEvery)
	if !cached(kept.AccessToken) || !cached(ended.AccessToken) {
		t.Fatal("entries dropped while the other instance kept heartbeating")
	}

	// The ghost ends the session, and dies before its heartbeat.
	endUnannounced(t, s, ended.Session.ID)
	close(stop)
	<-stopped
	died := time.Now()
	if _, err := s.authenticateAccess(ctx, ended.AccessToken); err != nil {
		t.Fatalf("the token of the unannounced end was refused at once (%v): the test shows nothing", err)
	}
	testkit.Eventually(t, "the ended session's token refused", func() bool {
		_, err := s.authenticateAccess(ctx, ended.AccessToken)
		return ErrorCode(err) == CodeUnauthenticated
	})
	t.Logf("refused %v after the ghost's last heartbeat (peerSilence %v)", time.Since(died).Round(10*time.Millisecond), peerSilence)
	c.mu.Lock()
	_, known := c.peers["ghost"]
	c.mu.Unlock()
	if known {
		t.Fatal("the silent instance is still listed as a peer")
	}
	if id := authenticate(t, s, kept.AccessToken); id.Session.ID != kept.Session.ID {
		t.Fatalf("the live session authenticated as %s", id.Session.ID)
	}
}
