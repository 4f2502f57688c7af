package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

func ptr[T any](v T) *T { return &v }

func record(tb testing.TB, s *Service, db bun.IDB, e Event) {
	tb.Helper()
	if err := s.recordEvent(context.Background(), db, e); err != nil {
		tb.Fatalf("recordEvent(%s): %v", e.Kind, err)
	}
}

func countRows(tb testing.TB, s *Service, model any, where string, args ...any) int {
	tb.Helper()
	n, err := s.db.NewSelect().Model(model).Where(where, args...).Count(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return int(n)
}

func TestRecordEventInTransaction(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	s.OnEvent("mail", func(context.Context, DeliveredEvent) error { return nil })
	user := signUpQuiet(t, s, "events-tx@example.com").User
	ctx := context.Background()

	t.Run("RolledBackLeavesNothing", func(t *testing.T) {
		boom := errors.New("the change failed")
		err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if err := s.recordEvent(ctx, tx, Event{Kind: EventSessionRenamed, UserID: user.ID}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("RunInTx: %v", err)
		}
		if n := countRows(t, s, (*models.SecurityEvent)(nil), "user_id = ?", user.ID); n != 0 {
			t.Fatalf("%d events after a rollback", n)
		}
		if n := countRows(t, s, (*models.SecurityEventOutbox)(nil), "user_id = ?", user.ID); n != 0 {
			t.Fatalf("%d outbox rows after a rollback", n)
		}
	})
	t.Run("CommittedWritesEventAndOneOutboxRowPerHandler", func(t *testing.T) {
		err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return s.recordEvent(ctx, tx, Event{Kind: EventSessionRenamed, UserID: user.ID, DeviceName: ptr("Phone")})
		})
		if err != nil {
			t.Fatal(err)
		}
		var ev models.SecurityEvent
		if err := s.db.NewSelect().Model(&ev).Where("user_id = ?", user.ID).Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if ev.Kind != string(EventSessionRenamed) || ev.DeviceName == nil || *ev.DeviceName != "Phone" || ev.At.IsZero() {
			t.Fatalf("event %+v", ev)
		}
		var rows []models.SecurityEventOutbox
		if err := s.db.NewSelect().Model(&rows).Where("event_id = ?", ev.ID).Order("handler").Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 || rows[0].Handler != LogHandler || rows[1].Handler != "mail" {
			t.Fatalf("outbox rows %+v, want one for %s and one for mail", rows, LogHandler)
		}
		if !rows[0].At.Equal(ev.At) || rows[0].Kind != ev.Kind || rows[0].UserID != user.ID {
			t.Fatalf("outbox row %+v does not match event %+v", rows[0], ev)
		}
	})
}

func TestFailureEventsAreCapped(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	user := signUpQuiet(t, s, "events-cap@example.com").User
	for i := range maxFailureEventsPerWindow + 5 {
		kind := EventSignInFailed
		if i%2 == 1 {
			kind = EventSignInRateLimited
		}
		record(t, s, s.db, Event{Kind: kind, UserID: user.ID})
	}
	if n := countRows(t, s, (*models.SecurityEvent)(nil), "user_id = ?", user.ID); n != maxFailureEventsPerWindow {
		t.Fatalf("%d failure events recorded, want the cap %d", n, maxFailureEventsPerWindow)
	}
	if n := countRows(t, s, (*models.SecurityEventOutbox)(nil), "user_id = ?", user.ID); n != maxFailureEventsPerWindow {
		t.Fatalf("%d outbox rows, want one per recorded event", n)
	}
	// Other kinds are never capped.
	record(t, s, s.db, Event{Kind: EventSignedIn, UserID: user.ID})
	// Once the window has passed, failures are recorded again.
	then, arg := s.dialect.NowMinus(s.failureWindow() + time.Second)
	if _, err := s.db.NewUpdate().Model((*models.SecurityEvent)(nil)).Set("at = "+then, arg).Where("true").Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	record(t, s, s.db, Event{Kind: EventSignInFailed, UserID: user.ID})
	if n := countRows(t, s, (*models.SecurityEvent)(nil), "user_id = ?", user.ID); n != maxFailureEventsPerWindow+2 {
		t.Fatalf("%d events, want the capped ones, SIGNED_IN and a new failure", n)
	}

	t.Run("UnknownAccountRecordsNothing", func(t *testing.T) {
		before := countRows(t, s, (*models.SecurityEvent)(nil), "true")
		record(t, s, s.db, Event{Kind: EventSignInFailed})
		record(t, s, s.db, Event{Kind: EventSignInFailed, EmailKey: "nobody@example.com"})
		if n := countRows(t, s, (*models.SecurityEvent)(nil), "true"); n != before {
			t.Fatalf("an unknown account got an event")
		}
	})
	t.Run("ByEmailKey", func(t *testing.T) {
		other := signUpQuiet(t, s, "Events-Key@example.com").User
		record(t, s, s.db, Event{Kind: EventSignInRateLimited, EmailKey: emailKey("EVENTS-key@example.com ")})
		if n := countRows(t, s, (*models.SecurityEvent)(nil), "user_id = ? AND kind = ?", other.ID, string(EventSignInRateLimited)); n != 1 {
			t.Fatalf("%d events found by email key", n)
		}
	})
}

