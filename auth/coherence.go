package auth

import (
	"context"
	"errors"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/database"
)

// # How the caches stay coherent, and why revocation is instant
//
// Every instance LISTENs on invalidationChannel on a dedicated connection.
// Two kinds of message travel on it, and PostgreSQL delivers them to every
// listener in the order their transactions committed:
//
//   - "s:<session>" and "u:<user>", NOTIFYed by a trigger from inside a
//     transaction that revokes or deletes a session or changes a user,
//     unless the transaction is the server's own (see announcing):
//     an operator's SQL, a command without the cache, an older instance
//     (migrations/postgres/…_notify_invalidations,
//     …_rotations_announced_by_heartbeat and
//     …_revocations_announced_by_instance).
//   - heartbeats "h|<instance>|<seq>|<want ack>|<acks>|<sessions>|<users>|
//     <event users>", each sent by one instance in a transaction of its
//     own, never durably (synchronous_commit off), at most one in flight
//     per instance. A heartbeat also carries what this instance's own
//     transactions changed since its last one: the sessions whose tokens it
//     rotated or revoked, the users it changed or deleted, and the users
//     for whom it recorded security events (for the other instances'
//     securityEvents streams). So a refresh, a logout or any revocation
//     NOTIFYs nothing in its own transaction: PostgreSQL holds one lock from
//     a NOTIFYing transaction's commit through its WAL flush, so such
//     commits cannot share a flush, which capped refresh under 1,000/s and
//     logout at a few hundred, and had every heartbeat queue behind them.
//     A heartbeat that wants acknowledgements is a marker; the others
//     acknowledge it in their next heartbeat. (An instance of the version
//     before this one read six fields; it drops its whole cache on the
//     longer heartbeat, which is safe.)
//
// An acknowledgement with nothing else to say goes only to the instance that
// asked, as "a|<instance>|<seq>" on that instance's own channel
// (ackChannel), never durably either: it is for the asker alone, and
// broadcast it would cost every listener a notification, so that a marker
// answered by n-1 others cost n*n deliveries instead of 2n-1. It renews
// nobody's lease (its sender does not hear it back); an instance still
// broadcasts a heartbeat at least every heartbeatEvery, and those alone
// make leases (below).
//
// The lease. An instance trusts its cache at local time t only while it is
// connected and t < s + L, where s is when it began sending a heartbeat of
// its own that has since come back through its LISTEN connection. All times
// are read from the local monotonic clock and compared only with each other:
// no two instances' wall clocks are ever compared, and the database's clock
// is not needed either. Because delivery is in commit order, an instance that
// has received its heartbeat sent at s has applied every invalidation
// committed before s. (Applying means evicting; an entry read from the
// database is stored only if no invalidation arrived while the read was in
// flight, see sessionCache.get, so a read that raced one is never kept.)
// So (I) an instance trusting its cache at t has applied every invalidation
// committed before t - L. An instance whose LISTEN
// connection stalls hears nothing back and stops trusting its cache within L,
// without needing the connection to fail; a watchdog then reconnects it.
//
// The wait. A revoking request, once its change is in the stream (the commit
// of a trigger-notified change, or the commit of the heartbeat carrying the
// change, returned at local time T), waits until every instance has applied
// it or stopped trusting its cache, and only then answers:
//
//  1. At the latest, until T + L + leaseMargin: by (I), any instance trusting
//     its cache after that has applied the change. This holds even when
//     nothing comes back at all (a stall anywhere).
//  2. Sooner: it sends a marker after T and waits until the marker comes
//     back through its own listener, connected since C. Every instance J
//     that could be trusting its cache on a heartbeat committed before the
//     marker sent that heartbeat within the last L. If it committed after C,
//     this listener saw it go by (at local time seen_J) before the marker;
//     for each such J the wait ends when J acknowledges the marker (J
//     processes in commit order: it has applied the change) or at seen_J + L
//     + leaseMargin (J's lease on heartbeats before the marker has run out:
//     J sent them before this instance saw them). If it committed before C,
//     J sent it before C, and its lease is over at C + L + leaseMargin, so
//     the wait never ends before that. An instance never seen has, if it
//     trusts its cache, a lease on a heartbeat committed after the marker:
//     it has applied the change. With one instance the wait is one
//     heartbeat's round trip; with healthy others, two (plus up to
//     markerSpacing under a stream of writes); with a stalled one,
//     at most L (plus margin); in an instance's first L, until C + L.
//
// So when a revoking request returns, no instance accepts the token: each has
// either evicted it or bypasses its cache (and reads the database, which
// says revoked). leaseMargin covers the rate difference of two monotonic
// clocks (parts per million) and scheduling delay between reading the clock
// and the comparison. A request whose heartbeat cannot be committed within L
// answers SERVICE_UNAVAILABLE (a refresh rather than a pair whose
// predecessor may still be accepted elsewhere); the change stays queued and
// is announced with the next heartbeat that commits, and a retry announces
// it again (a refresh's copy; a logout or revokeSession of a session that
// ended within cacheTTL).
//
// The one case the wait cannot cover: an instance that dies between a
// commit and its heartbeat never answers that request, and nothing will
// announce the change. But a dead instance also stops heartbeating: every
// instance that saw its heartbeats drops its whole cache once they have
// stopped for peerSilence (forgetSilent, checked every heartbeatEvery), and
// reads the database from then on. So the old access token stays usable
// elsewhere for at most about peerSilence + heartbeatEvery after the
// instance died, not cacheTTL. An instance whose heartbeats stall costs the
// others the same: caches refilled from the database, never a token
// accepted that should not be.
//
// An instance that stops on purpose says goodbye instead (LeaveCache), so
// that a rolling deploy does not empty every other cache once per instance
// it stops. Once its HTTP server has drained, it (1) refuses every change
// of its own from then on and waits for those in flight, whose changes are
// then queued or in the stream (admitWrite: a read lock from before the transaction to the
// end of its announcement); (2) stops trusting its own cache, so it accepts
// no token from memory any more; (3) sends one last heartbeat, with "b" in
// place of the marker flag, once that heartbeat carries everything still
// queued, and nothing after it. An instance that applies the goodbye has
// therefore applied every change the leaver committed (commit order), and
// forgets it without dropping anything; its waiters stop waiting for the
// leaver, which trusts its cache no more. A goodbye that never commits is
// silence, handled as above.
const (
	invalidationChannel = "sessionauth_invalidate"
	// leaseDuration is L: how long a heartbeat's round trip keeps an
	// instance's cache trusted, and the longest a revoking request waits.
	leaseDuration = time.Second
	leaseMargin   = 100 * time.Millisecond
	// heartbeatEvery is how often an idle instance renews its lease.
	heartbeatEvery = leaseDuration / 4
	// heartbeatSpacing is the least time between two heartbeats of one
	// instance, so that a burst of revocations shares one.
	heartbeatSpacing = time.Millisecond
	// markerSpacing is the least time between two heartbeats of one
	// instance while other instances listen, unless it has only an
	// acknowledgement to send. Every marker costs each other instance a
	// wake-up and an acknowledgement (a NOTIFY, which PostgreSQL signals to
	// every listener), so under a stream of writes the writes of one
	// spacing share a marker. Too short, and the acknowledgements take the
	// CPU the writes need; too long, and the writes wait for it with the
	// CPU idle. With 32 clients writing through one of four instances
	// (BENCHMARKS.md, "Issue 10, fifth pass"): on a machine where one
	// instance refreshed about 950 times a second, 10 and 20 ms gave
	// 750-895 req/s and 1 ms 666-788; on one twice as fast, 10 ms gave
	// 1,637-1,820, 20 ms 1,515-1,543 (a quarter of the CPU idle) and 1 or 5 ms
	// 1,438-1,623 (the CPU saturated by the acknowledgements).
	// A lone write never waits for it (the last heartbeat is older), and a
	// single instance, with nobody to acknowledge, does not space them.
	markerSpacing = 10 * time.Millisecond
	// watchdogAfter is how long without an own heartbeat back before the
	// LISTEN connection is presumed stalled and replaced.
	watchdogAfter = 3 * leaseDuration
	// peerSilence is how long another instance's heartbeats may stop
	// before it is presumed gone, perhaps with changes it committed and
	// never announced: the cache is then dropped (see "The one case" above).
	// A live instance renews every heartbeatEvery; one whose heartbeats
	// cannot commit for this long has long stopped trusting its own cache.
	peerSilence = 2 * leaseDuration
	// maxEvictionsPerHeartbeat keeps a payload well under PostgreSQL's
	// 8,000 bytes (37 bytes a session or user).
	maxEvictionsPerHeartbeat = 150
)

