package auth

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// Security events (API.md, "Account security"): what happened to an account,
// written by the changing transaction itself, so there is never an event for
// a change that rolled back nor a change without its event. The same
// transaction queues the event for every handler (outbox.go).

// EventKind names what happened; the values are API.md's SecurityEventKind,
// plus EventAccountDeleted, which only handlers see.
type EventKind string

// The kinds of API.md, in its order.
const (
	EventSignedUp             EventKind = "SIGNED_UP"
	EventSignedIn             EventKind = "SIGNED_IN"
	EventSignInFailed         EventKind = "SIGN_IN_FAILED"
	EventSignInRateLimited    EventKind = "SIGN_IN_RATE_LIMITED"
	EventSignedOut            EventKind = "SIGNED_OUT"
	EventSessionRevoked       EventKind = "SESSION_REVOKED"
	EventOtherSessionsRevoked EventKind = "OTHER_SESSIONS_REVOKED"
	EventSessionRenamed       EventKind = "SESSION_RENAMED"
	EventSessionExpired       EventKind = "SESSION_EXPIRED"
	EventPasswordChanged      EventKind = "PASSWORD_CHANGED"
	EventRefreshTokenReused   EventKind = "REFRESH_TOKEN_REUSED"
	EventReauthenticated      EventKind = "REAUTHENTICATED"
	// EventAccountDeleted is delivered to handlers when an account is
	// deleted, so a product team can clean up its own data. It is not a
	// SecurityEvent: the account's events are deleted with it, and the
	// delivery carries the user's id and nothing else of theirs.
	EventAccountDeleted EventKind = "ACCOUNT_DELETED"
)

// isFailure reports whether k is one of the kinds an attacker can cause at
// will, by trying passwords: those are capped per account.
func (k EventKind) isFailure() bool {
	return k == EventSignInFailed || k == EventSignInRateLimited
}

// Failure events (SIGN_IN_FAILED, SIGN_IN_RATE_LIMITED) are recorded at most
// maxFailureEventsPerWindow times per account per LOGIN_FAILURE_WINDOW (both
// kinds together, counted in the inserting statement itself), so someone
// hammering an account's password cannot grow the table without bound: at
// most 10 rows per 15 minutes, about 86,000 per account over the default 90
// days of retention. Requests racing on one account at one instant may each
// see room for one more, so the cap can be passed by at most that many.
const maxFailureEventsPerWindow = 10

// defaultEventRetention is SECURITY_EVENT_RETENTION's default, also used
// when Config leaves it zero.
const defaultEventRetention = 90 * 24 * time.Hour

// noUser stands for "no such account" in the statements of recordEvent: no
// user has this id, so they insert nothing, after the same work as for an
// existing account.
const noUser = "00000000-0000-0000-0000-000000000000"

// Event is what recordEvent writes.
type Event struct {
	Kind EventKind
	// UserID is the account's. For the failure kinds, give EmailKey (the
	// canonical email tried) instead: recordEvent then finds the account in
	// its own statement, and for an unregistered email runs the same
	// statements, which insert nothing, so a registered email costs no
	// more than an unknown one. Neither: no such account.
	UserID   string
	EmailKey string
	// SessionID is the session the event concerns (created, ended,
	// renamed...), DeviceName that session's name; BySessionID is the
	// caller's session that caused the change, when one did.
	SessionID   *string
	DeviceName  *string
	BySessionID *string
	// IPAddress and UserAgent are where the change came from; when both are
	// nil, the request's (none outside a request, e.g. housekeeping).
	IPAddress *string
	UserAgent *string
}

