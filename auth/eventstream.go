package auth

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// Streaming security events as they are recorded (API.md, "Subscriptions":
// securityEvents), on whichever instance they are recorded. The recording
// transaction announces the accounts it wrote events for (recorded, in
// events.go): on PostgreSQL with a notification on eventStreamChannel,
// delivered at commit to every instance's invalidation listener
// (coherence.go); on SQLite, which cannot notify, in-process. A stream,
// woken for its account, reads the account's events recorded since it
// started and sends those it has not sent yet, in order of (at, id). While notifications cannot be trusted (no session
// cache, its listener down) streams also look every watchPoll.
//
// Before a connection is closed because its session ended, DrainEvents has
// its streams send what the ending recorded (SESSION_REVOKED, SIGNED_OUT...)
// and complete: the device learns why it was signed out.

// eventStreamChannel carries the user id of each transaction that recorded
// security events for that user.
const eventStreamChannel = "sessionauth_security_event"

type eventStream struct {
	svc   *Service
	ctx   context.Context // the consumer's: the stream ends with it
	user  string
	since time.Time
	// send hands one event to the consumer; false when ctx ended first.
	send func(context.Context, *models.SecurityEvent) bool
	end  func() // closes the consumer's channel

	// A stream has no goroutine of its own (one per connection is memory,
	// BENCHMARKS.md): each wake runs sendNew on a short-lived goroutine,
	// coalesced by pending, and mu serialises sendNew with the end.
	pending atomic.Int32
	mu      sync.Mutex
	sent    map[string]struct{} // guarded by mu
	ended   bool                // guarded by mu
	done    chan struct{}       // closed when the consumer's context has ended
}

// streamHub is a Service's event streams by user; its zero value is ready.
type streamHub struct {
	mu      sync.Mutex
	byUser  map[string]map[*eventStream]struct{}
	polling bool // the SQLite poller runs
}

// SecurityEventStream returns who's security events as they are recorded
// from now on, on any instance, each passed through convert (a resolver's
// conversion to its GraphQL type), until ctx ends: then the channel is
// closed. The context must be a connection's (AuthenticateConnection) for
// DrainEvents to reach the stream.
func SecurityEventStream[T any](ctx context.Context, s *Service, who *Identity, convert func(*models.SecurityEvent) T) <-chan T {
	out := make(chan T)
	st := &eventStream{
		svc: s, ctx: ctx, user: who.User.ID, since: who.Now, sent: map[string]struct{}{},
		done: make(chan struct{}),
		send: func(ctx context.Context, e *models.SecurityEvent) bool {
			select {
			case out <- convert(e):
				return true
			case <-ctx.Done():
				return false
			}
		},
		end: func() { close(out) },
	}
	h := &s.streams
	h.mu.Lock()
	if h.byUser == nil {
		h.byUser = map[string]map[*eventStream]struct{}{}
	}
	if h.byUser[st.user] == nil {
		h.byUser[st.user] = map[*eventStream]struct{}{}
	}
	h.byUser[st.user][st] = struct{}{}
	if !s.dialect.CanListen() && !h.polling {
		h.polling = true
		go s.pollStreams()
	}
	h.mu.Unlock()
	r := requestFromContext(ctx)
	if r != nil {
		r.subjectMu.Lock()
		r.streams = append(r.streams, st)
		r.subjectMu.Unlock()
	}
	context.AfterFunc(ctx, func() {
		if r != nil {
			r.subjectMu.Lock()
			r.streams = slices.DeleteFunc(r.streams, func(x *eventStream) bool { return x == st })
			r.subjectMu.Unlock()
		}
		h.mu.Lock()
		delete(h.byUser[st.user], st)
		if len(h.byUser[st.user]) == 0 {
			delete(h.byUser, st.user)
		}
		h.mu.Unlock()
		st.finish(false)
		close(st.done)
	})
	return out
}

// kick has st send what is new, on a goroutine of its own unless one is
// already at it (it then looks once more).
func (st *eventStream) kick() {
	if st.pending.Add(1) != 1 {
		return
	}
	go func() {
		for {
			n := st.pending.Load()
			st.svc.sendNew(st)
			if st.pending.Add(-n) == 0 {
				return
			}
		}
	}()
}