// ackChannel is where instance id hears acknowledgements meant for it alone.
func ackChannel(id string) string { return "sessionauth_ack_" + id }

// outbox is what the next heartbeat carries; guarded by sessionCache.mu.
type outbox struct {
	seq    uint64
	sentAt map[uint64]time.Time // own heartbeats in flight, by seq
	evict  []eviction           // rotated sessions not yet announced
	acks   map[string]uint64    // peer -> its latest marker to acknowledge
	last   time.Time            // when the last message started
	beat   time.Time            // when the last heartbeat (broadcast) started
}

// outgoing is one message of the heartbeat sender: a heartbeat (seq > 0),
// or an acknowledgement for one peer alone.
type outgoing struct {
	channel, payload string
	seq              uint64
	taken            []eviction
	ackTo            string
	ackSeq           uint64
	bye              bool // the goodbye: nothing is sent after it
}

// eviction is one change a heartbeat carries: a session, a user, or a
// user's new events (exactly one of the three is set), and the request
// waiting for it.
type eviction struct {
	session, user, events string
	w                     *syncWaiter
}

// peer is another instance as this one's listener saw it.
type peer struct {
	seen  time.Time // when its last heartbeat went by
	acked uint64    // the latest of our markers it acknowledged
}

// syncWaiter is one revoking request waiting for the others.
type syncWaiter struct {
	since    time.Time // after the change was in the stream (trigger) or queued (carried)
	carried  bool      // the change travels in our heartbeat, not by trigger
	marker   uint64    // the heartbeat that serves as its marker; 0 until sent
	inStream time.Time // when the change was known to be committed in the stream
	seenBack bool      // the marker came back through our listener
	floor    time.Time // step 2 never ends before: connected + L + margin
	pending  map[string]time.Time
	done     bool
	err      error
	wake     chan struct{}
}

