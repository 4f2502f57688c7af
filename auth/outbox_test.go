package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
	"github.com/example/sessionauth/models"
)

// fastDelivery makes s's deliverers poll and retry in milliseconds.
func fastDelivery(s *Service) {
	s.events.tuning = deliveryTuning{poll: 20 * time.Millisecond, backoff: 30 * time.Millisecond, lease: 5 * time.Second, timeout: 2 * time.Second}
}

// runDeliverer runs s.DeliverEvents until the returned stop is called (or
// the test ends), and waits for it to return.
func runDeliverer(t *testing.T, s *Service) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.DeliverEvents(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// delivery is one call of a test handler.
type delivery struct {
	by    string // which instance
	event DeliveredEvent
	ok    bool
}

// recorder is a handler that records its calls and fails as told.
type recorder struct {
	mu    sync.Mutex
	calls []delivery
	fail  func(e DeliveredEvent) bool // nil: never
}

func (r *recorder) handler(by string) EventHandler {
	return func(ctx context.Context, e DeliveredEvent) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		ok := r.fail == nil || !r.fail(e)
		r.calls = append(r.calls, delivery{by: by, event: e, ok: ok})
		if !ok {
			return errors.New("the mail server is down")
		}
		return nil
	}
}

func (r *recorder) snapshot() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.calls...)
}

// succeeded returns the ids of the events delivered successfully, in order.
func (r *recorder) succeeded() []string {
	var ids []string
	for _, c := range r.snapshot() {
		if c.ok {
			ids = append(ids, c.event.ID)
		}
	}
	return ids
}

func outboxLeft(t *testing.T, s *Service) int {
	t.Helper()
	return countRows(t, s, (*models.SecurityEventOutbox)(nil), "true")
}

