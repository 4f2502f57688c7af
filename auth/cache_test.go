package auth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/models"
)

func identity(session, user string) *Identity {
	return &Identity{
		Session: &models.Session{ID: session, UserID: user, PrevSealed: make([]byte, 556), RefreshHash: make([]byte, 32)},
		User:    &models.User{ID: user},
		Now:     time.Now(),
	}
}

func liveCache(capacity int) *sessionCache {
	c := newSessionCache(capacity)
	c.connected, c.leaseUntil = true, time.Now().Add(time.Hour)
	return c
}

// TestCacheStaysWithinItsSize fills a cache of 3 with 50 sessions.
func TestCacheStaysWithinItsSize(t *testing.T) {
	c := liveCache(3)
	for i := range 50 {
		c.put(c.begin(), fmt.Sprint("hash", i), identity(fmt.Sprint("s", i), "u"))
	}
	if n := c.size(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	if len(c.bySession) != 3 {
		t.Fatalf("session index has %d entries, want 3", len(c.bySession))
	}
	for h, e := range c.entries {
		if c.bySession[e.session.ID] != h {
			t.Fatalf("index does not point at %s", h)
		}
		if e.session.PrevSealed != nil || e.session.RefreshHash != nil {
			t.Fatal("an entry keeps the sealed pair or the refresh hash, which no lookup needs")
		}
	}
}

// TestCacheSharesUserRecords: a user's cached sessions share one record,
// counted, which goes with the last of them or with the user's invalidation.
func TestCacheSharesUserRecords(t *testing.T) {
	c := liveCache(10)
	for i := range 3 {
		c.put(c.begin(), fmt.Sprint("h", i), identity(fmt.Sprint("s", i), "u1"))
	}
	c.put(c.begin(), "h0", identity("s0", "u1")) // a newer copy of one entry
	c.put(c.begin(), "solo", identity("s9", "u2"))
	refs := func(user string) int {
		c.mu.Lock()
		defer c.mu.Unlock()
		if su := c.users[user]; su != nil {
			return su.refs
		}
		return 0
	}
	if len(c.users) != 2 || refs("u1") != 3 || refs("u2") != 1 {
		t.Fatalf("users %d, refs u1 %d u2 %d; want 2 records, 3 and 1 references", len(c.users), refs("u1"), refs("u2"))
	}
	a, _, _ := c.get("h0")
	b, _, _ := c.get("h2")
	if a.User != b.User {
		t.Fatal("two sessions of one user hold two records")
	}
	c.mu.Lock()
	c.evictSession("s1")
	c.mu.Unlock()
	if refs("u1") != 2 {
		t.Fatalf("after one session's eviction, %d references, want 2", refs("u1"))
	}
	c.mu.Lock()
	c.evictUser("u1")
	c.mu.Unlock()
	if refs("u1") != 0 || len(c.users) != 1 {
		t.Fatalf("after the user's eviction: %d records, u1 has %d references", len(c.users), refs("u1"))
	}
	c.mu.Lock()
	c.drop("solo")
	c.mu.Unlock()
	if len(c.users) != 0 {
		t.Fatalf("%d user records left with no entry", len(c.users))
	}
}

// TestCacheEvictions: a session's rotated-away token goes when its new one
// is cached, a session invalidation takes whichever is cached, a user
// invalidation every session of the user, and a read that raced any of
// them is not cached.
func TestCacheEvictions(t *testing.T) {
	c := liveCache(10)
	c.put(c.begin(), "old", identity("s1", "u1"))
	c.put(c.begin(), "new", identity("s1", "u1"))
	c.put(c.begin(), "other", identity("s2", "u1"))
	c.put(c.begin(), "third", identity("s3", "u2"))
	if _, _, ok := c.get("old"); ok {
		t.Fatal("the rotated-away token is still served")
	}
	epoch := c.begin()
	c.mu.Lock()
	c.evictSession("s1")
	c.mu.Unlock()
	if _, _, ok := c.get("new"); ok {
		t.Fatal("an invalidated session is still served")
	}
	c.put(epoch, "new", identity("s1", "u1"))
	if _, _, ok := c.get("new"); ok {
		t.Fatal("a read that raced an invalidation was cached")
	}
	epoch = c.begin()
	c.mu.Lock()
	c.evictSession("s9") // another session's rotation
	c.mu.Unlock()
	c.put(epoch, "fourth", identity("s4", "u2"))
	if _, _, ok := c.get("fourth"); !ok {
		t.Fatal("a read that raced another session's invalidation was not cached")
	}
	c.mu.Lock()
	c.evictUser("u1")
	c.mu.Unlock()
	if _, _, ok := c.get("other"); ok {
		t.Fatal("an invalidated user's session is still served")
	}
	if _, _, ok := c.get("third"); !ok {
		t.Fatal("another user's session was evicted")
	}
	c.mu.Lock()
	c.leaseUntil = time.Now()
	c.mu.Unlock()
	if _, _, ok := c.get("third"); ok {
		t.Fatal("an entry is served after the lease ran out")
	}
}

// TestHashSlotsWithinBudget: the hashes allowed at once, with the rest of
// the server and a full cache, fit the budget; at least one always runs.
func TestHashSlotsWithinBudget(t *testing.T) {
	for _, budget := range []int64{1 << 20, 48 << 20, 64 << 20, 80 << 20, 96 << 20, 256 << 20, 4 << 30} {
		for _, size := range []int{1, DefaultCacheSize, 100_000} {
			n := hashSlots(budget, size)
			used := baseMemory + int64(size)*cacheEntryMemory + int64(n)*hashCost
			if n < 1 || n > runtime.GOMAXPROCS(0) || n > 1 && used > budget {
				t.Errorf("hashSlots(%d MiB, %d entries) = %d: %d MiB", budget>>20, size, n, used>>20)
			}
		}
	}
	if n := cap(newBoundedHasher(hashSlots(0, 0)).slots); n != hashSlots(DefaultMemoryBudget, DefaultCacheSize) {
		t.Errorf("default hasher has %d slots", n)
	}
	if n := hashSlots(DefaultMemoryBudget, DefaultCacheSize); runtime.GOMAXPROCS(0) >= 2 && n != 2 {
		t.Errorf("the default budget allows %d hashes at once, want 2", n)
	}
	if l := SoftMemoryLimit(0); l <= DefaultMemoryBudget/2 || l >= DefaultMemoryBudget {
		t.Errorf("soft limit %d MiB for the default budget", l>>20)
	}
}

// cachedService is a Service with its session cache on, over a fresh
// database, once the cache is trusted.
func cachedService(tb testing.TB) *Service {
	tb.Helper()
	url := pgtest.New(tb)
	db := pgtest.Open(url)
	tb.Cleanup(func() { db.Close() })
	s := NewService(db, testConfig, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	s.EnableCache(ctx, url)
	deadline := time.Now().Add(10 * time.Second)
	for !s.CacheLive() {
		if time.Now().After(deadline) {
			tb.Fatal("the session cache did not come up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s
}

// BenchmarkAuthenticateAccessCached is the per-request cost of an access
// token answered from the session cache, cycling through 1,000 sessions
// (hashing the token, the lookup, the identity handed to the request).
func BenchmarkAuthenticateAccessCached(b *testing.B) {
	s := cachedService(b)
	user := signUp(b, s, "ann@example.com").User
	tokens := make([]string, 1000)
	ctx := context.Background()
	for i := range tokens {
		tokens[i] = newSession(b, s, user).AccessToken
		if _, err := s.authenticateAccess(ctx, tokens[i]); err != nil {
			b.Fatal(err)
		}
	}
	if n := s.cache.size(); n != len(tokens) {
		b.Fatalf("%d cached, want %d", n, len(tokens))
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.authenticateAccess(ctx, tokens[next.Add(1)%int64(len(tokens))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRefreshCached is a refresh with the session cache on, as in
// production: the transaction, then the wait until the rotation has gone
// round this instance's heartbeat. 16 chains refresh at once.
func BenchmarkRefreshCached(b *testing.B) {
	s := cachedService(b)
	user := signUp(b, s, "ann@example.com").User
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		token := newSession(b, s, user).RefreshToken
		for pb.Next() {
			next, err := s.Refresh(ctx, token)
			if err != nil {
				b.Error(err)
				return
			}
			token = next.RefreshToken
		}
	})
}

// BenchmarkCacheEntryMemory reports the heap one cache entry takes, with a
// session and user as wide as real ones (what SESSION_CACHE_SIZE costs).
func BenchmarkCacheEntryMemory(b *testing.B) {
	// Each session its own user (the most an entry costs), and 10,000
	// sessions of 32 users (the loadtest's -sessions), which share records.
	for _, users := range []int{10_000, 32} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) { benchmarkCacheEntryMemory(b, users) })
	}
}

func benchmarkCacheEntryMemory(b *testing.B, users int) {
	const n = 10_000
	str := func(s string) *string { return &s }
	for b.Loop() {
		c := liveCache(n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range n {
			now := time.Now()
			id := &Identity{
				Session: &models.Session{
					ID: fmt.Sprintf("%08d-6f1c-4b7e-9d0a-5c3e2f1a7b8c", i), UserID: fmt.Sprintf("%08d-0000-4b7e-9d0a-5c3e2f1a7b8c", i%users),
					DeviceName: str("Ann's phone"), UserAgent: str("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"),
					IPAddress: str("203.0.113.42"), CreatedAt: now, LastUsedAt: now,
					AccessHash: make([]byte, 32), RefreshHash: make([]byte, 32), PrevRefreshHash: make([]byte, 32),
					PrevRotatedAt: &now, PrevSealed: make([]byte, 556), AccessExpiresAt: now, RefreshExpiresAt: now,
				},
				User: &models.User{
					ID: fmt.Sprintf("%08d-0000-4b7e-9d0a-5c3e2f1a7b8c", i%users), Email: "ann.example@example.com", EmailKey: "ann.example@example.com",
					PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", CreatedAt: now,
				},
				Now: now,
			}
			c.put(c.begin(), string(make([]byte, 32))+fmt.Sprint(i), id)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/entry")
		runtime.KeepAlive(c)
	}
}

// TestRotationQueuedWithItsWaiter: a rotation is never in the queue without
// its waiter registered, else a heartbeat composed in between would carry
// it without becoming the waiter's marker, and the refresh would answer
// SERVICE_UNAVAILABLE after a second although its rotation went out. Then
// the next heartbeat carries it, is the waiter's marker, and its commit
// puts the change in the stream.
func TestRotationQueuedWithItsWaiter(t *testing.T) {
	c := liveCache(10)
	s := &Service{cache: c, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.announceRotation(ctx, "s1") }()
	for {
		c.mu.Lock()
		queued, waiting := len(c.out.evict), len(c.waiters)
		c.mu.Unlock()
		if queued > 0 && waiting == 0 {
			t.Fatal("a rotation is queued without its waiter")
		}
		if queued > 0 {
			break
		}
		runtime.Gosched()
	}
	msg := c.compose()
	seq, payload, taken := msg.seq, msg.payload, msg.taken
	var w *syncWaiter
	c.mu.Lock()
	for x := range c.waiters {
		w = x
	}
	c.mu.Unlock()
	if w.marker != seq || len(taken) != 1 || !strings.HasSuffix(payload, "|s1||") {
		t.Fatalf("heartbeat %d %q: the waiter's marker is %d", seq, payload, w.marker)
	}
	c.sent(msg, nil, time.Now())
	c.mu.Lock()
	inStream := !w.inStream.IsZero()
	c.mu.Unlock()
	if !inStream {
		t.Fatal("the heartbeat's commit did not put the rotation in the stream")
	}
	cancel()
	<-done
}

// TestAcknowledgementAloneGoesToTheAsker: an acknowledgement with nothing
// else to say goes to the asking instance's channel only; with anything else
// to say, or a heartbeat due, it rides in a broadcast heartbeat. A failed
// send keeps it owed, and the asker counts it when it arrives.
func TestAcknowledgementAloneGoesToTheAsker(t *testing.T) {
	c := liveCache(10)
	c.out.beat = time.Now() // a heartbeat just went out
	c.out.acks["asker"] = 7
	msg := c.compose()
	if msg.seq != 0 || msg.channel != ackChannel("asker") || msg.payload != "a|"+c.self+"|7" {
		t.Fatalf("alone: %+v, want an acknowledgement of 7 on the asker's channel", msg)
	}
	if len(c.out.acks) != 0 {
		t.Fatal("the acknowledgement is still owed after it was composed")
	}
	c.sent(msg, fmt.Errorf("connection refused"), time.Now())
	if c.out.acks["asker"] != 7 {
		t.Fatalf("after a failed send %d is owed, want 7", c.out.acks["asker"])
	}

	c.out.evict = append(c.out.evict, eviction{session: "s1"})
	if msg := c.compose(); msg.seq == 0 || msg.channel != invalidationChannel || !strings.Contains(msg.payload, "|asker.7|s1") {
		t.Fatalf("with a rotation to announce: %+v, want one heartbeat carrying both", msg)
	}
	c.out.acks["asker"] = 8
	c.out.beat = time.Now().Add(-heartbeatEvery)
	if msg := c.compose(); msg.seq == 0 || !strings.Contains(msg.payload, "|asker.8|") {
		t.Fatalf("with a heartbeat due: %+v, want the heartbeat, carrying the acknowledgement", msg)
	}

	// The asker's side: malformed payloads prove nothing; a well-formed
	// one counts for that peer.
	for _, bad := range []string{"", "a|x", "a|x|y", "h|x|1", "a|x|1|2"} {
		c.applyAck(bad)
	}
	if len(c.peers) != 0 {
		t.Fatalf("malformed acknowledgements registered peers: %v", c.peers)
	}
	c.applyAck("a|other|5")
	c.applyAck("a|other|3") // late and older: never moves back
	if p := c.peers["other"]; p == nil || p.acked != 5 || !p.seen.IsZero() {
		t.Fatalf("peer after acknowledgements: %+v, want acked 5 and never seen", p)
	}
}

// TestMarkersSpacedOnlyForOthers: heartbeats are spaced by markerSpacing
// only while another instance would have to acknowledge them; a single
// instance, and an acknowledgement alone, go out at once.
func TestMarkersSpacedOnlyForOthers(t *testing.T) {
	c := liveCache(10)
	now := time.Now()
	c.out.beat = now
	c.out.evict = append(c.out.evict, eviction{session: "s1"})
	if c.othersAcknowledge(now) {
		t.Fatal("spaced with no other instance listening")
	}
	c.peers["gone"] = &peer{seen: now.Add(-leaseDuration - leaseMargin)}
	if c.othersAcknowledge(now) {
		t.Fatal("spaced for an instance not heard from within the lease")
	}
	c.peers["other"] = &peer{seen: now.Add(-leaseDuration / 2)}
	if !c.othersAcknowledge(now) {
		t.Fatal("a heartbeat with a change to announce is not spaced while another instance listens")
	}
	c.out.evict = nil
	c.out.acks["other"] = 3
	if c.othersAcknowledge(now) {
		t.Fatal("an acknowledgement alone is spaced")
	}
}

// TestAnnouncementSpanningHeartbeats: a change of more sessions than one
// heartbeat carries makes its waiter's marker the heartbeat that carries the
// last of them, not the first: until that one commits, some instance may
// not have heard of the rest.
func TestAnnouncementSpanningHeartbeats(t *testing.T) {
	c := liveCache(10)
	s := &Service{cache: c, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := &announcement{users: []string{"u1"}, events: []string{"u1"}}
	for i := range maxEvictionsPerHeartbeat + 10 {
		a.sessions = append(a.sessions, fmt.Sprint("s", i))
	}
	done := make(chan error, 1)
	go func() { done <- s.announce(ctx, a) }()
	want := len(a.sessions) + 2
	for {
		c.mu.Lock()
		queued := len(c.out.evict)
		c.mu.Unlock()
		if queued == want {
			break
		}
		runtime.Gosched()
	}
	first := c.compose()
	second := c.compose()
	var w *syncWaiter
	c.mu.Lock()
	for x := range c.waiters {
		w = x
	}
	c.mu.Unlock()
	if w.marker != second.seq || len(first.taken)+len(second.taken) != want {
		t.Fatalf("marker %d, heartbeats %d and %d carrying %d and %d; want the second as marker, %d in all",
			w.marker, first.seq, second.seq, len(first.taken), len(second.taken), want)
	}
	f := strings.Split(second.payload, "|")
	if len(f) != 8 || f[6] != "u1" || f[7] != "u1" || strings.Count(f[5], ",") != 9 {
		t.Fatalf("second heartbeat %q: want 10 sessions, user u1 and events of u1", second.payload)
	}
	cancel()
	<-done
}

// TestHeartbeatFormats: a heartbeat of this version evicts its sessions and
// users and names the users with new events; one of the version before (six
// fields) still evicts its sessions; anything else drops the whole cache.
func TestHeartbeatFormats(t *testing.T) {
	c := liveCache(10)
	s := &Service{cache: c, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	fill := func() {
		for _, id := range []string{"s1", "s2", "s3"} {
			c.put(c.begin(), "h"+id, identity(id, "u"+id))
		}
	}
	cached := func(id string) bool { _, _, ok := c.get("h" + id); return ok }
	fill()
	if got := s.apply("h|peer|1|0||s1|us2|ux,uy"); got != "ux,uy" || cached("s1") || cached("s2") || !cached("s3") {
		t.Fatalf("eight fields: events %q, s1 %v s2 %v s3 %v; want ux,uy and only s3 left", got, cached("s1"), cached("s2"), cached("s3"))
	}
	fill()
	if got := s.apply("h|peer|2|0||s1"); got != "" || cached("s1") || !cached("s2") {
		t.Fatalf("six fields: events %q, s1 %v s2 %v", got, cached("s1"), cached("s2"))
	}
	fill()
	s.apply("h|peer|3|0||s1|us2")
	if cached("s3") {
		t.Fatal("a heartbeat of an unknown shape left the cache")
	}
}

// TestAnnouncementNeverSent: when no heartbeat carrying a change commits
// within the lease, the request that made it answers SERVICE_UNAVAILABLE
// (another instance may still accept what it ended), and the change stays
// queued for the next heartbeat.
func TestAnnouncementNeverSent(t *testing.T) {
	c := liveCache(10)
	s := &Service{cache: c, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	done := make(chan error, 1)
	go func() {
		done <- s.announce(context.Background(), &announcement{sessions: []string{"s1"}, users: []string{"u1"}, events: []string{"u1"}})
	}()
	for {
		c.mu.Lock()
		queued := len(c.out.evict)
		c.mu.Unlock()
		if queued == 3 {
			break
		}
		runtime.Gosched()
	}
	msg := c.compose()
	c.sent(msg, fmt.Errorf("connection refused"), time.Now())
	select {
	case err := <-done:
		if ErrorCode(err) != CodeServiceUnavailable {
			t.Fatalf("announce: %v, want SERVICE_UNAVAILABLE", err)
		}
	case <-time.After(leaseDuration + 2*time.Second):
		t.Fatal("announce still waiting past the lease")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.out.evict) != 3 || c.out.evict[0].session != "s1" || c.out.evict[1].user != "u1" || c.out.evict[2].events != "u1" {
		t.Fatalf("queued after the failure: %+v, want the three changes back", c.out.evict)
	}
}

// TestForgetSilent: an instance heard from within peerSilence stays; one
// silent for longer is forgotten and the cache dropped; one known only from
// an acknowledgement is forgotten without a drop.
func TestForgetSilent(t *testing.T) {
	c := liveCache(10)
	now := time.Now()
	c.put(c.begin(), "h1", identity("s1", "u1"))
	c.peers["acked"] = &peer{acked: 3}
	c.peers["live"] = &peer{seen: now.Add(-peerSilence / 2)}
	if gone := c.forgetSilent(now); len(gone) != 0 || len(c.entries) != 1 {
		t.Fatalf("gone %v, %d entries: want none gone and the entry kept", gone, len(c.entries))
	}
	if _, ok := c.peers["acked"]; ok {
		t.Fatal("a peer known only from an acknowledgement is still listed")
	}
	c.peers["dead"] = &peer{seen: now.Add(-peerSilence - time.Millisecond)}
	epoch := c.begin()
	gone := c.forgetSilent(now)
	if len(gone) != 1 || gone[0] != "dead" || len(c.entries) != 0 {
		t.Fatalf("gone %v, %d entries: want dead gone and the cache dropped", gone, len(c.entries))
	}
	if _, ok := c.peers["live"]; !ok {
		t.Fatal("the live peer was forgotten")
	}
	c.put(epoch, "h2", identity("s2", "u2"))
	if _, _, ok := c.get("h2"); ok {
		t.Fatal("a read begun before the drop was cached")
	}
}

// begin returns the cache's epoch, as get does on a miss, for a put.
func (c *sessionCache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// TestCachedSessionIsNeverWritten: a cached lookup hands out the cache's own
// session, shared by every request of the token; when a lookup must record
// a use (lastUsedAt due), it writes to a copy of its own, and the requests
// holding the shared one, running at the same time, see no change (the race
// detector watches the rest).
func TestCachedSessionIsNeverWritten(t *testing.T) {
	pgtest.PostgresOnly(t, "the session cache exists on PostgreSQL only")
	s := cachedService(t)
	is := signUp(t, s, "shared@example.com")
	authenticate(t, s, is.AccessToken) // cached by the first lookup
	first := authenticate(t, s, is.AccessToken)
	if again := authenticate(t, s, is.AccessToken); again.Session != first.Session {
		t.Fatal("two cached lookups of one token hold two copies of the session")
	}

	// Make the cached copy due a lastUsedAt write, as a minute later.
	h := string(hashToken(is.AccessToken))
	s.cache.mu.Lock()
	aged := *s.cache.entries[h].session
	aged.LastUsedAt = aged.LastUsedAt.Add(-time.Minute)
	s.cache.entries[h].session = &aged
	s.cache.mu.Unlock()
	before := aged

	var wg sync.WaitGroup
	got := make([]*Identity, 8)
	for i := range got {
		wg.Go(func() { got[i] = authenticate(t, s, is.AccessToken) })
	}
	wg.Wait()
	if !reflect.DeepEqual(aged, before) {
		t.Fatal("a lookup wrote to the cached session")
	}
	for _, id := range got {
		if id.Session == &aged {
			continue // served after another lookup cached the moved copy
		}
		if id.Now.Sub(id.Session.LastUsedAt) > time.Second {
			t.Fatalf("lastUsedAt %v not moved to the lookup's now %v", id.Session.LastUsedAt, id.Now)
		}
	}
	if next := authenticate(t, s, is.AccessToken); next.Session == &aged || next.Now.Sub(next.Session.LastUsedAt) > time.Second {
		t.Fatal("the moved lastUsedAt was not cached")
	}
}