// EnableCache starts answering access-token lookups from memory, kept
// coherent by LISTEN on a dedicated connection to databaseURL (PostgreSQL)
// and by heartbeats sent through the service's pool. It returns at once; the
// cache is trusted only while its lease holds (see above), and the listener
// reconnects until ctx ends. Config.SessionCacheSize bounds the entries.
//
// The same listener wakes the outbox's deliverers when events commit (in
// place of DeliverEvents' own listener, when EnableCache is called first).
func (s *Service) EnableCache(ctx context.Context, databaseURL string) {
	s.cache = newSessionCache(s.cfg.SessionCacheSize)
	go s.listen(ctx, databaseURL)
	go s.heartbeats(ctx)
}

func (s *Service) listen(ctx context.Context, databaseURL string) {
	const firstBackoff = 100 * time.Millisecond
	backoff := firstBackoff
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, databaseURL)
		c := s.cache
		c.mu.Lock()
		if c.connected && time.Since(c.connectedAt) > watchdogAfter {
			backoff = firstBackoff // it was up for a while: a new outage
		}
		c.connected, c.leaseUntil = false, time.Time{}
		c.reset()
		c.mu.Unlock()
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

// errStalled ends a LISTEN connection on which no own heartbeat came back.
var errStalled = errors.New("no heartbeat came back within " + watchdogAfter.String())

func (s *Service) listenOnce(ctx context.Context, databaseURL string) error {
	l, err := database.Listen(ctx, databaseURL, eventStreamChannel, invalidationChannel, ackChannel(s.cache.self))
	if err != nil {
		return err
	}
	connCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	defer l.Close()
	c := s.cache
	now := time.Now()
	c.mu.Lock()
	c.connected, c.connectedAt, c.lastOwn = true, now, now
	c.leaseUntil, c.lapsed = time.Time{}, false
	clear(c.out.sentAt) // only heartbeats sent from now on renew the lease
	c.reset()
	c.mu.Unlock()
	c.nudge()
	s.events.signal() // deliverers: catch up with what committed before LISTEN
	s.log.InfoContext(ctx, "session cache listening")
	go s.watchdog(connCtx, stop)
	for {
		n, err := l.WaitForNotification(connCtx)
		if err != nil {
			if cause := context.Cause(connCtx); cause != nil && ctx.Err() == nil {
				return cause
			}
			return err
		}
		switch n.Channel {
		case eventStreamChannel:
			// Events committed: securityEvents (eventstream.go) and the
			// outbox's deliverers (outbox.go).
			s.streamNotified(n.Payload)
			s.events.signal()
			continue
		case invalidationChannel:
		default:
			s.cache.applyAck(n.Payload)
			continue
		}
		s.watchInvalidated(n.Payload) // subscriptions' sessions (watch.go)
		if users := s.apply(n.Payload); users != "" {
			// Another instance recorded events for these users.
			s.wakeStreams(strings.Split(users, ",")...)
		}
	}
}