func eventID(t *testing.T, s *Service, userID, device string) string {
	t.Helper()
	var id string
	err := s.db.NewSelect().Model((*models.SecurityEvent)(nil)).Column("id").
		Where("user_id = ? AND device_name = ?", userID, device).Scan(context.Background(), &id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestDeliveryRetriesInOrder(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	fastDelivery(s)
	failures := 0
	mail := &recorder{}
	mail.fail = func(e DeliveredEvent) bool {
		if e.DeviceName != nil && *e.DeviceName == "a1" && failures < 2 {
			failures++
			return true
		}
		return false
	}
	audit := &recorder{}
	s.OnEvent("mail", mail.handler("s"))
	s.OnEvent("audit", audit.handler("s"))
	a := signUpQuiet(t, s, "retry-a@example.com").User
	b := signUpQuiet(t, s, "retry-b@example.com").User
	record(t, s, s.db, Event{Kind: EventSignedIn, UserID: a.ID, DeviceName: ptr("a1"), SessionID: ptr(a.ID)})
	record(t, s, s.db, Event{Kind: EventSignedIn, UserID: a.ID, DeviceName: ptr("a2")})
	record(t, s, s.db, Event{Kind: EventSignedIn, UserID: b.ID, DeviceName: ptr("b1")})
	a1, a2, b1 := eventID(t, s, a.ID, "a1"), eventID(t, s, a.ID, "a2"), eventID(t, s, b.ID, "b1")

	runDeliverer(t, s)
	testkit.Eventually(t, "every delivery", func() bool { return outboxLeft(t, s) == 0 })

	calls := mail.snapshot()
	var seq []string
	for _, c := range calls {
		seq = append(seq, fmt.Sprintf("%s#%d:%v", *c.event.DeviceName, c.event.Attempt, c.ok))
	}
	var forA []string
	for _, c := range calls {
		if c.event.UserID == a.ID {
			forA = append(forA, fmt.Sprintf("%s#%d:%v", *c.event.DeviceName, c.event.Attempt, c.ok))
		}
	}
	want := []string{"a1#1:false", "a1#2:false", "a1#3:true", "a2#1:true"}
	if fmt.Sprint(forA) != fmt.Sprint(want) {
		t.Fatalf("user a's deliveries %v, want %v (all: %v)", forA, want, seq)
	}
	// b's event did not wait for a's failing one.
	bAt, a1Done := -1, -1
	for i, c := range calls {
		if c.event.ID == b1 {
			bAt = i
		}
		if c.event.ID == a1 && c.ok {
			a1Done = i
		}
	}
	if bAt < 0 || bAt > a1Done {
		t.Fatalf("b's event delivered at %d, after a's retried one at %d: %v", bAt, a1Done, seq)
	}
	// The other handler got each event exactly once, unaffected by mail's failures.
	if got := audit.succeeded(); len(got) != 3 || len(audit.snapshot()) != 3 {
		t.Fatalf("audit handler calls %v, want each of %s %s %s once", audit.snapshot(), a1, a2, b1)
	}
	var first DeliveredEvent
	for _, c := range calls {
		if c.event.ID == a1 {
			first = c.event
			break
		}
	}
	if first.ID != a1 || first.Kind != EventSignedIn || first.SessionID == nil || *first.SessionID != a.ID || first.At.IsZero() {
		t.Fatalf("delivered event %+v", first)
	}
}

func TestDeliveryAfterCrash(t *testing.T) {
	t.Parallel()
	url := pgtest.New(t)
	// The first process records events and dies before delivering any.
	first := newTestServiceOn(t, url, nil)
	first.OnEvent("mail", func(context.Context, DeliveredEvent) error {
		t.Error("the crashed process delivered")
		return nil
	})
	user := signUpQuiet(t, first, "crash@example.com").User
	for i := range 3 {
		record(t, first, first.db, Event{Kind: EventSignedIn, UserID: user.ID, DeviceName: ptr(fmt.Sprint(i))})
	}
	// It had also claimed one row when it died: its lease must run out.
	stale := first.events.tune()
	stale.lease, stale.batch = 300*time.Millisecond, 1
	claimed, err := first.claimOutbox(context.Background(), first.db, "mail", stale)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v, %v", claimed, err)
	}
	first.db.Close()

	second := newTestServiceOn(t, url, first.hasher)
	fastDelivery(second)
	mail := &recorder{}
	second.OnEvent("mail", mail.handler("second"))
	runDeliverer(t, second)
	testkit.Eventually(t, "delivery after the restart", func() bool { return outboxLeft(t, second) == 0 })
	var got []string
	for _, c := range mail.snapshot() {
		got = append(got, *c.event.DeviceName)
	}
	if fmt.Sprint(got) != "[0 1 2]" {
		t.Fatalf("delivered %v, want [0 1 2] in order", got)
	}
	if a := mail.snapshot()[0].event.Attempt; a != 2 {
		t.Fatalf("the row claimed by the dead process: attempt %d, want 2", a)
	}
}

func TestDeliveryStoppedBeforeRunning(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	fastDelivery(s)
	mail := &recorder{}
	s.OnEvent("mail", mail.handler("s"))
	user := signUpQuiet(t, s, "stopped@example.com").User
	stop := runDeliverer(t, s)
	stop()
	record(t, s, s.db, Event{Kind: EventSignedIn, UserID: user.ID})
	if n := outboxLeft(t, s); n != 2 {
		t.Fatalf("%d outbox rows, want the event waiting for 2 handlers", n)
	}
	if len(mail.snapshot()) != 0 {
		t.Fatal("a stopped deliverer delivered")
	}
	// The process starts again (same Service: its handlers stay registered).
	runDeliverer(t, s)
	testkit.Eventually(t, "delivery after the restart", func() bool { return len(mail.succeeded()) == 1 })
}

func TestTwoInstancesDrainTogether(t *testing.T) {
	t.Parallel()
	const users, perUser = 4, 25
	url := pgtest.New(t)
	instances := []*Service{newTestServiceOn(t, url, nil)}
	instances = append(instances, newTestServiceOn(t, url, instances[0].hasher))
	mail := &recorder{}
	for i, s := range instances {
		fastDelivery(s)
		s.OnEvent("mail", mail.handler(fmt.Sprint(i)))
	}
	ids := make([]string, users)
	for u := range users {
		ids[u] = newUser(t, instances[0], fmt.Sprintf("drain%d@example.com", u))
	}
	for _, s := range instances {
		runDeliverer(t, s)
	}
	// Both instances record while both deliver.
	var wg sync.WaitGroup
	for u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perUser {
				s := instances[i%2]
				if err := s.recordEvent(context.Background(), s.db, Event{Kind: EventSessionRenamed, UserID: ids[u], DeviceName: ptr(fmt.Sprintf("%03d", i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	testkit.Eventually(t, "the outbox drained", func() bool { return outboxLeft(t, instances[0]) == 0 })

	calls := mail.snapshot()
	if len(calls) != users*perUser {
		t.Fatalf("%d deliveries of %d events: each must be handled exactly once", len(calls), users*perUser)
	}
	seen := map[string]bool{}
	next := map[string]int{}
	by := map[string]int{}
	for _, c := range calls {
		if seen[c.event.ID] {
			t.Fatalf("event %s delivered twice", c.event.ID)
		}
		seen[c.event.ID] = true
		by[c.by]++
		if want := fmt.Sprintf("%03d", next[c.event.UserID]); *c.event.DeviceName != want {
			t.Fatalf("user %s: got event %s, want %s next", c.event.UserID, *c.event.DeviceName, want)
		}
		next[c.event.UserID]++
	}
	t.Logf("deliveries per instance: %v", by)
}

// newUser inserts an account directly, without hashing a password.
func newUser(t *testing.T, s *Service, email string) string {
	t.Helper()
	u := &models.User{ID: uuid.NewString(), Email: email, EmailKey: email, PasswordHash: "x"}
	if _, err := s.db.NewInsert().Model(u).Value("created_at", s.dialect.Now).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	return u.ID
}

func TestAccountDeletedDelivery(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	fastDelivery(s)
	mail := &recorder{}
	s.OnEvent("mail", mail.handler("s"))
	user := signUpQuiet(t, s, "leaving@example.com").User
	record(t, s, s.db, Event{Kind: EventSignedIn, UserID: user.ID, DeviceName: ptr("Phone"), IPAddress: ptr("192.0.2.1")})
	ctx := context.Background()
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewDelete().Model((*models.User)(nil)).Where("id = ?", user.ID).Exec(ctx); err != nil {
			return err
		}
		return s.recordEvent(ctx, tx, Event{Kind: EventAccountDeleted, UserID: user.ID})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s, (*models.SecurityEvent)(nil), "true"); n != 0 {
		t.Fatalf("%d events survived the account", n)
	}
	if n := outboxLeft(t, s); n != 4 {
		t.Fatalf("%d outbox rows, want both events for both handlers", n)
	}
	runDeliverer(t, s)
	testkit.Eventually(t, "delivery", func() bool { return len(mail.succeeded()) == 2 })
	calls := mail.snapshot()
	signedIn, deleted := calls[0].event, calls[1].event
	if signedIn.Kind != EventSignedIn || deleted.Kind != EventAccountDeleted {
		t.Fatalf("delivered %s then %s", signedIn.Kind, deleted.Kind)
	}
	for _, e := range []DeliveredEvent{signedIn, deleted} {
		if e.UserID != user.ID || e.DeviceName != nil || e.IPAddress != nil || e.UserAgent != nil {
			t.Fatalf("delivery after deletion %+v: want the user id and no personal data", e)
		}
	}
	if _, err := s.UserEmail(ctx, user.ID); ErrorCode(err) != CodeNotFound {
		t.Fatalf("UserEmail of a deleted account: %v", err)
	}
}

func TestOnEventMisuse(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	noop := func(context.Context, DeliveredEvent) error { return nil }
	s.OnEvent("mail", noop)
	for name, f := range map[string]func(){
		"Duplicate": func() { s.OnEvent("mail", noop) },
		"Log":       func() { s.OnEvent(LogHandler, noop) },
		"BadName":   func() { s.OnEvent("Mail Team", noop) },
		"Nil":       func() { s.OnEvent("push", nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: OnEvent did not panic", name)
				}
			}()
			f()
		}()
	}
	stop := runDeliverer(t, s)
	defer stop()
	testkit.Eventually(t, "the deliverer started", func() bool {
		s.events.mu.Lock()
		defer s.events.mu.Unlock()
		return s.events.running
	})
	defer func() {
		if recover() == nil {
			t.Error("OnEvent after DeliverEvents did not panic")
		}
	}()
	s.OnEvent("late", noop)
}

func TestHandlerPanicIsRetried(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	fastDelivery(s)
	var mu sync.Mutex
	calls := 0
	s.OnEvent("flaky", func(context.Context, DeliveredEvent) error {
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls == 1 {
			panic("nil map")
		}
		return nil
	})
	user := signUpQuiet(t, s, "panic@example.com").User
	record(t, s, s.db, Event{Kind: EventSignedIn, UserID: user.ID})
	runDeliverer(t, s)
	testkit.Eventually(t, "delivery", func() bool { return outboxLeft(t, s) == 0 })
	if calls != 2 {
		t.Fatalf("%d calls, want a panic and a retry", calls)
	}
}

func TestLogHandlerLogsIDsOnly(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	fastDelivery(s)
	var logs testkit.SyncBuffer
	s.log = slog.New(slog.NewJSONHandler(&logs, nil))
	user := signUpQuiet(t, s, "logged@example.com").User
	record(t, s, s.db, Event{Kind: EventSignedIn, UserID: user.ID, SessionID: ptr(user.ID),
		DeviceName: ptr("Alice's iPhone"), IPAddress: ptr("198.51.100.23"), UserAgent: ptr("SecretAgent/1.0")})
	runDeliverer(t, s)
	testkit.Eventually(t, "the log line", func() bool { return outboxLeft(t, s) == 0 })
	out := logs.String()
	for _, want := range []string{`"msg":"security event"`, `"kind":"SIGNED_IN"`, `"user_id":"` + user.ID, `"session_id":"` + user.ID} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s: %s", want, out)
		}
	}
	for _, secret := range []string{"Alice", "198.51.100.23", "SecretAgent", "logged@example.com"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q: %s", secret, out)
		}
	}
}

// TestFailureHoldsBackTheUsersLaterRows: after a failed attempt, the user's
// later rows (which wait for it anyway) are not due before its retry, so
// polls skip them; other users' rows stay due.
func TestFailureHoldsBackTheUsersLaterRows(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	s.OnEvent("mail", func(context.Context, DeliveredEvent) error { return nil })
	a := signUpQuiet(t, s, "held-a@example.com").User
	b := signUpQuiet(t, s, "held-b@example.com").User
	for range 3 {
		record(t, s, s.db, Event{Kind: EventSignedIn, UserID: a.ID})
	}
	record(t, s, s.db, Event{Kind: EventSignedIn, UserID: b.ID})
	ctx := context.Background()
	tune := s.events.tune()
	claimed, err := s.claimOutbox(ctx, s.db, "mail", tune)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claimed %d heads, want a's and b's: %v", len(claimed), err)
	}
	for _, r := range claimed {
		if r.UserID == a.ID {
			s.settleRetry(ctx, r, time.Hour)
		}
	}
	var rows []models.SecurityEventOutbox
	if err := s.db.NewSelect().Model(&rows).Where("handler = 'mail' AND user_id = ?", a.ID).Order("id").Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].Claim != nil || rows[0].Attempts != 1 {
		t.Fatalf("a's rows %+v", rows)
	}
	for _, r := range rows[1:] {
		if !r.AvailableAt.Equal(rows[0].AvailableAt) {
			t.Fatalf("a later row is due at %v, its head at %v", r.AvailableAt, rows[0].AvailableAt)
		}
	}
	if again, err := s.claimOutbox(ctx, s.db, "mail", tune); err != nil || len(again) != 0 {
		t.Fatalf("claimed %d rows while a's head waits and b's is leased: %v", len(again), err)
	}
}

