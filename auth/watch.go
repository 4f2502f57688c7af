package auth

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"
)

// Watching a session: a long-lived connection lives exactly as long as the
// access token that opened it would authenticate a request (API.md,
// "Subscriptions"). WatchSession tells its holder when that stops:
//
//   - the token's expiry, judged by the database's clock: a timer set from
//     the identity's own reading of that clock;
//   - a change to the session on any instance (rotated by a refresh, revoked,
//     deleted, its user changed or deleted): on PostgreSQL the invalidation
//     stream the session cache listens to (auth/cache.go) names the session
//     or user, and the watch re-reads the session's row to decide; on SQLite
//     (one process) the changing code paths signal it in-process (awaitSync);
//   - while this instance cannot show that its view of the sessions is
//     current (no session cache, its listener down, SQLite where another
//     process such as the operator's command may write), every watched
//     session is re-read every watchPoll instead; a read that fails ends the
//     watch with Unverifiable, since nothing can then show the session is
//     still live.
type EndReason int

const (
	// SessionEnded: the session was revoked, logged out, replayed, ended by
	// the session cap or the operator, expired, or deleted with its account.
	SessionEnded EndReason = iota + 1
	// TokenExpired: the access token expired or a refresh replaced it.
	TokenExpired
	// Unverifiable: the database could not be read to check the session.
	Unverifiable
)

func (r EndReason) String() string {
	switch r {
	case SessionEnded:
		return "SESSION_ENDED"
	case TokenExpired:
		return "TOKEN_EXPIRED"
	case Unverifiable:
		return "SERVICE_UNAVAILABLE"
	}
	return "UNKNOWN"
}

const (
	// watchPoll is how often watched sessions are re-read while
	// notifications cannot be trusted: inside the one-second bound of
	// API.md, with a read's time to spare.
	watchPoll = 500 * time.Millisecond
	// watchTrustCheck is how often the checker looks whether
	// notifications are trusted (the session cache's lease).
	watchTrustCheck = 100 * time.Millisecond
	// watchReadTimeout bounds one re-read.
	watchReadTimeout = time.Second
	// watchBatch is how many sessions one re-read asks for.
	watchBatch = 500
	// watchUnverifiedAfter is how long re-reads may keep failing before
	// the watches they were for end with Unverifiable: one failed read (a
	// pool momentarily exhausted) is retried at the next poll, so that a
	// blip does not close every connection, while a session that cannot be
	// checked is still given up inside API.md's one second.
	watchUnverifiedAfter = 900 * time.Millisecond
)

type watcher struct {
	session, user string
	hash          []byte
	expires       time.Time // the access token's, as last read
	onEnd         func(EndReason)
	ctx           context.Context // the holder's: once it ends, onEnd never runs
	timer         *time.Timer
	ended         bool // guarded by watchHub.mu
}

// watchHub is a Service's watched sessions; its zero value is ready.
type watchHub struct {
	mu        sync.Mutex
	bySession map[string]map[*watcher]struct{}
	byUser    map[string]map[*watcher]struct{}
	dirty     map[string]struct{} // sessions to re-read
	all       bool                // re-read every watched session
	trusted   bool                // notifications were trusted at the last look
	failing   time.Time           // when re-reads began to fail; zero while they succeed
	running   bool                // the checker goroutine runs
	wake      chan struct{}
}

// WatchSession returns a channel that receives, once, why the access token of
// id stopped authenticating (SessionEnded, TokenExpired, Unverifiable). The
// watch ends with ctx; nothing is sent after that.
func (s *Service) WatchSession(ctx context.Context, id *Identity) <-chan EndReason {
	ch := make(chan EndReason, 1)
	s.OnSessionEnd(ctx, id, func(r EndReason) { ch <- r })
	return ch
}