// eventIDs pages through who's events with page size first, calling
// between(page) after each page, and returns the ids in the order seen.
func eventIDs(t *testing.T, s *Service, who *Identity, first int, between func(int)) []string {
	t.Helper()
	var ids []string
	after := ""
	for page := 0; ; page++ {
		p, err := s.SecurityEvents(context.Background(), who, first, after)
		if err != nil {
			t.Fatalf("SecurityEvents(%d, %q): %v", first, after, err)
		}
		if len(p.Edges) > first {
			t.Fatalf("page of %d, want at most %d", len(p.Edges), first)
		}
		for _, e := range p.Edges {
			ids = append(ids, e.Event.ID)
		}
		if !p.HasNextPage {
			return ids
		}
		if p.EndCursor == nil || *p.EndCursor != p.Edges[len(p.Edges)-1].Cursor {
			t.Fatalf("endCursor %v is not the last edge's cursor", p.EndCursor)
		}
		after = *p.EndCursor
		between(page)
	}
}

func TestSecurityEventsPagination(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	iss := signUpQuiet(t, s, "events-pages@example.com")
	who := authenticate(t, s, iss.AccessToken)
	ctx := context.Background()
	// Some alone, some sharing one transaction (one instant on PostgreSQL).
	for i := range 10 {
		record(t, s, s.db, Event{Kind: EventSignedIn, UserID: who.User.ID, DeviceName: ptr(fmt.Sprint("d", i))})
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		for range 13 {
			if err := s.recordEvent(ctx, tx, Event{Kind: EventSessionRevoked, UserID: who.User.ID}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	other := signUpQuiet(t, s, "events-pages-other@example.com").User
	record(t, s, s.db, Event{Kind: EventSignedIn, UserID: other.ID})

	var want []string
	if err := s.db.NewSelect().Model((*models.SecurityEvent)(nil)).Column("id").
		Where("user_id = ?", who.User.ID).Order("at DESC", "id DESC").Scan(ctx, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != 23 {
		t.Fatalf("%d events stored, want 23", len(want))
	}

	t.Run("StableWhileEventsArrive", func(t *testing.T) {
		got := eventIDs(t, s, who, 4, func(int) {
			record(t, s, s.db, Event{Kind: EventSignedIn, UserID: who.User.ID})
			record(t, s, s.db, Event{Kind: EventSignInFailed, UserID: who.User.ID})
		})
		if !slices.Equal(got, want) {
			t.Fatalf("paged through %d events:\n%v\nwant the %d that existed, newest first:\n%v", len(got), got, len(want), want)
		}
	})
	t.Run("NewEventsOnTheFirstPage", func(t *testing.T) {
		p, err := s.SecurityEvents(ctx, who, 1, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Edges) != 1 || slices.Contains(want, p.Edges[0].Event.ID) || !p.HasNextPage {
			t.Fatalf("first page %+v, want the newest event", p)
		}
	})
	t.Run("LastPage", func(t *testing.T) {
		all := eventIDs(t, s, who, MaxEventPage, func(int) {})
		if len(all) < 23 {
			t.Fatalf("%d events on one page", len(all))
		}
		p, err := s.SecurityEvents(ctx, who, MaxEventPage, "")
		if err != nil || p.HasNextPage || len(p.Edges) != len(all) {
			t.Fatalf("one page of %d: hasNextPage %v, %v", len(p.Edges), p.HasNextPage, err)
		}
	})
}

func TestSecurityEventsInput(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	iss := signUpQuiet(t, s, "events-input@example.com")
	who := authenticate(t, s, iss.AccessToken)
	record(t, s, s.db, Event{Kind: EventSignedIn, UserID: who.User.ID})
	ctx := context.Background()
	for _, first := range []int{0, -1, MaxEventPage + 1} {
		_, err := s.SecurityEvents(ctx, who, first, "")
		wantCode(t, fmt.Sprint("first ", first), err, CodeBadUserInput)
	}
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for name, cursor := range map[string]string{
		"NotBase64":   "%%%",
		"Garbage":     enc("hello"),
		"NoVersion":   enc("2026-11-30T00:00:00Z|0192f2a0-0000-7000-8000-000000000000"),
		"BadTime":     enc("v1|yesterday|0192f2a0-0000-7000-8000-000000000000"),
		"BadID":       enc("v1|2026-11-30T00:00:00Z|' OR 1=1 --"),
		"UpperCaseID": enc("v1|2026-11-30T00:00:00Z|0192F2A0-0000-7000-8000-000000000000"),
		"TooLong":     enc("v1|2026-11-30T00:00:00Z|" + string(make([]byte, 300))),
	} {
		_, err := s.SecurityEvents(ctx, who, 10, cursor)
		wantCode(t, "cursor "+name, err, CodeBadUserInput)
	}
	p, err := s.SecurityEvents(ctx, who, MaxEventPage, "")
	if err != nil || len(p.Edges) != 1 {
		t.Fatalf("first=%d: %v, %v", MaxEventPage, p, err)
	}
	// Past the oldest event: an empty page.
	p, err = s.SecurityEvents(ctx, who, 1, p.Edges[0].Cursor)
	if err != nil || len(p.Edges) != 0 || p.HasNextPage || p.EndCursor != nil {
		t.Fatalf("after the oldest: %+v, %v", p, err)
	}
}

func TestEventRetention(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.EventRetention = time.Hour
	s := newTestService(t, cfg)
	user := signUpQuiet(t, s, "events-retention@example.com").User
	ctx := context.Background()
	for range 3 {
		record(t, s, s.db, Event{Kind: EventSignedIn, UserID: user.ID})
	}
	var old []string
	if err := s.db.NewSelect().Model((*models.SecurityEvent)(nil)).Column("id").Limit(2).Scan(ctx, &old); err != nil {
		t.Fatal(err)
	}
	then, arg := s.dialect.NowMinus(time.Hour + time.Minute)
	for _, m := range []any{(*models.SecurityEvent)(nil), (*models.SecurityEventOutbox)(nil)} {
		col := "id"
		if _, ok := m.(*models.SecurityEventOutbox); ok {
			col = "event_id"
		}
		if _, err := s.db.NewUpdate().Model(m).Set("at = "+then, arg).Where(col+" IN (?)", bun.In(old)).Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Small batches, to go round the loop.
	n, err := s.deleteOldEvents(ctx, s.db, time.Hour, 1)
	if err != nil || n != 1 {
		t.Fatalf("deleteOldEvents batch of 1: %d, %v", n, err)
	}
	if _, err := s.Housekeep(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s, (*models.SecurityEvent)(nil), "true"); n != 1 {
		t.Fatalf("%d events left, want the recent one", n)
	}
	if n := countRows(t, s, (*models.SecurityEventOutbox)(nil), "event_id IN (?)", bun.In(old)); n != 0 {
		t.Fatalf("%d outbox rows of expired events left", n)
	}
	if n := countRows(t, s, (*models.SecurityEventOutbox)(nil), "true"); n != 1 {
		t.Fatalf("%d outbox rows left, want the recent event's", n)
	}

	t.Run("DefaultIsNinetyDays", func(t *testing.T) {
		if got := withConfig(s, testConfig).eventRetention(); got != 2160*time.Hour {
			t.Fatalf("default retention %v", got)
		}
	})
}

func TestRecordEvents(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	s.OnEvent("mail", func(context.Context, DeliveredEvent) error { return nil })
	user := signUpQuiet(t, s, "events-bulk@example.com").User
	ctx := context.Background()
	var events []Event
	for i := range 5 {
		events = append(events, Event{Kind: EventSessionExpired, UserID: user.ID, SessionID: ptr(fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i)), DeviceName: ptr(fmt.Sprint(i))})
	}
	if err := s.recordEvents(ctx, s.db, events); err != nil {
		t.Fatal(err)
	}
	var rows []models.SecurityEventOutbox
	if err := s.db.NewSelect().Model(&rows).Where("handler = 'mail'").Order("id").Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 {
		t.Fatalf("%d outbox rows for mail, want 5", len(rows))
	}
	for i, r := range rows {
		if *r.SessionID != fmt.Sprintf("00000000-0000-4000-8000-00000000000%d", i) {
			t.Fatalf("outbox row %d is of session %s: the order of the events is lost", i, *r.SessionID)
		}
	}
	if n := countRows(t, s, (*models.SecurityEvent)(nil), "user_id = ?", user.ID); n != 5 {
		t.Fatalf("%d events", n)
	}
	for _, bad := range []Event{{Kind: EventSignInFailed, UserID: user.ID}, {Kind: EventAccountDeleted, UserID: user.ID}, {Kind: EventSignedIn}} {
		if err := s.recordEvents(ctx, s.db, []Event{bad}); err == nil {
			t.Errorf("recordEvents took %+v", bad)
		}
	}
}