// TestCacheListenerWakesDeliverers: with the session cache on, its listener
// wakes the deliverers, and the instance keeps one listening connection, not
// two (PostgreSQL signals every listening connection for every NOTIFY).
// Polling is off here, so a delivery proves the wake.
func TestCacheListenerWakesDeliverers(t *testing.T) {
	t.Parallel()
	url := pgtest.New(t)
	s := newTestServiceOn(t, url, nil)
	if !s.dialect.CanListen() {
		t.Skip("SQLite has no LISTEN: its deliverers are woken in-process")
	}
	other := newTestServiceOn(t, url, s.hasher)
	s.events.tuning = deliveryTuning{poll: time.Hour}
	mail := &recorder{}
	s.OnEvent("mail", mail.handler("s"))
	other.OnEvent("mail", mail.handler("other")) // it queues for "mail", but delivers nothing
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.EnableCache(ctx, url)
	testkit.Eventually(t, "the cache listening", s.CacheLive)
	runDeliverer(t, s)

	id := newUser(t, other, "woken@example.com")
	if err := other.recordEvent(context.Background(), other.db, Event{Kind: EventSessionRenamed, UserID: id}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the event delivered on a wake", func() bool { return len(mail.snapshot()) == 1 })
	// An account's deletion has no event row to announce; its outbox rows
	// wake the deliverers all the same.
	if err := other.recordEvent(context.Background(), other.db, Event{Kind: EventAccountDeleted, UserID: id}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the account's deletion delivered on a wake", func() bool { return len(mail.snapshot()) == 2 })
	var listening int
	err := s.db.NewRaw("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'").Scan(context.Background(), &listening)
	if err != nil {
		t.Fatal(err)
	}
	if listening != 1 {
		t.Fatalf("%d listening connections, want the cache's alone", listening)
	}
}

// TestAnnouncedEventsWakeTheirOwnDeliverers: a revocation the instance
// announces itself (no NOTIFY in its transaction) wakes that instance's
// deliverers at once. Polling is off here, so a delivery proves the wake.
func TestAnnouncedEventsWakeTheirOwnDeliverers(t *testing.T) {
	t.Parallel()
	pgtest.PostgresOnly(t, "the session cache exists on PostgreSQL only")
	url := pgtest.New(t)
	s := newTestServiceOn(t, url, nil)
	s.events.tuning = deliveryTuning{poll: time.Hour}
	mail := &recorder{}
	s.OnEvent("mail", mail.handler("s"))
	s.EnableCache(t.Context(), url)
	testkit.Eventually(t, "the cache listening", s.CacheLive)
	runDeliverer(t, s)
	p := signUpQuiet(t, s, "announced@example.com")
	if err := s.Logout(t.Context(), p.AccessToken); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the logout's event delivered on a wake", func() bool {
		got := mail.snapshot()
		return len(got) == 1 && got[0].event.Kind == EventSignedOut
	})
	testkit.Eventually(t, "the outbox emptied", func() bool { return outboxLeft(t, s) == 0 })
}

