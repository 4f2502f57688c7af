package auth

import (
	"context"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/testkit"
)

// secondInstance is another Service with its cache on over url, once the
// first instance s has seen its heartbeats.
func secondInstance(t *testing.T, s *Service, url string) *Service {
	t.Helper()
	other := newTestServiceOn(t, url, nil)
	other.EnableCache(t.Context(), url)
	testkit.Eventually(t, "the second instance's cache live", other.CacheLive)
	testkit.Eventually(t, "the second instance seen", func() bool { return isPeer(s, other) })
	return other
}

func isPeer(s, other *Service) bool {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.peers[other.cache.self] != nil
}

func isCached(s *Service, token string) bool {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	_, ok := s.cache.entries[string(hashToken(token))]
	return ok
}

func leave(t *testing.T, s *Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if !s.LeaveCache(ctx) {
		t.Fatal("LeaveCache: the goodbye did not commit")
	}
}

// TestGoodbyeKeepsOthersCaches: an instance that stops on purpose says
// goodbye, and the others forget it without dropping their caches, where its
// silence alone would have emptied them after peerSilence (see
// TestSilentInstanceDropsCache). Once it has left, it refuses changes of its
// own (they could no longer be announced) and no longer answers from its
// cache.
func TestGoodbyeKeepsOthersCaches(t *testing.T) {
	s, url := listeningService(t)
	ctx := t.Context()
	kept := signUp(t, s, "kept@example.com")
	authenticate(t, s, kept.AccessToken)
	leaver := secondInstance(t, s, url)
	own := signUp(t, leaver, "own@example.com")
	authenticate(t, leaver, own.AccessToken)

	leave(t, leaver)
	testkit.Eventually(t, "the leaver forgotten", func() bool { return !isPeer(s, leaver) })
	if leaver.CacheLive() {
		t.Error("the instance that left still trusts its cache")
	}
	time.Sleep(peerSilence + 2*heartbeatEvery)
	if !isCached(s, kept.AccessToken) {
		t.Fatal("the other instance dropped its cache although the leaver said goodbye")
	}

	// Its changes are refused, and nothing is written.
	if err := leaver.Logout(ctx, own.AccessToken); ErrorCode(err) != CodeServiceUnavailable {
		t.Fatalf("a logout through the instance that left: %v, want SERVICE_UNAVAILABLE", err)
	}
	if _, err := leaver.Refresh(ctx, own.RefreshToken); ErrorCode(err) != CodeServiceUnavailable {
		t.Fatalf("a refresh through the instance that left: %v, want SERVICE_UNAVAILABLE", err)
	}
	if id := authenticate(t, s, own.AccessToken); id.Session.ID != own.Session.ID {
		t.Fatalf("the refused logout's session authenticated as %s", id.Session.ID)
	}
	// A lookup there reads the database: an end it did not hear of is seen.
	endUnannounced(t, s, own.Session.ID)
	if _, err := leaver.authenticateAccess(ctx, own.AccessToken); ErrorCode(err) != CodeUnauthenticated {
		t.Fatalf("the instance that left accepted an ended session's token from its cache: %v", err)
	}
}

// TestGoodbyeCarriesWhatIsQueued: a change the leaver committed but could
// not announce yet (queued, its request answered SERVICE_UNAVAILABLE)
// leaves with the goodbye, so the others apply it before they forget the
// leaver.
func TestGoodbyeCarriesWhatIsQueued(t *testing.T) {
	s, url := listeningService(t)
	ctx := t.Context()
	kept := signUp(t, s, "kept@example.com")
	ended := signUp(t, s, "ended@example.com")
	authenticate(t, s, kept.AccessToken)
	authenticate(t, s, ended.AccessToken)
	leaver := secondInstance(t, s, url)

	endUnannounced(t, leaver, ended.Session.ID)
	leaver.cache.mu.Lock()
	leaver.cache.out.evict = append(leaver.cache.out.evict, eviction{session: ended.Session.ID})
	leaver.cache.mu.Unlock()
	leave(t, leaver)
	testkit.Eventually(t, "the ended session's token refused", func() bool {
		_, err := s.authenticateAccess(ctx, ended.AccessToken)
		return ErrorCode(err) == CodeUnauthenticated
	})
	if !isCached(s, kept.AccessToken) {
		t.Fatal("the goodbye emptied the other instance's cache")
	}
}

// TestLeaveWaitsForChangesInFlight: the goodbye waits until every change
// admitted before it has been announced, and no change is admitted after.
func TestLeaveWaitsForChangesInFlight(t *testing.T) {
	s, url := listeningService(t)
	leaver := secondInstance(t, s, url)
	release, err := leaver.admitWrite()
	if err != nil {
		t.Fatal(err)
	}
	left := make(chan bool, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		left <- leaver.LeaveCache(ctx)
	}()
	select {
	case <-left:
		t.Fatal("LeaveCache returned while a change was in flight")
	case <-time.After(3 * heartbeatEvery):
	}
	if !isPeer(s, leaver) {
		t.Fatal("the goodbye went out while a change was in flight")
	}
	release()
	if !<-left {
		t.Fatal("LeaveCache: the goodbye did not commit")
	}
	if _, err := leaver.admitWrite(); ErrorCode(err) != CodeServiceUnavailable {
		t.Fatalf("a change admitted after the goodbye: %v", err)
	}
}

// TestGoodbyeEndsWaits: a revoking request that waits for another
// instance's acknowledgement stops waiting for it when that instance says
// goodbye (it trusts its cache no more), rather than at its deadline.
func TestGoodbyeEndsWaits(t *testing.T) {
	s := &Service{cache: newSessionCache(10)}
	c := s.cache
	now := time.Now()
	c.peers["leaver"] = &peer{seen: now}
	w := &syncWaiter{since: now, inStream: now, marker: 3, seenBack: true, floor: now,
		pending: map[string]time.Time{"leaver": now.Add(time.Hour)}}
	c.waiters[w] = struct{}{}
	c.mu.Lock()
	waiting := !w.check(c, now)
	c.mu.Unlock()
	if !waiting {
		t.Fatal("the waiter did not wait for the other instance")
	}
	s.apply("h|leaver|7|b||||")
	c.mu.Lock()
	defer c.mu.Unlock()
	if !w.check(c, time.Now()) {
		t.Fatal("the waiter still waits for an instance that said goodbye")
	}
	if c.peers["leaver"] != nil {
		t.Fatal("the instance that said goodbye is still a peer")
	}
}