// recordEvent writes e, and its outbox row for each handler, in db, which
// is the transaction of the change it records: if that rolls back, so does
// the event, and no handler ever hears of it. One statement on PostgreSQL,
// two on SQLite; a failure kind is skipped (without error) once its
// account has reached maxFailureEventsPerWindow in the window, and for an
// unknown account.
// Given the pool itself (an event without a change, such as a refused
// sign-in), it runs them in a transaction of their own.
func (s *Service) recordEvent(ctx context.Context, db bun.IDB, e Event) error {
	if pool, ok := db.(*bun.DB); ok {
		return pool.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error { return s.recordEvent(ctx, tx, e) })
	}
	if e.IPAddress == nil && e.UserAgent == nil {
		c := clientFromContext(ctx)
		e.IPAddress, e.UserAgent = c.ipAddress(), c.userAgent()
	}
	user, match := e.UserID, "u.id = ?"
	switch {
	case user == "" && e.EmailKey != "":
		user, match = e.EmailKey, "u.email_key = ?"
	case user == "":
		user = noUser
	}
	id, err := uuid.NewV7() // time-ordered: breaks ties of one instant in insertion order
	if err != nil {
		return err
	}
	handlers, handlerArgs := s.handlerList()
	if e.Kind == EventAccountDeleted {
		// No event row: the account and its events are gone (or going, in
		// this transaction). The outbox rows carry the user's id only.
		_, err := db.ExecContext(ctx, `INSERT INTO security_event_outbox
			(handler, event_id, user_id, kind, at, available_at)
			SELECT h.name, ?, ?, ?, `+s.dialect.Now+`, `+s.dialect.Now+` FROM (`+handlers+`) AS h`,
			append([]any{id.String(), user, string(e.Kind)}, handlerArgs...)...)
		if err != nil {
			return err
		}
		if a := quietly(ctx); a != nil {
			a.events = append(a.events, user) // this instance announces it
			return nil
		}
		if s.dialect.CanListen() {
			// No event for the streams to announce: wake the deliverers
			// with the announcement's channel all the same, at commit.
			return s.dialect.Notify(ctx, db, eventStreamChannel, user, false)
		}
		return s.recorded(ctx, db)
	}
	query := `INSERT INTO security_events
		(id, user_id, kind, at, session_id, device_name, ip_address, user_agent, by_session_id)
		SELECT ?, u.id, ?, ` + s.dialect.Now + `, ?, ?, ?, ?, ? FROM users AS u WHERE ` + match
	args := []any{id.String(), string(e.Kind), e.SessionID, e.DeviceName, e.IPAddress, e.UserAgent, e.BySessionID, user}
	if e.Kind.isFailure() {
		cutoff, arg := s.dialect.NowMinus(s.failureWindow())
		query += ` AND (SELECT count(*) FROM security_events AS e
			WHERE e.user_id = u.id AND e.kind IN (?, ?) AND e.at > ` + cutoff + `) < ?`
		args = append(args, string(EventSignInFailed), string(EventSignInRateLimited), arg, maxFailureEventsPerWindow)
	}
	// The outbox copies the row just written, if it was: a skipped failure
	// event queues nothing. On PostgreSQL both in one statement.
	queue := `INSERT INTO security_event_outbox
		(handler, event_id, user_id, kind, at, session_id, by_session_id, available_at)
		SELECT h.name, e.id, e.user_id, e.kind, e.at, e.session_id, e.by_session_id, e.at
		FROM `
	if s.dialect.WritesInWith() {
		_, err = db.ExecContext(ctx, `WITH e AS (`+query+` RETURNING *) `+queue+`e, (`+handlers+`) AS h`,
			append(args, handlerArgs...)...)
	} else if _, err = db.ExecContext(ctx, query, args...); err == nil {
		_, err = db.ExecContext(ctx, queue+`security_events AS e, (`+handlers+`) AS h WHERE e.id = ?`,
			append(handlerArgs, id.String())...)
	}
	if a := quietly(ctx); err == nil && a != nil && e.UserID != "" {
		a.events = append(a.events, e.UserID) // this instance announces it
		return nil
	}
	if err == nil {
		err = s.recorded(ctx, db, id.String())
	}
	return err
}