// TestSettleDeliveredLeavesOtherClaims: rows whose claim has passed to
// another deliverer (the first one's lease ran out) are not deleted by the
// first one's late settlement; its own are, in one statement.
func TestSettleDeliveredLeavesOtherClaims(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	s.OnEvent("mail", func(context.Context, DeliveredEvent) error { return nil })
	user := signUpQuiet(t, s, "claims@example.com").User
	for range 3 {
		record(t, s, s.db, Event{Kind: EventSessionRenamed, UserID: user.ID})
	}
	tune := s.events.tune()
	tune.batch = 1
	mine, err := s.claimOutbox(t.Context(), s.db, "mail", tune)
	if err != nil || len(mine) != 1 {
		t.Fatalf("claim: %v, %v", mine, err)
	}
	other := uuid.NewString() // another deliverer's claim
	if _, err := s.db.NewUpdate().Model((*models.SecurityEventOutbox)(nil)).Set("claim = ?", other).
		Where("handler = 'mail' AND id <> ?", mine[0].ID).Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	var theirs []int64
	if err := s.db.NewSelect().Model((*models.SecurityEventOutbox)(nil)).Column("id").
		Where("claim = ?", other).Scan(t.Context(), &theirs); err != nil || len(theirs) != 2 {
		t.Fatalf("rows of the other claim: %v, %v", theirs, err)
	}
	s.settleDelivered(t.Context(), mine[0].Claim, append(theirs, mine[0].ID))
	var left []int64
	if err := s.db.NewSelect().Model((*models.SecurityEventOutbox)(nil)).Column("id").
		Where("handler = 'mail'").Scan(t.Context(), &left); err != nil {
		t.Fatal(err)
	}
	if len(left) != 2 || slices.Contains(left, mine[0].ID) {
		t.Fatalf("left %v: want the other claim's 2 rows and not %d", left, mine[0].ID)
	}
}

