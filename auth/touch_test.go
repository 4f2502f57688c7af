package auth

import (
	"context"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/testkit"
	"github.com/example/sessionauth/models"
)

// backdateUse moves session id's lastUsedAt ago into the past and returns
// the stored value.
func backdateUse(tb testing.TB, s *Service, id string, ago time.Duration) time.Time {
	tb.Helper()
	then, arg := s.dialect.NowMinus(ago)
	if _, err := s.db.NewUpdate().Model((*models.Session)(nil)).Set("last_used_at = "+then, arg).Where("id = ?", id).Exec(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return loadSession(tb, s, id).LastUsedAt
}

// TestLastUsedAtQueued: while a flusher runs, a request due a lastUsedAt
// write queues it instead of writing, and the flush writes it; without one,
// the request writes it itself. A flush that fails keeps the queue.
func TestLastUsedAtQueued(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	is := signUp(t, s, "queue@example.com")
	id := is.Session.ID
	moved := func(since time.Time) bool { return loadSession(t, s, id).LastUsedAt.Sub(since) >= time.Minute }

	t.Run("WithoutFlusherInTheRequest", func(t *testing.T) {
		old := backdateUse(t, s, id, 2*time.Minute)
		authenticate(t, s, is.AccessToken)
		if !moved(old) {
			t.Fatal("lastUsedAt not written by the request, with no flusher running")
		}
	})

	s.touches.setFlushing(true) // as RunHousekeeping does, without its timer
	defer s.touches.setFlushing(false)
	t.Run("QueuedThenFlushed", func(t *testing.T) {
		old := backdateUse(t, s, id, 2*time.Minute)
		who := authenticate(t, s, is.AccessToken)
		if moved(old) {
			t.Fatal("lastUsedAt written in the request although a flusher runs")
		}
		if who.Now.Sub(who.Session.LastUsedAt) > time.Second {
			t.Fatalf("the identity's lastUsedAt %v not moved to its now %v", who.Session.LastUsedAt, who.Now)
		}
		if err := s.flushTouches(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !moved(old) {
			t.Fatal("lastUsedAt not written by the flush")
		}
	})
	t.Run("FailedFlushKeepsTheQueue", func(t *testing.T) {
		old := backdateUse(t, s, id, 2*time.Minute)
		authenticate(t, s, is.AccessToken)
		dead, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.flushTouches(dead); err == nil {
			t.Fatal("a flush with an ended context reported success")
		}
		if moved(old) {
			t.Fatal("lastUsedAt written by a failed flush")
		}
		if err := s.flushTouches(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !moved(old) {
			t.Fatal("the session of a failed flush was not written by the next")
		}
	})
	t.Run("FirstUseOfARotatedPairIsNeverQueued", func(t *testing.T) {
		next := refresh(t, s, is.RefreshToken)
		authenticate(t, s, next.AccessToken)
		if !loadSession(t, s, id).SuccessorUsed {
			t.Fatal("the first use of the rotated pair was not recorded in the request")
		}
		is = next
	})
}

// TestRunTouchesFlushesAtShutdown: what is queued when RunHousekeeping's
// context ends is written before it returns.
func TestRunTouchesFlushesAtShutdown(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	is := signUp(t, s, "shutdown@example.com")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.RunHousekeeping(ctx, time.Hour)
	}()
	testkit.Eventually(t, "the lastUsedAt flusher to start", func() bool {
		s.touches.mu.Lock()
		defer s.touches.mu.Unlock()
		return s.touches.flusher > 0
	})
	old := backdateUse(t, s, is.Session.ID, 2*time.Minute)
	authenticate(t, s, is.AccessToken)
	cancel()
	<-done
	if got := loadSession(t, s, is.Session.ID).LastUsedAt; got.Sub(old) < time.Minute {
		t.Fatalf("lastUsedAt %v after shutdown, was %v: the queue was not flushed", got, old)
	}
}