// recordEvents writes several events of changes made by db's transaction,
// for instance one per session a statement ended, in two statements
// whatever their number; the outbox keeps their order. Each must name its
// account by UserID and be of a kind that is neither a failure (those are
// capped one by one: use recordEvent) nor EventAccountDeleted.
func (s *Service) recordEvents(ctx context.Context, db bun.IDB, events []Event) error {
	if len(events) == 0 {
		return nil
	}
	if pool, ok := db.(*bun.DB); ok {
		return pool.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error { return s.recordEvents(ctx, tx, events) })
	}
	c := clientFromContext(ctx)
	rows := make([]models.SecurityEvent, len(events))
	ids := make([]string, len(events))
	for i, e := range events {
		if e.UserID == "" || e.Kind.isFailure() || e.Kind == EventAccountDeleted {
			return fmt.Errorf("recordEvents: %s event of user %q: use recordEvent", e.Kind, e.UserID)
		}
		if e.IPAddress == nil && e.UserAgent == nil {
			e.IPAddress, e.UserAgent = c.ipAddress(), c.userAgent()
		}
		id, err := uuid.NewV7()
		if err != nil {
			return err
		}
		ids[i] = id.String()
		rows[i] = models.SecurityEvent{
			ID: ids[i], UserID: e.UserID, Kind: string(e.Kind), SessionID: e.SessionID,
			DeviceName: e.DeviceName, IPAddress: e.IPAddress, UserAgent: e.UserAgent, BySessionID: e.BySessionID,
		}
	}
	if _, err := db.NewInsert().Model(&rows).Value("at", s.dialect.Now).Exec(ctx); err != nil {
		return err
	}
	handlers, handlerArgs := s.handlerList()
	_, err := db.ExecContext(ctx, `INSERT INTO security_event_outbox
		(handler, event_id, user_id, kind, at, session_id, by_session_id, available_at)
		SELECT h.name, e.id, e.user_id, e.kind, e.at, e.session_id, e.by_session_id, e.at
		FROM security_events AS e, (`+handlers+`) AS h WHERE e.id IN (?) ORDER BY e.id`,
		append(handlerArgs, bun.In(ids))...)
	if a := quietly(ctx); err == nil && a != nil {
		for _, e := range events { // this instance announces them
			if !slices.Contains(a.events, e.UserID) {
				a.events = append(a.events, e.UserID)
			}
		}
		return nil
	}
	if err == nil {
		err = s.recorded(ctx, db, ids...)
	}
	return err
}

// recorded wakes the local deliverers on SQLite, where a claim waits for
// the recording transaction on the one connection, and announces the events
// ids to the securityEvents streams (eventstream.go): on PostgreSQL that
// announcement, at commit, is also what wakes every instance's deliverers.
func (s *Service) recorded(ctx context.Context, db bun.IDB, ids ...string) error {
	if !s.dialect.CanListen() {
		s.events.signal()
	}
	if len(ids) == 0 {
		return nil
	}
	return s.announceEvents(ctx, db, ids...)
}

// handlerList returns an SQL subquery listing the handlers' names (column
// name) and its arguments.
func (s *Service) handlerList() (string, []any) {
	names := s.events.names()
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = n
	}
	return strings.TrimSuffix(strings.Repeat("SELECT ? AS name UNION ALL ", len(names)), " UNION ALL "), args
}

func (s *Service) failureWindow() time.Duration {
	if w := s.cfg.Throttle.Window; w > 0 {
		return w
	}
	return 15 * time.Minute
}

// Bounds of mySecurityEvents' first (API.md leaves them to us).
const (
	DefaultEventPage = 20
	MaxEventPage     = 100
)

// EventEdge is one event of a page and the cursor that continues after it.
type EventEdge struct {
	Event  *models.SecurityEvent
	Cursor string
}

// EventPage is one page of an account's events, newest first.
type EventPage struct {
	Edges       []EventEdge
	HasNextPage bool
	// EndCursor is the cursor of the last edge, nil on an empty page.
	EndCursor *string
}