// TestClaimTakesTheOldestHeads: a claim takes only the oldest row of each
// user, the oldest of those first, up to the batch; a user with nothing
// due, or whose head another claim holds, yields nothing, and its later rows
// never jump the queue. On PostgreSQL a concurrent claim passes over the
// heads a transaction has locked.
func TestClaimTakesTheOldestHeads(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	ctx := context.Background()
	users := newUsers(4)
	queueOutbox(t, s, users[:3], 3) // ids interleave: u0, u1, u2, u0, …
	tune := s.events.tune()
	tune.batch = 2
	heads := func(n int) []models.SecurityEventOutbox {
		t.Helper()
		var rows []models.SecurityEventOutbox
		if err := s.db.NewSelect().Model(&rows).Order("id").Limit(int64(n)).Scan(ctx); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	first := heads(3)
	claimed, err := s.claimOutbox(ctx, s.db, "mail", tune)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claimed %+v (%v); want the heads of %s and %s", claimed, err, first[0].UserID, first[1].UserID)
	}
	for _, r := range claimed {
		if r.ID != first[0].ID && r.ID != first[1].ID {
			t.Fatalf("claimed row %d of %s; the oldest heads are %d and %d", r.ID, r.UserID, first[0].ID, first[1].ID)
		}
	}
	// Two heads leased: only the third user's is left.
	tune.batch = 10
	rest, err := s.claimOutbox(ctx, s.db, "mail", tune)
	if err != nil || len(rest) != 1 || rest[0].ID != first[2].ID {
		t.Fatalf("claimed %+v (%v); want only row %d", rest, err, first[2].ID)
	}
	if again, err := s.claimOutbox(ctx, s.db, "mail", tune); err != nil || len(again) != 0 {
		t.Fatalf("claimed %d rows behind leased heads: %v", len(again), err)
	}
	// Delivered: each user's next row is its head now.
	for _, r := range append(claimed, rest...) {
		s.settleDelivered(ctx, r.Claim, []int64{r.ID})
	}
	if s.isSQLite() {
		return
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	mine, err := s.claimOutbox(ctx, tx, "mail", tune)
	if err != nil || len(mine) != 3 {
		t.Fatalf("claimed %d (%v), want the three users' next rows", len(mine), err)
	}
	other, err := s.claimOutbox(ctx, s.db, "mail", tune)
	if err != nil || len(other) != 0 {
		t.Fatalf("a concurrent claim took %d rows held by an open claim: %v", len(other), err)
	}
}
