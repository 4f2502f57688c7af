package auth

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/models"
)

// Delivering security events to product teams' handlers: a transactional
// outbox. recordEvent inserts, in the changing transaction, one outbox row
// per (event, handler); DeliverEvents, which every instance runs, claims
// rows, calls the handler and deletes the row once it returns nil. Hence:
//
//   - at least once: a row stays until its handler succeeded, whatever
//     crashes between the commit and the handler; a claim is a lease
//     (deliveryLease) that another instance takes over when it runs out;
//   - never for a rolled-back change: the row rolls back with it;
//   - in order per user and handler: only the oldest row of a (handler,
//     user) is ever claimed, so a later event waits until the earlier one
//     succeeded. Rows are ordered by their id, which on PostgreSQL is the
//     order of insertion: two transactions of one user that commit out of
//     that order (two concurrent sign-ins of one account) are concurrent
//     events, delivered in either order;
//   - retried with exponential backoff (retryBackoff, doubling, at most
//     maxRetryBackoff) when the handler fails, for that row only: other
//     users go on, and other handlers, which have rows of their own, never
//     see the event again;
//   - every instance at once: claims are one UPDATE over rows chosen FOR
//     UPDATE SKIP LOCKED (on SQLite the statement holds the write lock);
//   - promptly: events of a transaction whose instance announces its changes
//     itself (a revocation with the session cache on: announce in
//     coherence.go) wake that instance's deliverers after the commit;
//     other events on PostgreSQL (a sign-in, a command's) are announced to
//     the streams (eventstream.go) by a NOTIFY at commit that wakes every
//     instance's deliverers too; on SQLite recordEvent wakes the local
//     deliverer; and every deliverer polls every pollInterval, which also
//     picks up the events of an instance that died before delivering them.
//
// Handlers are registered per process, before DeliverEvents starts, and an
// event is queued for the handlers registered in the process that records
// it: every process that records events (the server, the operator's
// commands) registers the same ones. A row whose handler no instance runs
// any more is deleted with the events, after SECURITY_EVENT_RETENTION.

// EventHandler receives one committed event. It returns nil once it has
// taken the event; an error (or a panic) has the event redelivered to it
// later, with backoff. It may be called again for an event it already took
// (at least once: after a crash, or when it ran past its lease), so it
// should be idempotent, keyed by DeliveredEvent.ID. Its context ends after
// handlerTimeout.
type EventHandler func(ctx context.Context, e DeliveredEvent) error

// DeliveredEvent is what a handler receives: the event's ids and kind, and,
// while the event is still stored, its device name, address and user agent
// (nil once the account was deleted or the event has passed retention).
type DeliveredEvent struct {
	// ID is the security event's id (mySecurityEvents shows it), stable
	// across redeliveries; for EventAccountDeleted an id of its own.
	ID          string
	Kind        EventKind
	UserID      string
	At          time.Time
	SessionID   *string
	BySessionID *string
	DeviceName  *string
	IPAddress   *string
	UserAgent   *string
	// Attempt counts deliveries of this event to this handler, from 1.
	Attempt int
}

// LogHandler is the name of the handler every Service has: it logs each
// event's kind and ids (no address, user agent or device name).
const LogHandler = "log"

// Delivery timing (see deliveryTuning for tests).
const (
	pollInterval    = 2 * time.Second
	deliveryLease   = 2 * time.Minute
	handlerTimeout  = 30 * time.Second // well inside the lease
	retryBackoff    = time.Second
	maxRetryBackoff = 10 * time.Minute
	deliveryBatch   = 32
	// wakeGather is how long a woken deliverer lets more events commit
	// before it claims: every instance is woken by every event, so without
	// it each event cost a claim query on every instance, a cost that grew
	// with the write rate times the instances. With it, a deliverer claims
	// at most 1/wakeGather times a second, a batch each time.
	wakeGather = 20 * time.Millisecond
)

type deliveryTuning struct {
	poll, lease, timeout, backoff, maxBackoff, gather time.Duration
	batch                                             int
}

type namedHandler struct {
	name string
	fn   EventHandler
}

// eventHub is a Service's handlers and the wake-up signals of its
// deliverers. Its zero value has no handler but LogHandler.
type eventHub struct {
	mu       sync.Mutex
	handlers []namedHandler
	started  bool            // OnEvent is closed
	running  bool            // DeliverEvents is running
	wakes    []chan struct{} // one per running handler loop
	tuning   deliveryTuning  // zero fields: the constants above
}

