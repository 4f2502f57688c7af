package auth

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/example/sessionauth/models"
)

// BenchmarkRecordEvent measures what recording adds to a change: its two
// statements (the event, one outbox row per handler) inside the change's
// transaction, which is rolled back here so that the figure leaves out the
// commit the change pays anyway. Failure: the same, also counting the
// account's recent failures; FailureCapped: a failure once the account has
// reached the cap (nothing is written).
func BenchmarkRecordEvent(b *testing.B) {
	for _, c := range []struct {
		name   string
		kind   EventKind
		before int
	}{{"SignedIn", EventSignedIn, 0}, {"Failure", EventSignInFailed, 0}, {"FailureCapped", EventSignInFailed, maxFailureEventsPerWindow}} {
		b.Run(c.name, func(b *testing.B) { benchmarkRecord(b, c.kind, c.before) })
	}
}

func benchmarkRecord(b *testing.B, kind EventKind, before int) {
	s := newTestService(b, testConfig)
	user := benchUser(b, s, "bench@example.com")
	ctx := context.Background()
	for range before {
		record(b, s, s.db, Event{Kind: kind, UserID: user.ID})
	}
	b.ReportAllocs()
	for b.Loop() {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.recordEvent(ctx, tx, Event{Kind: kind, UserID: user.ID, DeviceName: ptr("Phone")}); err != nil {
			b.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchUser(tb testing.TB, s *Service, email string) *models.User {
	tb.Helper()
	u := &models.User{ID: uuid.NewString(), Email: email, EmailKey: email, PasswordHash: "x"}
	if _, err := s.db.NewInsert().Model(u).Value("created_at", s.dialect.Now).Exec(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return u
}

// BenchmarkSecurityEventsPage pages through an account with 20,000 events
// in a table of 100,000: the first page and one 15,000 events deep cost
// the same, one index range scan each (keyset pagination).
func BenchmarkSecurityEventsPage(b *testing.B) {
	s := newTestService(b, testConfig)
	ctx := context.Background()
	users := make([]*models.User, 5)
	for i := range users {
		users[i] = benchUser(b, s, fmt.Sprintf("bench%d@example.com", i))
	}
	start := time.Now().Add(-48 * time.Hour)
	batch := make([]models.SecurityEvent, 0, 1000)
	for i := range 100_000 {
		batch = append(batch, models.SecurityEvent{
			ID: uuid.NewString(), UserID: users[i%len(users)].ID, Kind: string(EventSignedIn),
			At: start.Add(time.Duration(i) * time.Second).UTC(), IPAddress: ptr("192.0.2.1"),
		})
		if len(batch) == cap(batch) {
			if _, err := s.db.NewInsert().Model(&batch).Exec(ctx); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if !s.isSQLite() {
		if _, err := s.db.ExecContext(ctx, "ANALYZE security_events"); err != nil {
			b.Fatal(err)
		}
	}
	who := &Identity{User: users[0]}
	deep := ""
	for range 150 {
		p, err := s.SecurityEvents(ctx, who, MaxEventPage, deep)
		if err != nil {
			b.Fatal(err)
		}
		deep = *p.EndCursor
	}
	for name, after := range map[string]string{"First": "", "Deep": deep} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := s.SecurityEvents(ctx, who, 20, after)
				if err != nil || len(p.Edges) != 20 {
					b.Fatal(err)
				}
			}
		})
	}
}

// queueOutbox inserts perUser queued events of handler "mail" for each of
// users, oldest first round the users, and analyses the table as
// production's autovacuum would.
func queueOutbox(tb testing.TB, s *Service, users []string, perUser int) {
	ctx := context.Background()
	rows := make([]models.SecurityEventOutbox, 0, 1000)
	start := time.Now().Add(-time.Hour).UTC()
	flush := func() {
		if len(rows) == 0 {
			return
		}
		if _, err := s.db.NewInsert().Model(&rows).ExcludeColumn("id").Exec(ctx); err != nil {
			tb.Fatal(err)
		}
		rows = rows[:0]
	}
	for range perUser {
		for _, u := range users {
			rows = append(rows, models.SecurityEventOutbox{Handler: "mail", EventID: uuid.NewString(), UserID: u,
				Kind: string(EventSignedIn), At: start, AvailableAt: start})
			if len(rows) == cap(rows) {
				flush()
			}
		}
	}
	flush()
	if !s.isSQLite() {
		if _, err := s.db.ExecContext(ctx, "ANALYZE security_event_outbox"); err != nil {
			tb.Fatal(err)
		}
	}
}

func newUsers(n int) []string {
	users := make([]string, n)
	for u := range users {
		users[u] = uuid.NewString()
	}
	return users
}

// BenchmarkClaimBehindFailingHandler measures a deliverer's poll while a
// handler fails for everyone (its mail server is down): 500 users with 40
// queued events each, every user's oldest in backoff. Nothing is due; the
// poll should not have to read the 19,500 rows queued behind the failures.
func BenchmarkClaimBehindFailingHandler(b *testing.B) {
	s := newTestService(b, testConfig)
	ctx := context.Background()
	queueOutbox(b, s, newUsers(500), 40)
	t := s.events.tune()
	t.batch = 100
	for {
		claimed, err := s.claimOutbox(ctx, s.db, "mail", t)
		if err != nil {
			b.Fatal(err)
		}
		if len(claimed) == 0 {
			break
		}
		for _, r := range claimed {
			s.settleRetry(ctx, r, time.Hour)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		claimed, err := s.claimOutbox(ctx, s.db, "mail", t)
		if err != nil || len(claimed) != 0 {
			b.Fatal(len(claimed), err)
		}
	}
}

// BenchmarkClaimOneUsersBacklog measures a delivery round (claim, then
// delete) while one user has 10,000 events queued (a revokeOtherSessions of
// that many sessions, a handler that was down): only the oldest is ever
// claimable, so draining takes 10,000 rounds, and a round must not read the
// whole queue, or draining costs the square of it.
func BenchmarkClaimOneUsersBacklog(b *testing.B) {
	s := newTestService(b, testConfig)
	ctx := context.Background()
	queueOutbox(b, s, newUsers(1), 10_000)
	t := s.events.tune()
	b.ReportAllocs()
	for b.Loop() {
		claimed, err := s.claimOutbox(ctx, s.db, "mail", t)
		if err != nil || len(claimed) != 1 {
			b.Fatal(len(claimed), err)
		}
		s.settleDelivered(ctx, claimed[0].Claim, []int64{claimed[0].ID})
	}
}
