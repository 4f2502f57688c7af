package auth

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
	"github.com/example/sessionauth/models"
)

// instances returns two services over one database: on PostgreSQL two
// instances, each with its session cache (so its invalidation listener); on
// SQLite the same process twice over one file is not a deployment, so the
// same service twice.
func instances(t *testing.T) (a, b *Service) {
	t.Helper()
	if pgtest.SQLite() {
		s := newTestService(t, testConfig)
		return s, s
	}
	url := pgtest.New(t)
	a = newTestServiceOn(t, url, nil)
	b = newTestServiceOn(t, url, a.hasher)
	a.EnableCache(t.Context(), url)
	b.EnableCache(t.Context(), url)
	testkit.Eventually(t, "both caches live", func() bool { return a.CacheLive() && b.CacheLive() })
	return a, b
}

func wantEnd(t *testing.T, ch <-chan EndReason, want EndReason, within time.Duration) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("watch ended with %v, want %v", got, want)
		}
	case <-time.After(within):
		t.Fatalf("watch did not end with %v within %v", want, within)
	}
}

func wantNoEnd(t *testing.T, ch <-chan EndReason) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("watch ended with %v, want it alive", got)
	case <-time.After(700 * time.Millisecond): // past a poll
	}
}

func TestWatchSession(t *testing.T) {
	a, b := instances(t)
	ctx := t.Context()
	first := signUp(t, a, "watch@example.com")
	watch := func(t *testing.T, token string) <-chan EndReason {
		id := authenticate(t, b, token)
		wctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		return b.WatchSession(wctx, id)
	}
	t.Run("Alive", func(t *testing.T) {
		wantNoEnd(t, watch(t, first.AccessToken))
	})
	t.Run("RevokedElsewhere", func(t *testing.T) {
		is := newSession(t, a, first.User)
		ch := watch(t, is.AccessToken)
		who := authenticate(t, a, first.AccessToken)
		if err := a.RevokeSession(ctx, who, is.Session.ID); err != nil {
			t.Fatal(err)
		}
		wantEnd(t, ch, SessionEnded, time.Second)
	})
	t.Run("LogoutElsewhere", func(t *testing.T) {
		is := newSession(t, a, first.User)
		ch := watch(t, is.AccessToken)
		if err := a.Logout(ctx, is.RefreshToken); err != nil {
			t.Fatal(err)
		}
		wantEnd(t, ch, SessionEnded, time.Second)
	})
	t.Run("RefreshedElsewhere", func(t *testing.T) {
		is := newSession(t, a, first.User)
		ch := watch(t, is.AccessToken)
		refresh(t, a, is.RefreshToken)
		wantEnd(t, ch, TokenExpired, time.Second)
	})
	t.Run("OperatorSQL", func(t *testing.T) {
		// Another process's SQL (the revoke-sessions command on SQLite):
		// no in-process signal, found by the poll (or the trigger).
		is := newSession(t, a, first.User)
		ch := watch(t, is.AccessToken)
		_, err := a.db.NewUpdate().Table("sessions").Set("revoked_at = "+a.dialect.Now).Where("id = ?", is.Session.ID).Exec(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantEnd(t, ch, SessionEnded, time.Second)
	})
	t.Run("Expiry", func(t *testing.T) {
		c := withConfig(b, Config{AccessTTL: 1500 * time.Millisecond, RefreshTTL: time.Hour, AllowSignUp: true})
		is := newSession(t, c, first.User)
		id := authenticate(t, c, is.AccessToken)
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wantEnd(t, c.WatchSession(wctx, id), TokenExpired, 3*time.Second)
	})
	t.Run("EndedContextSendsNothing", func(t *testing.T) {
		is := newSession(t, a, first.User)
		id := authenticate(t, b, is.AccessToken)
		wctx, cancel := context.WithCancel(ctx)
		ch := b.WatchSession(wctx, id)
		cancel()
		testkit.Eventually(t, "b to watch at most one session", func() bool { return b.Watched() <= 1 }) // Alive's may remain until its cleanup
		who := authenticate(t, a, first.AccessToken)
		if err := a.RevokeSession(ctx, who, is.Session.ID); err != nil {
			t.Fatal(err)
		}
		wantNoEnd(t, ch)
	})
}

// TestWatchUnverifiable: when the database cannot be read to check a
// watched session, the watch ends with Unverifiable (the connection closes
// with 4503), never with SESSION_ENDED.
func TestWatchUnverifiable(t *testing.T) {
	s := newTestService(t, testConfig)
	is := signUp(t, s, "dark@example.com")
	id := authenticate(t, s, is.AccessToken)
	ch := s.WatchSession(t.Context(), id)
	wantNoEnd(t, ch)
	s.db.Close() // every read fails from now on
	s.changedHere()
	if s.CacheLive() {
		t.Fatal("no cache expected")
	}
	wantEnd(t, ch, Unverifiable, 2*time.Second)
}

// TestSecurityEventStream: events recorded on any instance reach the
// account's streams, only the account's, and a drain sends what is left.
func TestSecurityEventStream(t *testing.T) {
	a, b := instances(t)
	ctx := t.Context()
	ann := signUp(t, a, "ann@example.com")
	bob := signUp(t, a, "bob@example.com")
	who := authenticate(t, b, ann.AccessToken)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := SecurityEventStream(sctx, b, who, func(e *models.SecurityEvent) *models.SecurityEvent { return e })
	time.Sleep(50 * time.Millisecond)

	record := func(user *models.User, kind EventKind) {
		t.Helper()
		err := a.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return a.recordEvent(ctx, tx, Event{Kind: kind, UserID: user.ID})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	record(bob.User, EventSessionRenamed) // not Ann's
	record(ann.User, EventSessionRenamed)
	select {
	case e := <-events:
		if e.UserID != ann.User.ID || e.Kind != string(EventSessionRenamed) {
			t.Fatalf("got %+v, want Ann's SESSION_RENAMED", e)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no event within 2s")
	}

	// A logout on the other instance: with the cache on, its event is
	// announced by that instance's heartbeat, not by its transaction.
	other := newSession(t, a, ann.User)
	if err := a.Logout(ctx, other.AccessToken); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		if e.Kind != string(EventSignedOut) || e.SessionID == nil || *e.SessionID != other.Session.ID {
			t.Fatalf("got %+v, want the other session's SIGNED_OUT", e)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no SIGNED_OUT within 2s")
	}

	// A rolled-back change announces nothing that exists.
	_ = a.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := a.recordEvent(ctx, tx, Event{Kind: EventPasswordChanged, UserID: ann.User.ID}); err != nil {
			return err
		}
		return context.Canceled
	})
	select {
	case e := <-events:
		t.Fatalf("got %+v from a rolled-back transaction", e)
	case <-time.After(300 * time.Millisecond):
	}
}