// OnSessionEnd is WatchSession with a callback instead of a channel, for
// holders of many connections (no goroutine per watch): f runs once, on a
// goroutine of its own, unless ctx ends first. f must not block for long.
func (s *Service) OnSessionEnd(ctx context.Context, id *Identity, f func(EndReason)) {
	h := &s.watch
	w := &watcher{
		session: id.Session.ID, user: id.Session.UserID, hash: id.Session.AccessHash,
		expires: id.Session.AccessExpiresAt, onEnd: f, ctx: ctx,
	}
	h.mu.Lock()
	if h.bySession == nil {
		h.bySession = map[string]map[*watcher]struct{}{}
		h.byUser = map[string]map[*watcher]struct{}{}
		h.dirty = map[string]struct{}{}
		h.wake = make(chan struct{}, 1)
	}
	add(h.bySession, w.session, w)
	add(h.byUser, w.user, w)
	w.timer = time.AfterFunc(id.Session.AccessExpiresAt.Sub(id.Now), func() { s.endWatch(w, TokenExpired) })
	// Anything that changed between the identity's read and now: look
	// again once.
	h.dirty[w.session] = struct{}{}
	if !h.running {
		h.running = true
		go s.checkWatches()
	}
	h.mu.Unlock()
	h.nudge()
	context.AfterFunc(ctx, func() { s.endWatch(w, 0) })
}

func add(m map[string]map[*watcher]struct{}, k string, w *watcher) {
	set := m[k]
	if set == nil {
		set = map[*watcher]struct{}{}
		m[k] = set
	}
	set[w] = struct{}{}
}

func remove(m map[string]map[*watcher]struct{}, k string, w *watcher) {
	delete(m[k], w)
	if len(m[k]) == 0 {
		delete(m, k)
	}
}

// endWatch ends w, telling its holder why unless reason is 0.
func (s *Service) endWatch(w *watcher, reason EndReason) {
	h := &s.watch
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.ended {
		return
	}
	w.ended = true
	w.timer.Stop()
	remove(h.bySession, w.session, w)
	remove(h.byUser, w.user, w)
	// An ended context tells nothing, even if the end raced it here
	// before its own AfterFunc ran.
	if reason != 0 && w.ctx.Err() == nil {
		go w.onEnd(reason)
	}
}

func (h *watchHub) nudge() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// watchInvalidated is the invalidation stream's hook (auth/coherence.go),
// given each notification payload after its change committed: "s:<session>"
// or "u:<user>" (the trigger's), or a heartbeat
// "h|<instance>|<seq>|<want ack>|<acks>|<sessions>|<users>|<event users>"
// naming the sessions an instance rotated or ended and the users it changed
// (six fields from an instance of the version before: sessions only).
// Anything else re-reads every watched session.
func (s *Service) watchInvalidated(payload string) {
	h := &s.watch
	if f := strings.Split(payload, "|"); (len(f) == 6 || len(f) == 8) && f[0] == "h" {
		users := ""
		if len(f) == 8 {
			users = f[6]
		}
		if f[5] == "" && users == "" {
			return // nothing ended or changed
		}
		h.mu.Lock()
		if h.bySession != nil {
			for id := range listed(f[5]) {
				if _, ok := h.bySession[id]; ok {
					h.dirty[id] = struct{}{}
				}
			}
			for id := range listed(users) {
				for w := range h.byUser[id] {
					h.dirty[w.session] = struct{}{}
				}
			}
		}
		h.mu.Unlock()
		h.nudge()
		return
	}
	kind, id, _ := strings.Cut(payload, ":")
	h.mu.Lock()
	if h.bySession == nil {
		h.mu.Unlock()
		return
	}
	switch kind {
	case "s":
		if _, ok := h.bySession[id]; !ok {
			h.mu.Unlock()
			return
		}
		h.dirty[id] = struct{}{}
	case "u":
		if len(h.byUser[id]) == 0 {
			h.mu.Unlock()
			return
		}
		for w := range h.byUser[id] {
			h.dirty[w.session] = struct{}{}
		}
	case "sync", "ack":
		h.mu.Unlock()
		return
	default:
		h.all = true
	}
	h.mu.Unlock()
	h.nudge()
}

// changedHere is called after this process committed a change to sessions
// (a revocation, a rotation). Without trusted notifications (SQLite, or no
// session cache) it re-reads every watched session at once rather than at
// the next poll.
func (s *Service) changedHere() {
	if s.CacheLive() {
		return // the notification will come
	}
	h := &s.watch
	h.mu.Lock()
	if h.bySession == nil {
		h.mu.Unlock()
		return
	}
	h.all = true
	h.mu.Unlock()
	h.nudge()
}