var handlerName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// OnEvent registers h under name (lower-case letters, digits, '_', '.',
// '-'; at most 63 characters) to receive every security event recorded
// from now on, including EventAccountDeleted. Register before serving
// requests and before DeliverEvents; name is the handler's identity in the
// outbox, so keep it across deploys. It panics on an invalid or duplicate
// name, on LogHandler, and after DeliverEvents has started, as
// http.ServeMux does on a bad pattern: these are wiring mistakes.
func (s *Service) OnEvent(name string, h EventHandler) {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	switch {
	case !handlerName.MatchString(name):
		panic(fmt.Sprintf("auth: OnEvent: invalid handler name %q", name))
	case name == LogHandler:
		panic("auth: OnEvent: " + LogHandler + " is the built-in handler")
	case h == nil:
		panic("auth: OnEvent: nil handler")
	case s.events.started:
		panic("auth: OnEvent after DeliverEvents")
	}
	for _, r := range s.events.handlers {
		if r.name == name {
			panic(fmt.Sprintf("auth: OnEvent: handler %q registered twice", name))
		}
	}
	s.events.handlers = append(s.events.handlers, namedHandler{name, h})
}

// names returns the names events are queued for: LogHandler and every
// registered handler.
func (h *eventHub) names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []string{LogHandler}
	for _, r := range h.handlers {
		out = append(out, r.name)
	}
	return out
}

// signal wakes every local handler loop.
func (h *eventHub) signal() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.wakes {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

func (h *eventHub) tune() deliveryTuning {
	h.mu.Lock()
	t := h.tuning
	h.mu.Unlock()
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&t.poll, pollInterval)
	def(&t.lease, deliveryLease)
	def(&t.timeout, handlerTimeout)
	def(&t.backoff, retryBackoff)
	def(&t.maxBackoff, maxRetryBackoff)
	def(&t.gather, wakeGather)
	if t.batch <= 0 {
		t.batch = deliveryBatch
	}
	return t
}

// DeliverEvents delivers the outbox to this process's handlers until ctx
// ends, then returns once no handler is running. Run it in every instance:
// they share the work safely. Failures (a handler's, the database's) are
// logged and retried; nothing is lost while the rows stay. It panics if it
// is already running.
func (s *Service) DeliverEvents(ctx context.Context) {
	s.events.mu.Lock()
	if s.events.running {
		s.events.mu.Unlock()
		panic("auth: DeliverEvents is already running")
	}
	s.events.started, s.events.running = true, true
	handlers := append([]namedHandler{{LogHandler, s.logEvent}}, s.events.handlers...)
	wakes := make([]chan struct{}, len(handlers))
	for i := range wakes {
		wakes[i] = make(chan struct{}, 1)
	}
	s.events.wakes = wakes
	s.events.mu.Unlock()
	defer func() {
		s.events.mu.Lock()
		s.events.running, s.events.wakes = false, nil
		s.events.mu.Unlock()
	}()

	var wg sync.WaitGroup
	// With the session cache on, its listener wakes the deliverers (see
	// listenOnce): one listening connection per instance, not two, and
	// PostgreSQL signals every listening connection of the database for
	// every NOTIFY, whatever its channel.
	if s.dialect.CanListen() && s.cache == nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.listenEvents(ctx)
		}()
	}
	for i, h := range handlers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.deliverLoop(ctx, h, wakes[i])
		}()
	}
	wg.Wait()
}

func (s *Service) deliverLoop(ctx context.Context, h namedHandler, wake <-chan struct{}) {
	t := s.events.tune()
	timer := time.NewTimer(t.poll)
	defer timer.Stop()
	for {
		n, err := s.deliverBatch(ctx, h, t)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.WarnContext(ctx, "security events: delivery round failed", "handler", h.name, "err", err)
		} else if n > 0 {
			continue // the next rows of these users may be due now
		}
		timer.Reset(t.poll)
		select {
		case <-ctx.Done():
			return
		case <-wake:
			// Let the events committing with this one come too, and
			// take the wakes they sent meanwhile: one claim for all.
			select {
			case <-ctx.Done():
				return
			case <-time.After(t.gather):
			}
			select {
			case <-wake:
			default:
			}
		case <-timer.C:
		}
	}
}

// deliverBatch claims up to t.batch due rows of h, each the oldest of its
// user, runs h on them (concurrently: they are of different users) and
// settles each. It returns how many it claimed.
func (s *Service) deliverBatch(ctx context.Context, h namedHandler, t deliveryTuning) (int, error) {
	rows, err := s.claimOutbox(ctx, s.db, h.name, t)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.EventID
	}
	var details []models.SecurityEvent
	err = s.db.NewSelect().Model(&details).Column("id", "device_name", "ip_address", "user_agent").
		Where("id IN (?)", bun.In(ids)).Scan(ctx)
	if err != nil {
		for _, r := range rows {
			s.settleRetry(ctx, r, 0)
		}
		return 0, err
	}
	byID := make(map[string]*models.SecurityEvent, len(details))
	for i := range details {
		byID[details[i].ID] = &details[i]
	}
	var wg sync.WaitGroup
	took := make([]bool, len(rows))
	for i, r := range rows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			took[i] = s.deliverRow(ctx, h, t, r, byID[r.EventID])
		}()
	}
	wg.Wait()
	var done []int64
	for i, r := range rows {
		if took[i] {
			done = append(done, r.ID)
		}
	}
	s.settleDelivered(ctx, rows[0].Claim, done)
	return len(rows), nil
}