// watchdog ends the LISTEN connection when nothing of ours has come back on
// it for watchdogAfter: a silent stall that TCP would take minutes to notice.
func (s *Service) watchdog(ctx context.Context, stop context.CancelCauseFunc) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c := s.cache
			c.mu.Lock()
			stale := now.Sub(c.lastOwn) > watchdogAfter
			gone := c.forgetSilent(now)
			lapsed := !c.lapsed && !now.Before(c.leaseUntil) && now.Sub(c.connectedAt) > leaseDuration
			if lapsed {
				c.lapsed = true // said once per lapse
			}
			c.mu.Unlock()
			if lapsed {
				s.log.WarnContext(ctx, "session cache distrusted: no heartbeat came back within the lease", "lease", leaseDuration)
			}
			if len(gone) > 0 {
				s.log.WarnContext(ctx, "session cache dropped: other instances fell silent and may have died before announcing their last changes", "instances", gone, "silent_for", peerSilence)
			}
			if stale {
				stop(errStalled)
				return
			}
		}
	}
}

// apply handles one notification, in commit order. It returns the users
// for whom another instance's heartbeat says events were recorded.
func (s *Service) apply(payload string) (eventUsers string) {
	c := s.cache
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	kind, rest, _ := strings.Cut(payload, ":")
	switch kind {
	case "s":
		c.evictSession(rest)
		return
	case "u":
		c.evictUser(rest)
		return
	case "sync", "ack": // from an instance of the version before leases
		return ""
	}
	f := strings.Split(payload, "|")
	seq, err := strconv.ParseUint(f[min(2, len(f)-1)], 10, 64)
	if len(f) != 8 && len(f) != 6 || f[0] != "h" || err != nil {
		c.reset() // unknown: be safe
		return ""
	}
	from, wantAck, leaving, acks := f[1], f[3] == "1", f[3] == "b", f[4]
	for id := range listed(f[5]) {
		c.evictSession(id)
	}
	if len(f) == 8 { // six fields: an instance of the version before
		for id := range listed(f[6]) {
			c.evictUser(id)
		}
		eventUsers = f[7]
	}
	if from == c.self {
		if sent, ok := c.out.sentAt[seq]; ok {
			// Everything committed before sent has now been applied.
			if until := sent.Add(leaseDuration); until.After(c.leaseUntil) {
				c.leaseUntil = until
			}
			c.lastOwn, c.lapsed = now, false
			for k := range c.out.sentAt {
				if k <= seq {
					delete(c.out.sentAt, k)
				}
			}
		}
		c.markerBack(seq, now)
		return "" // its streams were woken at its commit
	}
	p := c.peers[from]
	if p == nil {
		p = &peer{}
		c.peers[from] = p
	}
	p.seen = now
	if acks != "" {
		for a := range strings.SplitSeq(acks, ",") {
			inst, n, _ := strings.Cut(a, ".")
			if m, err := strconv.ParseUint(n, 10, 64); err == nil && inst == c.self && m > p.acked {
				p.acked = m
			}
		}
		c.settle(now)
	}
	if leaving {
		// Its goodbye: every change it committed is applied above, and it
		// trusts its cache no more (see "says goodbye" above).
		delete(c.peers, from)
		c.settle(now)
		return eventUsers
	}
	if wantAck {
		c.out.acks[from] = seq
		c.nudge()
	}
	return eventUsers
}

// listed yields the entries of a comma-separated list, none for "".
func listed(list string) iter.Seq[string] {
	if list == "" {
		return func(func(string) bool) {}
	}
	return strings.SplitSeq(list, ",")
}

