package auth

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/models"
)

// A sealed pair is kept exactly while a retry may ask for it (see sealPair):
// these tests pin both sides, that it is there whenever the idempotence
// promise needs it, and gone soon after.

func sealsOf(t *testing.T, s *Service, sessionID string) (prev bool, retired int) {
	t.Helper()
	sess := loadSession(t, s, sessionID)
	n, err := s.db.NewSelect().Model((*models.RetiredRefreshToken)(nil)).
		Where("session_id = ? AND sealed IS NOT NULL", sessionID).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return sess.PrevSealed != nil, int(n)
}

func eraseSeals(t *testing.T, s *Service) int {
	t.Helper()
	n, err := s.eraseSpentSeals(context.Background())
	if err != nil {
		t.Fatalf("eraseSpentSeals: %v", err)
	}
	return n
}

func TestSealKeptWhileARetryMayAskForIt(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.ReuseWindow = time.Hour
	s := withConfig(newTestService(t, testConfig), cfg)
	user := signUp(t, s, "ann@example.com").User

	t.Run("UnusedPairPastTheWindow", func(t *testing.T) {
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		ageRotations(t, s, old.Session.ID, 2*cfg.ReuseWindow)
		eraseSeals(t, s)
		if prev, _ := sealsOf(t, s, old.Session.ID); !prev {
			t.Fatal("the sweep erased the seal of a pair never used")
		}
		if again := refresh(t, s, old.RefreshToken); !samePair(again, next) {
			t.Fatal("a retry before the successor was used got another pair")
		}
	})
	t.Run("UsedPairWithinTheWindow", func(t *testing.T) {
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		authenticate(t, s, next.AccessToken)
		eraseSeals(t, s)
		if prev, _ := sealsOf(t, s, old.Session.ID); !prev {
			t.Fatal("the seal of a pair used within the window is gone before the window ends")
		}
		if again := refresh(t, s, old.RefreshToken); !samePair(again, next) {
			t.Fatal("a retry within the window got another pair")
		}
	})
	t.Run("RetiredWithinTheWindow", func(t *testing.T) {
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		third := refresh(t, s, next.RefreshToken)
		authenticate(t, s, third.AccessToken)
		eraseSeals(t, s)
		if prev, retired := sealsOf(t, s, old.Session.ID); !prev || retired != 1 {
			t.Fatalf("within the window: seal on the row %v, %d retired; want true, 1", prev, retired)
		}
		if again := refresh(t, s, old.RefreshToken); !samePair(again, next) {
			t.Fatal("a retry of a retired token within the window got another pair")
		}
	})
}

func TestSealErasedOnceNoRetryMayAskForIt(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.ReuseWindow = time.Hour
	s := withConfig(newTestService(t, testConfig), cfg)
	user := signUp(t, s, "ann@example.com").User

	t.Run("FirstUseAfterTheWindow", func(t *testing.T) {
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		ageRotations(t, s, old.Session.ID, 2*cfg.ReuseWindow)
		authenticate(t, s, next.AccessToken)
		if prev, _ := sealsOf(t, s, old.Session.ID); prev {
			t.Fatal("the pair's first use after the window left its seal")
		}
		_, err := s.Refresh(t.Context(), old.RefreshToken)
		wantCode(t, "the previous token once its seal is gone", err, CodeRefreshTokenReused)
	})
	t.Run("RotationAfterTheWindow", func(t *testing.T) {
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		ageRotations(t, s, old.Session.ID, 2*cfg.ReuseWindow)
		refresh(t, s, next.RefreshToken)
		if _, retired := sealsOf(t, s, old.Session.ID); retired != 0 {
			t.Fatal("a rotation after the window carried the spent seal into retired_refresh_tokens")
		}
		_, err := s.Refresh(t.Context(), old.RefreshToken)
		wantCode(t, "the retired token", err, CodeRefreshTokenReused)
	})
	t.Run("SweepAfterTheWindow", func(t *testing.T) {
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		third := refresh(t, s, next.RefreshToken)
		authenticate(t, s, third.AccessToken) // within the window: the seals stay
		ageRotations(t, s, old.Session.ID, 2*cfg.ReuseWindow)
		if n := eraseSeals(t, s); n != 2 {
			t.Fatalf("the sweep erased %d seals, want 2", n)
		}
		if prev, retired := sealsOf(t, s, old.Session.ID); prev || retired != 0 {
			t.Fatalf("after the sweep: seal on the row %v, %d retired; want none", prev, retired)
		}
		if n := eraseSeals(t, s); n != 0 {
			t.Fatalf("a second sweep erased %d seals, want 0", n)
		}
		// Replay detection does not need the seals.
		_, err := s.Refresh(t.Context(), next.RefreshToken)
		wantCode(t, "the previous token after the sweep", err, CodeRefreshTokenReused)
		_, err = s.authenticateAccess(t.Context(), third.AccessToken)
		wantCode(t, "the current access token after the replay", err, CodeUnauthenticated)
	})
	t.Run("SweepInBatches", func(t *testing.T) {
		var ids []string
		for range 5 {
			old := newSession(t, s, user)
			authenticate(t, s, refresh(t, s, old.RefreshToken).AccessToken)
			ageRotations(t, s, old.Session.ID, 2*cfg.ReuseWindow)
			ids = append(ids, old.Session.ID)
		}
		n, err := s.eraseSessionSeals(t.Context(), s.db, 2)
		if err != nil || n != 2 {
			t.Fatalf("one batch of 2 erased %d (%v)", n, err)
		}
		eraseSeals(t, s)
		for _, id := range ids {
			if prev, _ := sealsOf(t, s, id); prev {
				t.Fatalf("session %s kept its spent seal", id)
			}
		}
	})
}

