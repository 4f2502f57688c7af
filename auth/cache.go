package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// Resolving an access token is the hot path of every authenticated request.
// An instance may answer it from memory, but revocation must stay instant on
// every instance: a trigger on the sessions and users tables NOTIFYs each
// change that matters (a rotated access token, a revoked or deleted session,
// a changed user) on invalidationChannel, in the changing transaction, so
// every listening instance hears of it when it commits. An instance trusts
// its cache only while its LISTEN connection is up; when it drops, the cache
// is emptied and bypassed until the connection is back.
const invalidationChannel = "sessionauth_invalidate"

const (
	// cacheTTL bounds how long an entry is served without a database
	// read, which bounds staleness of everything that does not notify.
	cacheTTL = 30 * time.Second
	// cacheMaxEntries bounds memory: about 1.5 KiB an entry.
	cacheMaxEntries = 100_000
	// syncTimeout bounds how long a revoking request waits for its own
	// invalidation to come back through the listener.
	syncTimeout = 2 * time.Second
)

// cachedIdentity is an access token's identity as read from the database,
// with the offset of the database's clock from ours at that moment, so that
// expiry is still judged by the database's clock.
type cachedIdentity struct {
	session  models.Session
	user     *models.User
	offset   time.Duration // database now - local now
	cachedAt time.Time
}

type sessionCache struct {
	mu      sync.Mutex
	live    bool // the LISTEN connection is up: entries may be trusted
	epoch   uint64
	entries map[string]*cachedIdentity // by access-token hash
	waiters map[string]*syncWaiter     // by sync nonce
}

// syncWaiter collects the acknowledgements of one sync marker.
type syncWaiter struct {
	nonce     string
	need, got int
	done      chan struct{}
}

func newSessionCache() *sessionCache {
	return &sessionCache{entries: map[string]*cachedIdentity{}, waiters: map[string]*syncWaiter{}}
}

// get returns a copy of the identity cached for hash, if it may be trusted.
func (c *sessionCache) get(hash string) (*Identity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok || !c.live {
		return nil, false
	}
	now := time.Now()
	if now.Sub(e.cachedAt) > cacheTTL {
		delete(c.entries, hash)
		return nil, false
	}
	sess := e.session
	return &Identity{Session: &sess, User: e.user, Now: now.Add(e.offset)}, true
}

// begin returns the epoch before a database read; put stores its result only
// if no invalidation arrived meanwhile, so a read that raced a revocation
// can never be cached.
func (c *sessionCache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

func (c *sessionCache) put(epoch uint64, hash string, id *Identity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || c.epoch != epoch {
		return
	}
	if len(c.entries) >= cacheMaxEntries {
		for k := range c.entries { // evict an arbitrary entry
			delete(c.entries, k)
			break
		}
	}
	now := time.Now()
	c.entries[hash] = &cachedIdentity{session: *id.Session, user: id.User, offset: id.Now.Sub(now), cachedAt: now}
}

// invalidate handles one notification payload: "s:<session id>",
// "u:<user id>", "sync:<nonce>" or "ack:<nonce>". It returns the nonce of a
// sync marker, which the caller must acknowledge.
func (c *sessionCache) invalidate(payload string) (ackNonce string) {
	kind, id, _ := strings.Cut(payload, ":")
	c.mu.Lock()
	defer c.mu.Unlock()
	if kind == "ack" {
		if w, ok := c.waiters[id]; ok {
			if w.got++; w.got == w.need {
				close(w.done)
			}
		}
		return ""
	}
	c.epoch++
	switch kind {
	case "s":
		for k, e := range c.entries {
			if e.session.ID == id {
				delete(c.entries, k)
			}
		}
	case "u":
		for k, e := range c.entries {
			if e.session.UserID == id {
				delete(c.entries, k)
			}
		}
	case "sync":
		return id
	default: // unknown: be safe
		c.reset()
	}
	return ""
}

// setLive marks the listener up or down; either way the entries go, since
// notifications may have been missed.
func (c *sessionCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
	c.reset()
}

// reset drops every entry and fails every read in flight; c.mu is held.
func (c *sessionCache) reset() {
	c.epoch++
	clear(c.entries)
}

func (c *sessionCache) isLive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// CacheLive reports whether the session cache is on and trusted.
func (s *Service) CacheLive() bool { return s.cache != nil && s.cache.isLive() }

// EnableCache starts answering access-token lookups from memory, kept
// coherent by LISTEN on a dedicated connection to databaseURL (PostgreSQL).
// It returns at once; the cache is used only while that connection is up,
// and the listener reconnects until ctx ends.
func (s *Service) EnableCache(ctx context.Context, databaseURL string) {
	s.cache = newSessionCache()
	go s.listen(ctx, databaseURL)
}

func (s *Service) listen(ctx context.Context, databaseURL string) {
	const firstBackoff = 100 * time.Millisecond
	backoff := firstBackoff
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, databaseURL)
		if s.cache.isLive() {
			backoff = firstBackoff // it was up: this is a new outage
		}
		s.cache.setLive(false)
		if ctx.Err() != nil {
			return
		}
		s.log.WarnContext(ctx, "session cache off: invalidation listener disconnected", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Service) listenOnce(ctx context.Context, databaseURL string) error {
	connectCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.Connect(connectCtx, databaseURL)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+eventStreamChannel); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, listenStatement); err != nil {
		return err
	}
	s.cache.setLive(true)
	s.log.InfoContext(ctx, "session cache on")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Channel == eventStreamChannel {
			s.streamNotified(n.Payload)
			continue
		}
		s.watchInvalidated(n.Payload)
		if nonce := s.cache.invalidate(n.Payload); nonce != "" {
			// Everything before the marker has been applied here.
			go s.notify(context.WithoutCancel(ctx), "ack:"+nonce)
		}
	}
}

