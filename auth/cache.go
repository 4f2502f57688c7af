package auth

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/example/sessionauth/models"
)

// Resolving an access token is the hot path of every authenticated request.
// An instance may answer it from memory, but revocation must stay instant on
// every instance. How the instances keep their caches coherent, and why no
// instance can accept a token whose revocation has been answered, is in
// coherence.go; this file is the cache itself: a bounded map from
// access-token hash to identity, indexed by session.

const (
	// cacheTTL bounds how long an entry is served without a database
	// read, which bounds staleness of everything that does not notify.
	// What decides whether a token is accepted notifies (revocation,
	// expiry, rotation, every change of the user, see coherence.go); what
	// does not is lastUsedAt and successor_used (written by this instance's
	// own uses, see checkAccess), a session's device name (never read from
	// an identity) and authenticated_at (RequireRecentPassword asks the
	// database before it refuses). So the TTL only bounds the case
	// coherence.go leaves open: an instance dying between a rotation's
	// commit and its heartbeat. At 10,000 busy sessions, 5 minutes is 33
	// re-reads a second, where 30 s was 333.
	cacheTTL = 5 * time.Minute
	// DefaultCacheSize is SESSION_CACHE_SIZE's default: about 0.9 KiB an
	// entry (BenchmarkCacheEntryMemory), so 9 MiB when full.
	DefaultCacheSize = 10_000
)

// cachedIdentity is an access token's identity as read from the database,
// with the offset of the database's clock from ours at that moment, so that
// expiry is still judged by the database's clock.
type cachedIdentity struct {
	session  *models.Session // never written once cached: lookups share it
	user     *models.User
	offset   time.Duration // database now - local now
	cachedAt time.Time
}

type sessionCache struct {
	self     string // this instance's id in heartbeats
	capacity int

	mu sync.Mutex
	// connected: the LISTEN connection is up, so every invalidation
	// committed from now on will reach apply. Entries are served only while
	// connected and the lease holds (see coherence.go).
	connected   bool
	connectedAt time.Time // when the current one started listening
	leaseUntil  time.Time // local monotonic; see coherence.go
	lastOwn     time.Time // when an own heartbeat last came back
	lapsed      bool      // the lease ran out and nobody was told yet

	// epoch counts invalidations. A read from the database that began at
	// epoch e is stored only if its session and user were not invalidated
	// after e (evictedAt), and no reset happened (floor): a read that raced
	// an invalidation of its own session is never kept, and one that raced
	// other sessions' rotations still is.
	epoch         uint64
	floor         uint64
	evictedAt     map[string]uint64          // session id -> epoch of its last invalidation
	userEvictedAt map[string]uint64          // user id -> the same
	entries       map[string]*cachedIdentity // by access-token hash
	bySession     map[string]string          // session id -> its cached access-token hash
	// users holds one record per user for all of its cached sessions (a
	// user's change evicts them all, so the shared record is current).
	users map[string]*sharedUser

	out   outbox
	peers map[string]*peer
	// leaving: LeaveCache asked for a goodbye; the next heartbeat that
	// carries everything queued says it, and bye is closed once one
	// committed. The heartbeat sender sends nothing after it.
	leaving bool
	bye     chan struct{}

	// gate admits this instance's own changes (admitWrite) until left,
	// which LeaveCache sets once the changes in flight are announced.
	gate sync.RWMutex
	left bool
	// waiters are revoking requests waiting until every instance has
	// applied their change or stopped trusting its cache.
	waiters map[*syncWaiter]struct{}
	kick    chan struct{} // wakes the heartbeat sender
}

func newSessionCache(capacity int) *sessionCache {
	if capacity <= 0 {
		capacity = DefaultCacheSize
	}
	b := make([]byte, 8)
	rand.Read(b)
	return &sessionCache{
		self:      hex.EncodeToString(b),
		capacity:  capacity,
		entries:   map[string]*cachedIdentity{},
		bySession: map[string]string{},
		users:     map[string]*sharedUser{},
		evictedAt: map[string]uint64{}, userEvictedAt: map[string]uint64{},
		out:     outbox{sentAt: map[uint64]time.Time{}, acks: map[string]uint64{}},
		peers:   map[string]*peer{},
		waiters: map[*syncWaiter]struct{}{},
		kick:    make(chan struct{}, 1),
		bye:     make(chan struct{}),
	}
}

// trusted reports whether entries may be served at now; c.mu is held.
func (c *sessionCache) trusted(now time.Time) bool {
	return c.connected && !c.leaving && now.Before(c.leaseUntil)
}