// forgetSilent forgets the instances whose heartbeats went by once and then
// stopped for peerSilence, and when there were any, drops every entry and
// fails the reads in flight: a change such an instance committed may never
// be announced (see "The one case" above). It returns their ids; c.mu is
// held.
func (c *sessionCache) forgetSilent(now time.Time) (gone []string) {
	for id, p := range c.peers {
		switch {
		case p.seen.IsZero():
			// Known only from an acknowledgement: no waiter counts on
			// it (see markerBack), and its next heartbeat dates it.
			delete(c.peers, id)
		case now.Sub(p.seen) > peerSilence:
			delete(c.peers, id)
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 {
		c.reset()
	}
	return gone
}

// applyAck handles "a|<peer>|<seq>": peer has applied our marker seq.
func (c *sessionCache) applyAck(payload string) {
	f := strings.Split(payload, "|")
	if len(f) != 3 || f[0] != "a" {
		return // not ours to judge: an unknown acknowledgement proves nothing
	}
	m, err := strconv.ParseUint(f[2], 10, 64)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[f[1]]
	if p == nil {
		// Not seen yet: no waiter counts on it (see markerBack); its
		// next heartbeat will date it.
		p = &peer{}
		c.peers[f[1]] = p
	}
	if m > p.acked {
		p.acked = m
	}
	c.settle(time.Now())
}

// markerBack starts step 2 for the waiters whose marker is seq; c.mu is held.
func (c *sessionCache) markerBack(seq uint64, now time.Time) {
	for w := range c.waiters {
		if w.marker != seq || w.seenBack {
			continue
		}
		w.seenBack = true
		w.floor = c.connectedAt.Add(leaseDuration + leaseMargin)
		w.pending = map[string]time.Time{}
		for id, p := range c.peers {
			if p.seen.After(w.since.Add(-leaseDuration-leaseMargin)) && p.acked < seq {
				w.pending[id] = p.seen.Add(leaseDuration + leaseMargin)
			}
		}
	}
	c.settle(now)
}

// settle finishes the waiters that have nothing left to wait for; c.mu is
// held.
func (c *sessionCache) settle(now time.Time) {
	for w := range c.waiters {
		if w.done {
			continue
		}
		if w.check(c, now) {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

// check decides whether w may return at now, and records it; c.mu is held.
func (w *syncWaiter) check(c *sessionCache, now time.Time) bool {
	if w.done {
		return true
	}
	switch {
	case !w.inStream.IsZero() && !now.Before(w.inStream.Add(leaseDuration+leaseMargin)):
		w.done = true // step 1
	case w.carried && w.inStream.IsZero() && !now.Before(w.since.Add(leaseDuration)):
		w.done, w.err = true, errUnavailable // the change never left
	case w.seenBack && !now.Before(w.floor) && (!w.carried || !w.inStream.IsZero()):
		for id, deadline := range w.pending {
			// A peer no longer listed said goodbye (it trusts its
			// cache no more) or fell silent past its deadline.
			if p := c.peers[id]; p == nil || p.acked >= w.marker || !now.Before(deadline) {
				delete(w.pending, id)
			}
		}
		w.done = len(w.pending) == 0 // step 2
	}
	return w.done
}

// next is when w should look again if nothing wakes it; c.mu is held.
func (w *syncWaiter) next() time.Time {
	t := w.since.Add(leaseDuration + leaseMargin)
	if !w.inStream.IsZero() {
		t = w.inStream.Add(leaseDuration + leaseMargin)
	}
	if w.seenBack {
		t = minTime(t, w.floor)
		for _, d := range w.pending {
			if d.Before(w.floor) {
				d = w.floor
			}
			t = minTime(t, d)
		}
	}
	return t
}

func (c *sessionCache) nudge() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// heartbeats sends this instance's heartbeats: every heartbeatEvery when
// idle, and as soon as (but no sooner than heartbeatSpacing after the last)
// a waiter, an acknowledgement or a rotation needs one. One is in flight at
// a time, so a burst shares it.
func (s *Service) heartbeats(ctx context.Context) {
	c := s.cache
	idle := time.NewTimer(0)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-idle.C:
		}
		c.mu.Lock()
		wait := time.Until(c.out.last.Add(heartbeatSpacing))
		if c.othersAcknowledge(time.Now()) {
			wait = max(wait, time.Until(c.out.beat.Add(markerSpacing)))
		}
		c.mu.Unlock()
		if wait > 0 {
			time.Sleep(wait)
		}
		msg := c.compose()
		sendCtx, cancel := context.WithTimeout(ctx, leaseDuration)
		err := s.dialect.Notify(sendCtx, s.db, msg.channel, msg.payload, true)
		cancel()
		c.sent(msg, err, time.Now())
		if msg.bye && err == nil {
			close(c.bye)
			return
		}
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "session cache: sending a heartbeat", "err", err)
		}
		c.mu.Lock()
		due := time.Until(c.out.beat.Add(heartbeatEvery))
		c.mu.Unlock()
		idle.Reset(max(due, heartbeatSpacing))
	}
}

// othersAcknowledge reports whether the next message would be a heartbeat
// that other instances would acknowledge, were it a marker: it is not an
// acknowledgement alone, and another instance's heartbeat went by within the
// lease; c.mu is held.
func (c *sessionCache) othersAcknowledge(now time.Time) bool {
	if _, _, alone := c.ackOnly(now); alone {
		return false
	}
	for _, p := range c.peers {
		if now.Sub(p.seen) < leaseDuration+leaseMargin {
			return true
		}
	}
	return false
}

// compose builds the next message: an acknowledgement for one peer alone
// when that is all there is to say, else a heartbeat, which it assigns as
// marker to the waiters that need one.
func (c *sessionCache) compose() outgoing {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.out.last = now
	if peer, m, ok := c.ackOnly(now); ok {
		delete(c.out.acks, peer)
		return outgoing{channel: ackChannel(peer), payload: "a|" + c.self + "|" + strconv.FormatUint(m, 10), ackTo: peer, ackSeq: m}
	}
	c.out.beat = now
	c.out.seq++
	seq := c.out.seq
	c.out.sentAt[seq] = now // before the NOTIFY is sent: never later than it
	n := min(len(c.out.evict), maxEvictionsPerHeartbeat)
	taken := c.out.evict[:n:n]
	c.out.evict = c.out.evict[n:]
	want := false
	for w := range c.waiters {
		if w.marker == 0 && !w.done && (!w.carried || hasWaiter(taken, w) && !hasWaiter(c.out.evict, w)) {
			w.marker, want = seq, true // the last of w's changes leaves with it
		}
	}
	bye := c.leaving && !want && len(c.out.evict) == 0
	var b strings.Builder
	b.WriteString("h|" + c.self + "|" + strconv.FormatUint(seq, 10) + "|")
	switch {
	case want:
		b.WriteString("1|")
	case bye:
		b.WriteString("b|")
	default:
		b.WriteString("0|")
	}
	first := true
	for peer, m := range c.out.acks {
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(peer + "." + strconv.FormatUint(m, 10))
	}
	clear(c.out.acks)
	for _, field := range []func(eviction) string{
		func(e eviction) string { return e.session },
		func(e eviction) string { return e.user },
		func(e eviction) string { return e.events },
	} {
		b.WriteByte('|')
		first := true
		for _, e := range taken {
			if v := field(e); v != "" {
				if !first {
					b.WriteByte(',')
				}
				first = false
				b.WriteString(v)
			}
		}
	}
	return outgoing{channel: invalidationChannel, payload: b.String(), seq: seq, taken: taken, bye: bye}
}

// ackOnly returns the acknowledgement to send alone: when it is the only one
// owed, nothing else waits to be said, and no heartbeat is due; c.mu is
// held.
func (c *sessionCache) ackOnly(now time.Time) (string, uint64, bool) {
	if len(c.out.acks) != 1 || len(c.out.evict) > 0 || c.leaving || now.Sub(c.out.beat) >= heartbeatEvery {
		return "", 0, false
	}
	for w := range c.waiters {
		if w.marker == 0 && !w.done {
			return "", 0, false // it needs a heartbeat as its marker
		}
	}
	for peer, m := range c.out.acks {
		return peer, m, true
	}
	return "", 0, false
}

func hasWaiter(evs []eviction, w *syncWaiter) bool {
	for _, e := range evs {
		if e.w == w {
			return true
		}
	}
	return false
}

// sent records the outcome of heartbeat seq: committed (its evictions are in
// the stream from now on), or failed (they go back to the queue, and its
// waiters need another marker).
func (c *sessionCache) sent(msg outgoing, err error, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seq, taken := msg.seq, msg.taken
	if msg.seq == 0 { // an acknowledgement alone
		if m, ok := c.out.acks[msg.ackTo]; err != nil && (!ok || m < msg.ackSeq) {
			c.out.acks[msg.ackTo] = msg.ackSeq // owed still
		}
		if len(c.out.acks) > 0 || len(c.out.evict) > 0 {
			c.nudge()
		}
		return
	}
	if err != nil {
		delete(c.out.sentAt, seq)
		c.out.evict = append(taken, c.out.evict...)
		for w := range c.waiters {
			if w.marker == seq {
				w.marker = 0
			}
		}
		c.nudge()
		return
	}
	for w := range c.waiters {
		if w.marker == seq && w.inStream.IsZero() {
			w.inStream = now
		}
	}
	if len(c.out.evict) > 0 || len(c.out.acks) > 0 {
		c.nudge()
	}
	for w := range c.waiters {
		if w.marker == 0 && !w.done {
			c.nudge()
			break
		}
	}
	c.settle(now)
}

// SyncInvalidations waits until every instance has applied every change
// committed before the call, or stopped trusting its cache. Tools that
// change sessions with their own SQL (the trigger announces it) call it
// before they report the change done.
func (s *Service) SyncInvalidations(ctx context.Context) { s.syncInvalidations(ctx) }

// syncInvalidations is called after a transaction whose change the trigger
// announced (a revocation, a changed user): it returns when every instance
// has applied it or distrusts its cache (see the top of this file).
func (s *Service) syncInvalidations(ctx context.Context) {
	s.changedHere() // subscriptions' sessions (watch.go)
	if s.cache == nil {
		return
	}
	now := time.Now()
	// The commit has returned: the change is in the stream.
	w := &syncWaiter{since: now, inStream: now, wake: make(chan struct{}, 1)}
	c := s.cache
	c.mu.Lock()
	c.waiters[w] = struct{}{}
	c.mu.Unlock()
	s.await(ctx, w)
}

// announceRotation tells every instance that session's access token was
// rotated away, and returns when each has dropped it or distrusts its
// cache. A refresh calls it after its commit; the rotation travels in this
// instance's next heartbeat, so the refresh transaction NOTIFYs nothing.
// Errors: SERVICE_UNAVAILABLE when no heartbeat could carry it within
// leaseDuration (it stays queued for the next).
func (s *Service) announceRotation(ctx context.Context, session string) error {
	return s.announce(ctx, &announcement{sessions: []string{session}})
}

// announcement is what one of the server's own transactions changed, which
// this instance announces in its heartbeat after the commit instead of the
// triggers (and recordEvent) NOTIFYing from inside the transaction.
type announcement struct {
	sessions []string // revoked, deleted or rotated
	users    []string // changed or deleted, with all their sessions
	events   []string // users for whom events were recorded
	// quiet: the triggers and recordEvent are silent for the transaction
	// (the cache runs); otherwise they announce, and the lists only say
	// whether anything changed.
	quiet bool
	// release ends the change's admission (admitWrite) once announced.
	release func()
}

type announcementKey struct{}

// announcing marks the transaction tx, at its start, as one whose changes
// of sessions and users this instance announces itself (announce, after the
// commit): it silences the triggers for tx, and returns a ctx under which
// revokeSession, revokeOthers and recordEvent note what they change in a
// (the caller notes what it changes with its own SQL). Without the cache
// (SQLite, SESSION_CACHE=false) the triggers still announce, and a only
// tells announce whether anything changed.
func (s *Service) announcing(ctx context.Context, tx bun.Tx) (context.Context, *announcement, error) {
	a := &announcement{quiet: s.cache != nil}
	if a.quiet {
		if _, err := tx.ExecContext(ctx, "SELECT set_config('sessionauth.announced', 'on', true)"); err != nil {
			return ctx, nil, err
		}
	}
	return context.WithValue(ctx, announcementKey{}, a), a, nil
}

// runAnnounced runs fn in a transaction that announcing marks, and returns
// the announcement fn's changes filled, for announce after the commit. The
// change is admitted (admitWrite) until announce returns.
// Errors: SERVICE_UNAVAILABLE once the instance has left (LeaveCache).
func (s *Service) runAnnounced(ctx context.Context, fn func(ctx context.Context, tx bun.Tx, a *announcement) error) (*announcement, error) {
	release, err := s.admitWrite()
	if err != nil {
		return nil, err
	}
	var a *announcement
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		ctx, marked, err := s.announcing(ctx, tx)
		if err != nil {
			return err
		}
		a = marked
		return fn(ctx, tx, a)
	})
	if err != nil {
		release()
		return a, err
	}
	a.release = release
	return a, nil
}