// TestRunHousekeepingErasesSealsOnItsOwnClock: the seal sweep runs every
// sealSweepInterval even when the rest of housekeeping runs hourly.
func TestRunHousekeepingErasesSealsOnItsOwnClock(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.ReuseWindow = time.Hour
	s := withConfig(newTestService(t, testConfig), cfg)
	old := signUp(t, s, "ann@example.com")
	authenticate(t, s, refresh(t, s, old.RefreshToken).AccessToken)
	ageRotations(t, s, old.Session.ID, 2*cfg.ReuseWindow)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.RunHousekeeping(ctx, time.Hour)
	}()
	defer func() {
		cancel()
		<-done
	}()
	for deadline := time.Now().Add(4 * sealSweepInterval); ; time.Sleep(100 * time.Millisecond) {
		if prev, _ := sealsOf(t, s, old.Session.ID); !prev {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the spent seal is still there %v after housekeeping started", 4*sealSweepInterval)
		}
	}
}

// TestSealSweepRacingRefreshes: sweeps on every instance, all the time, while
// clients rotate, retry before using the new pair, and use it: no retry ever
// misses its pair (no seal is erased while a retry may ask for it), no
// client is logged out.
func TestSealSweepRacingRefreshes(t *testing.T) {
	t.Parallel()
	url := pgtest.New(t)
	instances := []*Service{newTestServiceOn(t, url, nil)}
	if !pgtest.SQLite() {
		instances = append(instances, newTestServiceOn(t, url, instances[0].hasher))
	}
	// Each client uses its new pair within the window (its seal stays), then
	// moves the rotation past the window (now the seal is spent, and the
	// sweepers may erase it) and rotates that very row at once.
	const window = time.Hour
	for _, s := range instances {
		s.cfg.ReuseWindow = window
	}
	first := signUp(t, instances[0], "ann@example.com")

	stop := make(chan struct{})
	var sweepers sync.WaitGroup
	sweeps := make([]int, len(instances))
	erased := make([]int, len(instances))
	for i, s := range instances {
		sweepers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n, err := s.eraseSpentSeals(context.Background())
				if err != nil {
					t.Errorf("sweep: %v", err)
					return
				}
				sweeps[i]++
				erased[i] += n
			}
		})
	}
	const clients, rounds = 4, 15
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Go(func() {
			s := instances[c%len(instances)]
			other := instances[(c+1)%len(instances)]
			iss, err := s.createSession(context.Background(), s.db, first.User, nil)
			if err != nil {
				errs <- err
				return
			}
			token := iss.RefreshToken
			for r := range rounds {
				next, err := s.Refresh(context.Background(), token)
				if err != nil {
					errs <- fmt.Errorf("client %d round %d: refresh: %w", c, r, err)
					return
				}
				again, err := other.Refresh(context.Background(), token)
				if err != nil || !samePair(next, again) {
					errs <- fmt.Errorf("client %d round %d: a retry before use: %v (same pair: %v)", c, r, err, err == nil && samePair(next, again))
					return
				}
				if _, err := other.authenticateAccess(context.Background(), next.AccessToken); err != nil {
					errs <- fmt.Errorf("client %d round %d: the new access token: %w", c, r, err)
					return
				}
				then, arg := s.dialect.NowMinus(2 * window)
				if _, err := s.db.NewRaw("UPDATE sessions SET prev_rotated_at = "+then+" WHERE id = ?", arg, iss.Session.ID).Exec(context.Background()); err != nil {
					errs <- fmt.Errorf("client %d round %d: ageing the rotation: %w", c, r, err)
					return
				}
				token = next.RefreshToken
			}
		})
	}
	wg.Wait()
	close(stop)
	sweepers.Wait()
	// Sweeping erases a seal only in the moment between a client's ageing
	// and its next rotation: each round offers one, and the sweepers run
	// without pause, so missing all of them would be a broken sweep.
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("sweeps per instance: %v, seals they erased: %v", sweeps, erased)
	total := 0
	for _, n := range erased {
		total += n
	}
	if total == 0 {
		t.Error("the sweeps erased nothing: the race was not exercised")
	}
}