// settleDelivered deletes the rows ids of one claim that their handler took,
// in one statement. A row whose claim has meanwhile passed to another
// instance (the lease ran out) is left to it; when the delete fails, the
// lease runs out and the rows are delivered again.
func (s *Service) settleDelivered(ctx context.Context, claim *string, ids []int64) {
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, err := s.db.NewDelete().Model((*models.SecurityEventOutbox)(nil)).
		Where("claim = ? AND id IN (?)", claim, bun.In(ids)).Exec(ctx)
	if err != nil {
		s.log.WarnContext(ctx, "security events: settling deliveries", "rows", len(ids), "err", err)
	}
}

// claimOutbox leases up to t.batch due rows of handler, each the oldest
// remaining row of its user for that handler, oldest first, in one
// statement.
//
// The heads are found by walking the (handler, user_id, id) index from user
// to user (queued, a loose index scan): one probe per user with queued rows,
// however many rows each has queued. Asking per row whether an older one of
// its user exists instead read the whole queue in every round, and
// PostgreSQL's plan for it, a hash anti-join, compared the rows of one user
// pairwise: one user's backlog of 10,000 events took 2.6 s a round, and the
// 10,000 rounds to drain it hours (BenchmarkClaimOneUsersBacklog).
func (s *Service) claimOutbox(ctx context.Context, db bun.IDB, handler string, t deliveryTuning) ([]models.SecurityEventOutbox, error) {
	// The recursion's next user, and a user's oldest row: each one index
	// probe (LIMIT 1, as PostgreSQL has no min() of a uuid).
	nextUser := db.NewSelect().TableExpr("security_event_outbox AS n").ColumnExpr("n.user_id").
		Where("n.handler = ? AND n.user_id > queued.user_id", handler).
		OrderExpr("n.user_id").Limit(1)
	firstUser := db.NewSelect().TableExpr("security_event_outbox AS f").ColumnExpr("f.user_id").
		Where("f.handler = ?", handler).OrderExpr("f.user_id").Limit(1)
	users := db.NewSelect().ColumnExpr("(?) AS user_id", firstUser).
		UnionAll(db.NewSelect().ColumnExpr("(?) AS user_id", nextUser).TableExpr("queued").Where("queued.user_id IS NOT NULL"))
	oldest := db.NewSelect().TableExpr("security_event_outbox AS p").ColumnExpr("p.id").
		Where("p.handler = ? AND p.user_id = queued.user_id", handler).OrderExpr("p.id").Limit(1)
	headIDs := db.NewSelect().WithRecursive("queued", users).
		TableExpr("queued").ColumnExpr("(?)", oldest).Where("queued.user_id IS NOT NULL")
	heads := db.NewSelect().TableExpr("security_event_outbox AS o").ColumnExpr("o.id").
		Where("o.id IN (?)", headIDs).
		Where("o.available_at <= " + s.dialect.Now).
		OrderExpr("o.id").Limit(int64(t.batch)).Apply(s.dialect.ForUpdateSkipLocked)
	leaseExpr, leaseArg := s.dialect.NowPlus(t.lease)
	var rows []models.SecurityEventOutbox
	_, err := db.NewUpdate().Model((*models.SecurityEventOutbox)(nil)).
		Set("claim = ?", uuid.NewString()).
		Set("attempts = attempts + 1").
		Set("available_at = "+leaseExpr, leaseArg).
		Where("id IN (?)", heads).
		Returning("*").
		Exec(ctx, &rows)
	return rows, err
}