// admitWrite admits one change of this instance's own, announced in its
// heartbeat: the caller calls release once the change is announced (or
// abandoned). LeaveCache waits for the changes admitted, and none is
// admitted after it (see "says goodbye" above). An admitted change never
// asks for another admission before its release: a read lock taken again
// while LeaveCache waits for the write lock would wait forever.
// Errors: SERVICE_UNAVAILABLE once the instance has left.
func (s *Service) admitWrite() (release func(), err error) {
	c := s.cache
	if c == nil {
		return func() {}, nil
	}
	c.gate.RLock()
	if c.left {
		c.gate.RUnlock()
		return nil, errUnavailable
	}
	return c.gate.RUnlock, nil
}

// LeaveCache says goodbye to the other instances, so that they keep their
// caches when this one's heartbeats stop (see "says goodbye" above). Call it
// when the instance serves no request any more (its HTTP server has
// drained), before its background work stops (the heartbeats must still
// run). From then on every change of its own is refused
// (SERVICE_UNAVAILABLE; an event handler's is delivered again later,
// possibly elsewhere) and its cache is not trusted. It returns true once the goodbye has committed, false when ctx
// ends first or the cache is off: the others then treat the silence as a
// death, which is safe.
func (s *Service) LeaveCache(ctx context.Context) bool {
	c := s.cache
	if c == nil {
		return false
	}
	closed := make(chan struct{})
	go func() { // the changes in flight end within their requests' timeouts
		defer close(closed)
		c.gate.Lock()
		c.left = true
		c.gate.Unlock()
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		return false
	}
	c.mu.Lock()
	c.leaving = true
	c.mu.Unlock()
	c.nudge()
	select {
	case <-c.bye:
		return true
	case <-ctx.Done():
		return false
	}
}