// get returns the identity cached for hash, if it may be trusted, and the
// current epoch, read under the same lock: on a miss, the database read that
// follows passes it to put, which stores the result only if no invalidation
// of its session or user arrived meanwhile, so a read that raced a
// revocation can never be cached. The identity's Session and User are the
// cache's own, shared with every lookup of the token (Identity says so):
// nothing may write to them, and checkAccess copies before it does.
func (c *sessionCache) get(hash string) (id *Identity, epoch uint64, ok bool) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok || !c.trusted(now) {
		return nil, c.epoch, false
	}
	if now.Sub(e.cachedAt) > cacheTTL {
		c.drop(hash)
		return nil, c.epoch, false
	}
	return &Identity{Session: e.session, User: e.user, Now: now.Add(e.offset)}, c.epoch, true
}

func (c *sessionCache) put(epoch uint64, hash string, id *Identity) {
	now := time.Now()
	sess := *id.Session
	// What a lookup never needs: the sealed pair (0.5 KiB), the refresh
	// token's hash and when the pair was rotated (refresh and logout read
	// the row itself), and once the pair has been used, the hash of the
	// refresh token it replaced (checkAccess looks at it only until then).
	// Each is a heap object the collector would mark on every cycle.
	sess.PrevSealed, sess.RefreshHash, sess.PrevRotatedAt = nil, nil, nil
	if sess.SuccessorUsed {
		sess.PrevRefreshHash = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.connected || epoch < c.floor || c.evictedAt[sess.ID] > epoch || c.userEvictedAt[sess.UserID] > epoch {
		return
	}
	if old, ok := c.bySession[sess.ID]; ok && old != hash {
		c.drop(old) // a rotated-away token of the same session
	}
	if _, ok := c.entries[hash]; ok {
		c.drop(hash) // replaced by a newer copy
	} else if len(c.entries) >= c.capacity {
		for k := range c.entries { // evict an arbitrary entry
			c.drop(k)
			break
		}
	}
	user := c.share(id.User)
	if user != nil && user.ID == sess.UserID {
		sess.UserID = user.ID // one copy of the user's id for all its sessions
	}
	c.entries[hash] = &cachedIdentity{session: &sess, user: user, offset: id.Now.Sub(now), cachedAt: now}
	c.bySession[sess.ID] = hash
}

// sharedUser is a user's record and the number of cached sessions using it.
type sharedUser struct {
	user *models.User
	refs int
}

// share returns the record cached for u's user, or makes u that record;
// c.mu is held. A session read after the last change of its user carries
// the same values as the record cached (any change evicts the record, see
// evictUser), so a user's sessions need only one.
func (c *sessionCache) share(u *models.User) *models.User {
	if u == nil {
		return nil
	}
	su := c.users[u.ID]
	if su == nil {
		su = &sharedUser{user: u}
		c.users[u.ID] = su
	}
	su.refs++
	return su.user
}

// drop forgets the entry for hash; c.mu is held.
func (c *sessionCache) drop(hash string) {
	e, ok := c.entries[hash]
	if !ok {
		return
	}
	if c.bySession[e.session.ID] == hash {
		delete(c.bySession, e.session.ID)
	}
	delete(c.entries, hash)
	if e.user == nil {
		return
	}
	if su := c.users[e.user.ID]; su != nil && su.user == e.user {
		if su.refs--; su.refs == 0 {
			delete(c.users, e.user.ID)
		}
	}
}

// evictSession forgets session id's entry and fails every read in flight;
// c.mu is held.
func (c *sessionCache) evictSession(id string) {
	c.epoch++
	c.evictedAt[id] = c.epoch
	c.forget()
	if h, ok := c.bySession[id]; ok {
		c.drop(h)
	}
}

// evictUser forgets every entry of user id (rare: a password change, a
// deleted account), failing every read in flight; c.mu is held.
func (c *sessionCache) evictUser(id string) {
	c.epoch++
	c.userEvictedAt[id] = c.epoch
	c.forget()
	for k, e := range c.entries {
		if e.session.UserID == id {
			c.drop(k)
		}
	}
	delete(c.users, id)
}

// reset drops every entry and fails every read in flight; c.mu is held.
func (c *sessionCache) reset() {
	c.epoch++
	c.floor = c.epoch
	clear(c.evictedAt)
	clear(c.userEvictedAt)
	clear(c.entries)
	clear(c.bySession)
	clear(c.users)
}

// forget bounds the memory of recent invalidations: past 4,096 of them, it
// forgets them all and fails the reads in flight instead; c.mu is held.
func (c *sessionCache) forget() {
	if len(c.evictedAt)+len(c.userEvictedAt) > 4096 {
		c.floor = c.epoch
		clear(c.evictedAt)
		clear(c.userEvictedAt)
	}
}

// size is the number of entries.
func (c *sessionCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// CacheLive reports whether the session cache is on and trusted: its LISTEN
// connection is up and its lease holds.
func (s *Service) CacheLive() bool {
	if s.cache == nil {
		return false
	}
	now := time.Now()
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.trusted(now)
}