// deliverRow runs h on r and reports whether h took it; a row h did not
// take it settles for a later retry.
func (s *Service) deliverRow(ctx context.Context, h namedHandler, t deliveryTuning, r models.SecurityEventOutbox, ev *models.SecurityEvent) bool {
	e := DeliveredEvent{
		ID: r.EventID, Kind: EventKind(r.Kind), UserID: r.UserID, At: r.At.UTC(),
		SessionID: r.SessionID, BySessionID: r.BySessionID, Attempt: r.Attempts,
	}
	if ev != nil {
		e.DeviceName, e.IPAddress, e.UserAgent = ev.DeviceName, ev.IPAddress, ev.UserAgent
	}
	hctx, cancel := context.WithTimeout(ctx, t.timeout)
	err := callHandler(hctx, h.fn, e)
	cancel()
	if err == nil {
		return true
	}
	if ctx.Err() != nil { // shutting down: not the handler's fault
		s.settleRetry(ctx, r, 0)
		return false
	}
	wait := t.backoff
	for i := 1; i < r.Attempts && wait < t.maxBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, t.maxBackoff)
	s.log.WarnContext(ctx, "security events: handler failed; will retry", "handler", h.name,
		"event_id", e.ID, "kind", r.Kind, "user_id", r.UserID, "attempt", r.Attempts, "retry_in", wait, "err", err)
	s.settleRetry(ctx, r, wait)
	return false
}

// callHandler runs fn, turning a panic into an error.
func callHandler(ctx context.Context, fn EventHandler, e DeliveredEvent) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("handler panicked: %v", v)
		}
	}()
	return fn(ctx, e)
}

// settleRetry ends r's claim, which its handler did not take: the row
// becomes due again after wait. A claim that has meanwhile passed to another
// instance (the lease ran out) is left to it. When settling fails, the lease
// runs out and the row is delivered again.
func (s *Service) settleRetry(ctx context.Context, r models.SecurityEventOutbox, wait time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		next, arg := s.dialect.NowPlus(wait)
		res, err := tx.NewUpdate().Model((*models.SecurityEventOutbox)(nil)).
			Set("claim = NULL").Set("available_at = "+next, arg).
			Where("id = ? AND claim = ?", r.ID, r.Claim).
			Returning("available_at").Exec(ctx, &r.AvailableAt)
		if isNoRows(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		// The user's later rows wait for this one anyway: make them not
		// due until then, so that polls do not read them meanwhile (a
		// handler failing for everyone would otherwise have each poll
		// read its whole backlog).
		_, err = tx.NewUpdate().Model((*models.SecurityEventOutbox)(nil)).
			Set("available_at = ?", r.AvailableAt).
			Where("handler = ? AND user_id = ? AND id > ? AND available_at < ?", r.Handler, r.UserID, r.ID, r.AvailableAt).
			Exec(ctx)
		return err
	})
	if err != nil {
		s.log.WarnContext(ctx, "security events: settling a delivery", "event_id", r.EventID, "handler", r.Handler, "err", err)
	}
}

// logEvent is LogHandler.
func (s *Service) logEvent(ctx context.Context, e DeliveredEvent) error {
	attrs := []any{"event_id", e.ID, "kind", string(e.Kind), "user_id", e.UserID, "at", e.At}
	if e.SessionID != nil {
		attrs = append(attrs, "session_id", *e.SessionID)
	}
	if e.BySessionID != nil {
		attrs = append(attrs, "by_session_id", *e.BySessionID)
	}
	s.log.InfoContext(ctx, "security event", attrs...)
	return nil
}

// listenEvents wakes the local deliverers whenever any instance commits
// events, over a pool connection kept for LISTEN, reconnecting until ctx
// ends. While it is down the deliverers poll.
func (s *Service) listenEvents(ctx context.Context) {
	const firstBackoff = 100 * time.Millisecond
	backoff := firstBackoff
	for ctx.Err() == nil {
		listened, err := s.listenEventsOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if listened {
			backoff = firstBackoff
		}
		s.log.WarnContext(ctx, "security events: listener disconnected; polling meanwhile", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Service) listenEventsOnce(ctx context.Context) (listened bool, err error) {
	err = database.ListenPooled(ctx, s.db, func(l *database.Listener) error {
		listened = true
		s.events.signal() // catch up with what committed before LISTEN
		for {
			if _, err := l.WaitForNotification(ctx); err != nil {
				return err
			}
			s.events.signal()
		}
	}, eventStreamChannel)
	return listened, err
}

// deleteStaleOutbox removes outbox rows older than retention, at most batch:
// events no handler took in all that time (a handler that always fails, or
// that no instance runs any more).
func (s *Service) deleteStaleOutbox(ctx context.Context, db bun.IDB, retention time.Duration, batch int) (int, error) {
	cutoff, arg := s.dialect.NowMinus(retention)
	old := db.NewSelect().Model((*models.SecurityEventOutbox)(nil)).Column("id").
		Where("at < "+cutoff, arg).
		Limit(int64(batch)).Apply(s.dialect.ForUpdateSkipLocked)
	res, err := db.NewDelete().Model((*models.SecurityEventOutbox)(nil)).Where("id IN (?)", old).Exec(ctx)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