// checkWatches re-reads the sessions that notifications named, and every
// watched one each watchPoll while notifications cannot be trusted. It runs
// while anything is watched.
func (s *Service) checkWatches() {
	h := &s.watch
	// Trust is looked at often (it is a lock and a clock read), so that a
	// lapse of the lease is acted on at once; untrusted, everything is
	// re-read each watchPoll.
	tick := time.NewTicker(watchTrustCheck)
	defer tick.Stop()
	var lastPoll time.Time
	for {
		polled := false
		select {
		case <-h.wake:
		case now := <-tick.C:
			polled = now.Sub(lastPoll) >= watchPoll
		}
		trusted := s.CacheLive()
		h.mu.Lock()
		if len(h.bySession) == 0 {
			h.running = false
			clear(h.dirty)
			h.all = false
			h.mu.Unlock()
			return
		}
		if (!trusted && (polled || h.trusted)) || (trusted && !h.trusted) {
			h.all = true // no notification can be relied on, or some were missed
		}
		regained := trusted && !h.trusted
		h.trusted = trusted
		var ids []string
		if h.all {
			for id := range h.bySession {
				ids = append(ids, id)
			}
		} else {
			for id := range h.dirty {
				if _, ok := h.bySession[id]; ok {
					ids = append(ids, id)
				}
			}
		}
		if h.all {
			lastPoll = time.Now()
		}
		clear(h.dirty)
		h.all = false
		h.mu.Unlock()
		if regained {
			s.wakeAllStreams() // they may have missed notifications
		}
		for len(ids) > 0 {
			n := min(len(ids), watchBatch)
			s.recheck(ids[:n])
			ids = ids[n:]
		}
	}
}

// watchedRow is what a re-read needs of a session.
type watchedRow struct {
	ID               string     `bun:"id"`
	AccessHash       []byte     `bun:"access_hash"`
	AccessExpiresAt  time.Time  `bun:"access_expires_at"`
	RefreshExpiresAt time.Time  `bun:"refresh_expires_at"`
	RevokedAt        *time.Time `bun:"revoked_at"`
	DBNow            time.Time  `bun:"db_now"`
}

// recheck re-reads ids and ends the watches whose token no longer
// authenticates.
func (s *Service) recheck(ids []string) {
	ctx, cancel := context.WithTimeout(context.Background(), watchReadTimeout)
	defer cancel()
	var rows []watchedRow
	err := s.db.NewSelect().Table("sessions").
		Column("id", "access_hash", "access_expires_at", "refresh_expires_at", "revoked_at").
		ColumnExpr(s.dialect.Now+" AS db_now").
		Where("id IN (?)", bun.In(ids)).Scan(ctx, &rows)
	h := &s.watch
	var ends []func()
	h.mu.Lock()
	if err != nil {
		now := time.Now()
		if h.failing.IsZero() {
			h.failing = now
		}
		if now.Sub(h.failing) < watchUnverifiedAfter {
			for _, id := range ids {
				h.dirty[id] = struct{}{} // again at the next poll
			}
			h.mu.Unlock()
			s.log.Warn("subscriptions: cannot re-read watched sessions; retrying", "sessions", len(ids), "err", err)
			return
		}
		s.log.Warn("subscriptions: cannot re-read watched sessions; closing their connections", "sessions", len(ids), "err", err)
		for _, id := range ids {
			for w := range h.bySession[id] {
				ends = append(ends, func() { s.endWatch(w, Unverifiable) })
			}
		}
	} else {
		h.failing = time.Time{}
		found := make(map[string]*watchedRow, len(rows))
		for i := range rows {
			found[rows[i].ID] = &rows[i]
		}
		for _, id := range ids {
			row := found[id]
			for w := range h.bySession[id] {
				switch {
				case row == nil || row.RevokedAt != nil || !row.DBNow.Before(row.RefreshExpiresAt):
					ends = append(ends, func() { s.endWatch(w, SessionEnded) })
				case !bytes.Equal(row.AccessHash, w.hash) || !row.DBNow.Before(row.AccessExpiresAt):
					ends = append(ends, func() { s.endWatch(w, TokenExpired) })
				case !row.AccessExpiresAt.Equal(w.expires):
					w.expires = row.AccessExpiresAt
					w.timer.Reset(row.AccessExpiresAt.Sub(row.DBNow))
				}
			}
		}
	}
	h.mu.Unlock()
	for _, end := range ends {
		end()
	}
}

// Watched returns how many sessions this instance watches, for metrics.
func (s *Service) Watched() int {
	h := &s.watch
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.bySession {
		n += len(set)
	}
	return n
}