// SecurityEvents returns up to first of who's events, newest first, after
// the cursor after ("" for the newest). Pages are keyset pages on (at, id):
// one indexed query each, and stable while new events arrive (they are
// newer than any cursor, so they never shift a later page).
// Errors: BAD_USER_INPUT (first outside 1..MaxEventPage, a malformed
// cursor), SERVICE_UNAVAILABLE.
func (s *Service) SecurityEvents(ctx context.Context, who *Identity, first int, after string) (*EventPage, error) {
	if first < 1 || first > MaxEventPage {
		return nil, badInput("first must be between 1 and 100")
	}
	var events []*models.SecurityEvent
	q := s.db.NewSelect().Model(&events).Where("user_id = ?", who.User.ID)
	if after != "" {
		at, id, ok := parseEventCursor(after)
		if !ok {
			return nil, badInput("after is not a cursor of mySecurityEvents")
		}
		q = q.Where("(at, id) < (?, ?)", at, id)
	}
	err := q.Order("at DESC", "id DESC").Limit(int64(first + 1)).Scan(ctx)
	if err != nil {
		return nil, dbError(err)
	}
	page := &EventPage{HasNextPage: len(events) > first}
	events = events[:min(first, len(events))]
	page.Edges = make([]EventEdge, len(events))
	for i, e := range events {
		page.Edges[i] = EventEdge{Event: e, Cursor: eventCursor(e)}
	}
	if n := len(page.Edges); n > 0 {
		page.EndCursor = &page.Edges[n-1].Cursor
	}
	return page, nil
}

// A cursor is the event's (at, id), opaque to clients: base64url of
// "v1|<at, RFC 3339 with nanoseconds>|<id>".
func eventCursor(e *models.SecurityEvent) string {
	return base64.RawURLEncoding.EncodeToString([]byte("v1|" + e.At.UTC().Format(time.RFC3339Nano) + "|" + e.ID))
}

func parseEventCursor(c string) (time.Time, string, bool) {
	if len(c) > 200 {
		return time.Time{}, "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", false
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 || parts[0] != "v1" {
		return time.Time{}, "", false
	}
	at, err := time.Parse(time.RFC3339Nano, parts[1])
	if err != nil {
		return time.Time{}, "", false
	}
	id, err := uuid.Parse(parts[2])
	if err != nil || id.String() != parts[2] {
		return time.Time{}, "", false
	}
	return at.UTC(), parts[2], true
}

// deleteOldEvents removes events older than retention, at most batch rows,
// and returns how many it removed.
func (s *Service) deleteOldEvents(ctx context.Context, db bun.IDB, retention time.Duration, batch int) (int, error) {
	cutoff, arg := s.dialect.NowMinus(retention)
	old := db.NewSelect().Model((*models.SecurityEvent)(nil)).Column("id").
		Where("at < "+cutoff, arg).
		Limit(int64(batch)).Apply(s.dialect.ForUpdateSkipLocked)
	res, err := db.NewDelete().Model((*models.SecurityEvent)(nil)).Where("id IN (?)", old).Exec(ctx)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (s *Service) eventRetention() time.Duration {
	if r := s.cfg.EventRetention; r > 0 {
		return r
	}
	return defaultEventRetention
}

// UserEmail returns the email of the account id, for handlers that write to
// the user (the outbox holds ids only).
// Errors: NOT_FOUND when the account no longer exists, SERVICE_UNAVAILABLE.
func (s *Service) UserEmail(ctx context.Context, id string) (string, error) {
	if _, err := uuid.Parse(id); err != nil {
		return "", &Error{Code: CodeNotFound, Message: "no such user"}
	}
	var email string
	err := s.db.NewSelect().Model((*models.User)(nil)).Column("email").Where("id = ?", id).Scan(ctx, &email)
	if isNoRows(err) {
		return "", &Error{Code: CodeNotFound, Message: "no such user"}
	}
	if err != nil {
		return "", dbError(err)
	}
	return email, nil
}

// endedColumns are what a statement ending sessions returns for their
// events (see endedEvents).
const endedColumns = "id, device_name"

// endedEvents returns an event of kind for each session in ended (as
// returned with endedColumns) of user, caused by the session by (nil when
// no session did).
func endedEvents(kind EventKind, userID string, ended []models.Session, by *string) []Event {
	events := make([]Event, len(ended))
	for i := range ended {
		events[i] = Event{Kind: kind, UserID: userID, SessionID: &ended[i].ID, DeviceName: ended[i].DeviceName, BySessionID: by}
	}
	return events
}

// sessionEvent returns an event of kind about sess, caused by the session
// by (nil when no session did).
func sessionEvent(kind EventKind, sess *models.Session, by *string) Event {
	return Event{Kind: kind, UserID: sess.UserID, SessionID: &sess.ID, DeviceName: sess.DeviceName, BySessionID: by}
}