// announcementOf returns the announcement of ctx's transaction, nil when
// there is none.
func announcementOf(ctx context.Context) *announcement {
	a, _ := ctx.Value(announcementKey{}).(*announcement)
	return a
}

// quietly returns ctx's announcement when its transaction's changes are
// this instance's to announce, nil when the triggers and recordEvent
// announce them from inside the transaction.
func quietly(ctx context.Context) *announcement {
	if a := announcementOf(ctx); a != nil && a.quiet {
		return a
	}
	return nil
}

// announce, after the commit of a transaction marked by announcing, tells
// every instance what it changed and returns when each has applied it or
// distrusts its cache. It wakes this instance's deliverers and streams at
// once; the others' streams hear of the events in the heartbeat, and their
// deliverers find them in their next poll if this instance fails to deliver.
// Without the cache it waits for nothing (the triggers announced).
// Errors: SERVICE_UNAVAILABLE when no heartbeat could carry it within
// leaseDuration (it stays queued for the next).
func (s *Service) announce(ctx context.Context, a *announcement) error {
	if a.release != nil {
		defer a.release()
	}
	if len(a.sessions)+len(a.users)+len(a.events) == 0 {
		return nil // nothing changed
	}
	s.changedHere() // subscriptions' sessions (watch.go)
	if s.cache == nil {
		return nil
	}
	if len(a.events) > 0 {
		s.events.signal()
		s.wakeStreams(a.events...)
	}
	w := &syncWaiter{since: time.Now(), carried: true, wake: make(chan struct{}, 1)}
	c := s.cache
	c.mu.Lock()
	// Queued and registered at once: a heartbeat composed in between would
	// carry the change without becoming this waiter's marker.
	for _, id := range a.sessions {
		c.out.evict = append(c.out.evict, eviction{session: id, w: w})
		c.evictSession(id) // here at once; the heartbeat tells the others
	}
	for _, id := range a.users {
		c.out.evict = append(c.out.evict, eviction{user: id, w: w})
		c.evictUser(id)
	}
	for _, id := range a.events {
		c.out.evict = append(c.out.evict, eviction{events: id, w: w})
	}
	c.waiters[w] = struct{}{}
	c.mu.Unlock()
	return s.await(ctx, w)
}

// await waits for w, which the caller registered in c.waiters.
func (s *Service) await(ctx context.Context, w *syncWaiter) error {
	c := s.cache
	c.nudge()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, w)
		c.mu.Unlock()
	}()
	timer := time.NewTimer(leaseDuration)
	defer timer.Stop()
	for {
		now := time.Now()
		c.mu.Lock()
		done, err, next := w.check(c, now), w.err, w.next()
		c.mu.Unlock()
		if done {
			if err != nil {
				s.log.WarnContext(ctx, "session cache: a change could not be announced in time")
			}
			return err
		}
		timer.Reset(max(time.Until(next), time.Millisecond))
		select {
		case <-w.wake:
		case <-timer.C:
		case <-ctx.Done():
			return dbError(ctx.Err())
		}
	}
}