// listenStatement is also how instances find each other: it stays the last
// statement of every listener connection in pg_stat_activity.
const listenStatement = "LISTEN " + invalidationChannel

func (s *Service) notify(ctx context.Context, payload string) {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, "SELECT pg_notify(?, ?)", invalidationChannel, payload); err != nil {
		s.log.WarnContext(ctx, "session cache: acknowledging an invalidation", "err", err)
	}
}

// SyncInvalidations waits until this instance's session cache has seen every
// change committed before the call. Tools that change sessions with their
// own SQL call it before relying on the change on this instance; other
// instances see it within milliseconds.
func (s *Service) SyncInvalidations(ctx context.Context) { s.syncInvalidations(ctx) }

// syncInvalidations waits until every listening instance has applied every
// invalidation committed before the call. It sends a marker through the
// channel; each instance acknowledges it after applying what came before it
// (notifications arrive in commit order), and this call returns when as many
// acknowledgements as there are listeners have come back. So a revocation
// answered to a client is already in force on every instance's next request.
// Called after a transaction that ends sessions or rotates tokens; an
// instance that does not answer within syncTimeout is logged, not waited for.
func (s *Service) syncInvalidations(ctx context.Context) {
	w, err := s.sendSync(ctx, s.db)
	if err != nil {
		s.log.WarnContext(ctx, "session cache: sync failed", "err", err)
		s.cache.setLive(false) // cannot confirm: distrust until the listener reconnects
		return
	}
	s.awaitSync(ctx, w)
}

// sendSync sends a sync marker through db and registers its waiter, or
// returns nil when there is no live cache to keep coherent. Sent inside a
// transaction, the marker leaves when the transaction commits, after the
// transaction's own invalidations; the caller then calls awaitSync.
func (s *Service) sendSync(ctx context.Context, db bun.IDB) (*syncWaiter, error) {
	if s.cache == nil || !s.cache.isLive() {
		return nil, nil
	}
	b := make([]byte, 12)
	rand.Read(b)
	// Registered before the marker leaves (acknowledgements can come back
	// before the query does), with need unknown until then.
	w := &syncWaiter{nonce: hex.EncodeToString(b), need: -1, done: make(chan struct{})}
	s.cache.mu.Lock()
	s.cache.waiters[w.nonce] = w
	s.cache.mu.Unlock()
	var listeners int
	err := db.NewRaw(`SELECT count(*) FROM pg_stat_activity, pg_notify(?, ?)
		WHERE datname = current_database() AND query = ?`,
		invalidationChannel, "sync:"+w.nonce, listenStatement).Scan(ctx, &listeners)
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	if err != nil {
		delete(s.cache.waiters, w.nonce)
		return nil, err
	}
	w.need = listeners
	return w, nil
}

// dropSync forgets w; nil is fine.
func (s *Service) dropSync(w *syncWaiter) {
	if w == nil {
		return
	}
	s.cache.mu.Lock()
	delete(s.cache.waiters, w.nonce)
	s.cache.mu.Unlock()
}

// awaitSync waits until as many instances as were listening have
// acknowledged w's marker; nil waits for nothing.
func (s *Service) awaitSync(ctx context.Context, w *syncWaiter) {
	s.changedHere() // after every commit that ends sessions or rotates tokens
	if w == nil {
		return
	}
	defer s.dropSync(w)
	s.cache.mu.Lock()
	done := w.got >= w.need
	s.cache.mu.Unlock()
	if done {
		return
	}
	timer := time.NewTimer(syncTimeout)
	defer timer.Stop()
	select {
	case <-w.done:
	case <-timer.C:
		s.log.WarnContext(ctx, "session cache: not every instance acknowledged a revocation in time")
	case <-ctx.Done():
	}
}