// finish sends what is left (drain, for DrainEvents) or nothing (the
// context ended), then closes the consumer's channel, once.
func (st *eventStream) finish(drain bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ended {
		return
	}
	if drain {
		st.svc.sendNewLocked(st)
	}
	st.ended = true
	st.end()
}

// A stream is woken by a notification for its user, by the watch's checker
// when notifications become trusted again (catching up with what a listener
// outage kept from it: a stream reads everything since it began that it has
// not sent, so a missed notification delays an event, never loses it), and on
// SQLite every streamPoll for what another process recorded. It does not poll
// on PostgreSQL: thousands of streams each polling would take the pool from
// everything else just when the listener is down.

// pollStreams wakes every stream each streamPoll while there are any, where
// the database cannot notify (SQLite).
func (s *Service) pollStreams() {
	tick := time.NewTicker(streamPoll)
	defer tick.Stop()
	for range tick.C {
		h := &s.streams
		h.mu.Lock()
		if len(h.byUser) == 0 {
			h.polling = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		s.wakeAllStreams()
	}
}

// sendNew sends the events of st's user recorded since st began that it has
// not sent, unless st has ended.
func (s *Service) sendNew(st *eventStream) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.ended {
		s.sendNewLocked(st)
	}
}

// sendNewLocked is sendNew with st.mu held; it gives up when st's context
// ends.
func (s *Service) sendNewLocked(st *eventStream) {
	ctx := st.ctx
	rctx, cancel := context.WithTimeout(ctx, watchReadTimeout)
	var events []*models.SecurityEvent
	err := s.db.NewSelect().Model(&events).
		Where("user_id = ?", st.user).Where("at >= ?", st.since).
		Order("at", "id").Limit(MaxEventPage).Scan(rctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			s.log.WarnContext(ctx, "securityEvents: reading new events", "err", err)
		}
		return
	}
	for _, e := range events {
		if _, ok := st.sent[e.ID]; ok {
			continue
		}
		if !st.send(ctx, e) {
			return
		}
		st.sent[e.ID] = struct{}{}
	}
}

// streamPoll is how often a stream looks for events on SQLite, where
// another process (the operator's command) may record some.
const streamPoll = 2 * time.Second

// wakeAllStreams wakes every stream: notifications may have been missed.
func (s *Service) wakeAllStreams() {
	h := &s.streams
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.byUser {
		for st := range set {
			st.kick()
		}
	}
}

// wakeStreams wakes the streams of users, after their events committed.
func (s *Service) wakeStreams(users ...string) {
	h := &s.streams
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range users {
		for st := range h.byUser[u] {
			st.kick()
		}
	}
}

// streamNotified is the invalidation listener's hook for eventStreamChannel.
func (s *Service) streamNotified(user string) { s.wakeStreams(user) }

// announceEvents tells every instance's streams that the events ids, just
// written by db's transaction, are there for their users: on PostgreSQL a
// notification per user that leaves at commit, in the statement's one round
// trip; on SQLite in-process (a stream's read waits for the one connection,
// so it sees the commit).
func (s *Service) announceEvents(ctx context.Context, db bun.IDB, ids ...string) error {
	users := db.NewSelect().Table("security_events").ColumnExpr("DISTINCT user_id").
		Where("id IN (?)", bun.In(ids))
	if s.dialect.CanListen() {
		return s.dialect.NotifyEach(ctx, db, eventStreamChannel, users)
	}
	var woken []string
	if err := users.Scan(ctx, &woken); err != nil {
		return err
	}
	s.wakeStreams(woken...)
	return nil
}

// DrainEvents has the event streams of ctx's connection send what has been
// recorded for them and end, and waits (at most until ctx... or timeout) until
// each one's consumer is done. Called before a connection is closed because its
// session ended.
func DrainEvents(ctx context.Context, timeout time.Duration) {
	r := requestFromContext(ctx)
	if r == nil {
		return
	}
	r.subjectMu.Lock()
	streams := r.streams
	r.streams = nil
	r.subjectMu.Unlock()
	if len(streams) == 0 {
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for _, st := range streams {
		go st.finish(true)
	}
	for _, st := range streams {
		select {
		case <-st.done:
		case <-t.C:
			return
		}
	}
}
