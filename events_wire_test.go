package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/api/cookies"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/models"
)

// Each change of API.md's "Sessions" and "Account security" records its
// security event, through the real handler, and a change that fails records
// nothing.

const (
	reauthMutation = `mutation($pw: String!) { reauthenticate(password: $pw) { id current authenticatedAt createdAt } }`
	deleteMutation = `mutation($pw: String!) { deleteMyAccount(password: $pw) }`
)

// event is one SecurityEvent as the API shows it; nil fields print as "-".
type event struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	At          time.Time `json:"at"`
	SessionID   *string   `json:"sessionId"`
	DeviceName  *string   `json:"deviceName"`
	IPAddress   *string   `json:"ipAddress"`
	UserAgent   *string   `json:"userAgent"`
	BySessionID *string   `json:"bySessionId"`
}

func str(p *string) string {
	if p == nil {
		return "-"
	}
	return *p
}

// String is what the tests compare: kind, session, device name, address,
// user agent and causing session.
func (e event) String() string {
	return strings.Join([]string{e.Kind, str(e.SessionID), str(e.DeviceName), str(e.IPAddress), str(e.UserAgent), str(e.BySessionID)}, " ")
}

// events returns the caller's newest 100 events, newest first.
func (s *testServer) events(t *testing.T, token string) []event {
	t.Helper()
	r := s.post(t, token, securityEventsQuery, map[string]any{"first": 100})
	wantOK(t, r)
	var c eventConnection
	r.field(t, "mySecurityEvents", &c)
	out := make([]event, len(c.Edges))
	for i, e := range c.Edges {
		n := e.Node
		out[i] = event{ID: n.ID, Kind: n.Kind, At: n.At, SessionID: n.SessionID, DeviceName: n.DeviceName, IPAddress: n.IPAddress, UserAgent: n.UserAgent, BySessionID: n.BySessionID}
	}
	return out
}

// eventLog follows one account's events through a token that stays live.
type eventLog struct {
	s     *testServer
	token string
	seen  int
}

// expect fails unless the events recorded since the last call are want
// (event.String forms, in any order: events of one transaction may share
// their instant).
func (l *eventLog) expect(t *testing.T, want ...string) {
	t.Helper()
	all := l.s.events(t, l.token)
	fresh := all[:len(all)-l.seen]
	l.seen = len(all)
	got := make([]string, len(fresh))
	for i, e := range fresh {
		got[i] = e.String()
	}
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("new events:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// forgetEvents deletes a user's events and their outbox rows, for tests
// that count events they insert themselves.
func (s *testServer) forgetEvents(t *testing.T, userID string) {
	t.Helper()
	for _, table := range []string{"security_event_outbox", "security_events"} {
		if _, err := s.db.ExecContext(ctxT(t), "DELETE FROM "+table+" WHERE user_id = ?", userID); err != nil {
			t.Fatal(err)
		}
	}
}

// The client every test request comes from: the loopback address and Go's
// User-Agent.
const here = "127.0.0.1 Go-http-client/1.1"

func TestEventsRecordedWithEachChange(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.ReuseWindow = 0 })
	p := s.signUp(t, "log@example.com")
	me := &eventLog{s: s, token: p.AccessToken}
	pid := p.Session.ID
	me.expect(t, "SIGNED_UP "+pid+" test device "+here+" -")

	login := func(device string) payload {
		t.Helper()
		r := s.post(t, "", loginMutation, map[string]any{"email": "log@example.com", "password": testPassword, "device": device})
		var q payload
		r.field(t, "login", &q)
		return q
	}
	t.Run("SignedIn", func(t *testing.T) {
		q := login("Phone")
		me.expect(t, "SIGNED_IN "+q.Session.ID+" Phone "+here+" -")
	})
	t.Run("SignInFailed", func(t *testing.T) {
		wantCode(t, s.post(t, "", loginMutation, map[string]any{"email": "LOG@example.com", "password": "wrong password"}), "INVALID_CREDENTIALS")
		me.expect(t, "SIGN_IN_FAILED - - "+here+" -")
	})
	t.Run("RenameAndRevoke", func(t *testing.T) {
		q := login("")
		me.expect(t, "SIGNED_IN "+q.Session.ID+" - "+here+" -")
		wantOK(t, s.post(t, p.AccessToken, renameMutation, map[string]any{"id": q.Session.ID, "name": " Work laptop "}))
		me.expect(t, "SESSION_RENAMED "+q.Session.ID+" Work laptop "+here+" "+pid)
		wantOK(t, s.post(t, p.AccessToken, revokeMutation, map[string]any{"id": q.Session.ID}))
		me.expect(t, "SESSION_REVOKED "+q.Session.ID+" Work laptop "+here+" "+pid)
	})
	t.Run("FailedChangesRecordNothing", func(t *testing.T) {
		q := login("Tablet")
		me.expect(t, "SIGNED_IN "+q.Session.ID+" Tablet "+here+" -")
		wantCode(t, s.post(t, p.AccessToken, revokeMutation, map[string]any{"id": q.Session.ID[:35] + "0"}), "NOT_FOUND")
		wantCode(t, s.post(t, p.AccessToken, revokeMutation, map[string]any{"id": "nope"}), "NOT_FOUND")
		wantCode(t, s.post(t, p.AccessToken, renameMutation, map[string]any{"id": q.Session.ID, "name": "  "}), "BAD_USER_INPUT")
		wantCode(t, s.post(t, p.AccessToken, changePassword, map[string]any{"cur": testPassword, "new": "short"}), "BAD_USER_INPUT")
		wantCode(t, s.post(t, strings.Repeat("x", 256), refreshMutation, nil), "UNAUTHENTICATED")
		wantCode(t, s.post(t, q.AccessToken, refreshMutation, nil), "UNAUTHENTICATED")
		// A refresh that works is no change of API.md's lists.
		s.refresh(t, q.refresh())
		me.expect(t)
		wantOK(t, s.post(t, q.AccessToken[:0]+p.AccessToken, revokeMutation, map[string]any{"id": q.Session.ID}))
		me.expect(t, "SESSION_REVOKED "+q.Session.ID+" Tablet "+here+" "+pid)
		// Revoking it again: NOT_FOUND, nothing recorded.
		wantCode(t, s.post(t, p.AccessToken, revokeMutation, map[string]any{"id": q.Session.ID}), "NOT_FOUND")
		me.expect(t)
	})
	t.Run("OtherSessionsRevoked", func(t *testing.T) {
		a, b := login("A"), login("B")
		me.expect(t, "SIGNED_IN "+a.Session.ID+" A "+here+" -", "SIGNED_IN "+b.Session.ID+" B "+here+" -")
		r := s.post(t, p.AccessToken, revokeOthersMutaion, nil)
		var n int
		r.field(t, "revokeOtherSessions", &n)
		if n != 3 { // A, B and Phone
			t.Fatalf("revokeOtherSessions = %d", n)
		}
		all := me.s.events(t, p.AccessToken)
		phone := ""
		for _, e := range all {
			if e.Kind == "SIGNED_IN" && str(e.DeviceName) == "Phone" {
				phone = *e.SessionID
			}
		}
		me.expect(t,
			"OTHER_SESSIONS_REVOKED "+a.Session.ID+" A "+here+" "+pid,
			"OTHER_SESSIONS_REVOKED "+b.Session.ID+" B "+here+" "+pid,
			"OTHER_SESSIONS_REVOKED "+phone+" Phone "+here+" "+pid)
		wantOK(t, s.post(t, p.AccessToken, revokeOthersMutaion, nil))
		me.expect(t) // none ended, none recorded
	})
	t.Run("PasswordChanged", func(t *testing.T) {
		c := login("C")
		me.expect(t, "SIGNED_IN "+c.Session.ID+" C "+here+" -")
		wantCode(t, s.post(t, p.AccessToken, changePassword, map[string]any{"cur": "not the password", "new": "a new fine password"}), "INVALID_CREDENTIALS")
		me.expect(t, "SIGN_IN_FAILED - - "+here+" "+pid)
		wantOK(t, s.post(t, p.AccessToken, changePassword, map[string]any{"cur": testPassword, "new": "a new fine password"}))
		me.expect(t, "PASSWORD_CHANGED - - "+here+" "+pid, "SESSION_REVOKED "+c.Session.ID+" C "+here+" "+pid)
		wantOK(t, s.post(t, p.AccessToken, changePassword, map[string]any{"cur": "a new fine password", "new": testPassword}))
		me.expect(t, "PASSWORD_CHANGED - - "+here+" "+pid)
	})
	t.Run("RefreshTokenReused", func(t *testing.T) {
		d := login("D")
		me.expect(t, "SIGNED_IN "+d.Session.ID+" D "+here+" -")
		next := s.refresh(t, d.refresh())
		wantOK(t, s.post(t, next.AccessToken, meQuery, nil)) // the successor is used
		wantCode(t, s.postHeader(t, http.Header{"Authorization": bearer(d.refresh()), "User-Agent": {"thief/1.0"}}, refreshMutation, nil), "REFRESH_TOKEN_REUSED")
		me.expect(t, "REFRESH_TOKEN_REUSED "+d.Session.ID+" D 127.0.0.1 thief/1.0 -")
		// The session is over: its tokens record nothing more.
		wantCode(t, s.post(t, d.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
		wantCode(t, s.post(t, next.AccessToken, logoutMutation, nil), "UNAUTHENTICATED")
		me.expect(t)
	})
	t.Run("ReplayOnLogout", func(t *testing.T) {
		d := login("E")
		me.expect(t, "SIGNED_IN "+d.Session.ID+" E "+here+" -")
		next := s.refresh(t, d.refresh())
		wantOK(t, s.post(t, next.AccessToken, meQuery, nil))
		wantCode(t, s.post(t, d.refresh(), logoutMutation, nil), "REFRESH_TOKEN_REUSED")
		me.expect(t, "REFRESH_TOKEN_REUSED "+d.Session.ID+" E "+here+" -")
	})
	t.Run("SignedOut", func(t *testing.T) {
		f := login("F")
		me.expect(t, "SIGNED_IN "+f.Session.ID+" F "+here+" -")
		wantOK(t, s.post(t, f.refresh(), logoutMutation, nil))
		me.expect(t, "SIGNED_OUT "+f.Session.ID+" F "+here+" "+f.Session.ID)
		wantCode(t, s.post(t, f.AccessToken, logoutMutation, nil), "UNAUTHENTICATED")
		me.expect(t)
	})
	t.Run("Reauthenticated", func(t *testing.T) {
		wantCode(t, s.post(t, p.AccessToken, reauthMutation, map[string]any{"pw": "not the password"}), "INVALID_CREDENTIALS")
		me.expect(t, "SIGN_IN_FAILED - - "+here+" "+pid)
		wantOK(t, s.post(t, p.AccessToken, reauthMutation, map[string]any{"pw": testPassword}))
		me.expect(t, "REAUTHENTICATED "+pid+" test device "+here+" "+pid)
	})
	t.Run("SessionExpired", func(t *testing.T) {
		g := login("G")
		me.expect(t, "SIGNED_IN "+g.Session.ID+" G "+here+" -")
		if _, err := s.svc.Housekeep(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		me.expect(t) // nothing has expired
		s.backdate(t, "refresh_expires_at", g.Session.ID, time.Second)
		wantCode(t, s.post(t, g.refresh(), refreshMutation, nil), "TOKEN_EXPIRED")
		for range 2 { // recorded once
			if _, err := s.svc.Housekeep(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		}
		me.expect(t, "SESSION_EXPIRED "+g.Session.ID+" G - - -")
		// Deleted a day later, once recorded; its event stays.
		s.backdate(t, "refresh_expires_at", g.Session.ID, 25*time.Hour)
		if _, err := s.svc.Housekeep(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.db.NewSelect().Table("sessions").Where("id = ?", g.Session.ID).Count(ctxT(t)); n != 0 {
			t.Fatal("the expired session was kept")
		}
		me.expect(t)
	})
}

// TestSessionCapRecordsExpiry: the sessions a sign-in ends under
// MAX_SESSIONS_PER_USER are SESSION_EXPIRED by the new session, in the
// sign-in's transaction.
func TestSessionCapRecordsExpiry(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.MaxSessionsPerUser = 2 })
	a := s.signUp(t, "capped@example.com")
	b := s.login(t, "capped@example.com")
	c := s.login(t, "capped@example.com")
	l := &eventLog{s: s, token: c.AccessToken}
	l.expect(t,
		"SIGNED_UP "+a.Session.ID+" test device "+here+" -",
		"SIGNED_IN "+b.Session.ID+" - "+here+" -",
		"SIGNED_IN "+c.Session.ID+" - "+here+" -",
		"SESSION_EXPIRED "+a.Session.ID+" test device "+here+" "+c.Session.ID)
	wantCode(t, s.post(t, a.AccessToken, meQuery, nil), "UNAUTHENTICATED")
}

// TestFailureEventsDoNotRevealEmails: failures are recorded for a
// registered email only, and a registered and an unknown email get the same
// answers, code and message, all the way to the lockout.
func TestFailureEventsDoNotRevealEmails(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) {
		c.Auth.Throttle.MaxFailures = 2
		c.Auth.Throttle.MaxFailuresPerIP = 1000
	})
	known := s.signUp(t, "known@example.com")
	attempt := func(email string) gqlError {
		r := s.post(t, "", loginMutation, map[string]any{"email": email, "password": "not the password"})
		if len(r.Errors) != 1 {
			t.Fatalf("%s: %+v", email, r)
		}
		e := r.Errors[0]
		if e.Extensions["retryAfterSeconds"] != nil {
			e.Extensions["retryAfterSeconds"] = "some" // its value is the window's, not the email's
		}
		return e
	}
	for i := range 4 {
		k, u := attempt("known@example.com"), attempt("unknown@example.com")
		if fmt.Sprint(k) != fmt.Sprint(u) {
			t.Fatalf("attempt %d: registered %+v, unknown %+v", i, k, u)
		}
		want := "INVALID_CREDENTIALS"
		if i >= 2 {
			want = "RATE_LIMITED"
		}
		if k.Extensions["code"] != want {
			t.Fatalf("attempt %d answered %v, want %s", i, k.Extensions["code"], want)
		}
	}
	var kinds []string
	if err := s.db.NewSelect().Model((*models.SecurityEvent)(nil)).Column("kind").Where("kind <> ?", "SIGNED_UP").OrderExpr("at, id").Scan(ctxT(t), &kinds); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(kinds) != "[SIGN_IN_FAILED SIGN_IN_FAILED SIGN_IN_RATE_LIMITED SIGN_IN_RATE_LIMITED]" {
		t.Fatalf("events %v", kinds)
	}
	if n, _ := s.db.NewSelect().Model((*models.SecurityEvent)(nil)).Where("user_id <> ?", known.User.ID).Count(ctxT(t)); n != 0 {
		t.Fatalf("%d events of no account", n)
	}
	// The unknown email has its login counter, like any email, but no
	// event anywhere.
	for table := range tablesMentioning(t, s, "unknown@") {
		if table != "login_throttle" {
			t.Fatalf("the unknown email is in %s", table)
		}
	}
}

// TestEventPagesStableWhileRecording pages through the account's events
// while new ones are recorded: each appears once, in order, and the new ones
// wait for the first page.
func TestEventPagesStableWhileRecording(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.signUp(t, "busy@example.com")
	for range 6 {
		s.login(t, "busy@example.com")
	}
	before := s.events(t, p.AccessToken)
	var got []string
	vars := map[string]any{"first": 2}
	for {
		r := s.post(t, p.AccessToken, securityEventsQuery, vars)
		wantOK(t, r)
		var c eventConnection
		r.field(t, "mySecurityEvents", &c)
		for _, e := range c.Edges {
			got = append(got, e.Node.ID)
		}
		if !c.PageInfo.HasNextPage {
			break
		}
		vars["after"] = *c.PageInfo.EndCursor
		s.login(t, "busy@example.com") // a new event between pages
	}
	var want []string
	for _, e := range before {
		want = append(want, e.ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("paged %v\nwant %v", got, want)
	}
	if after := s.events(t, p.AccessToken); len(after) != len(before)+3 || after[3].ID != before[0].ID {
		t.Fatalf("%d events after paging, want the 3 new ones first", len(after))
	}
}

// callMaxAge runs a product team's field marked @authenticated(maxAge) the
// way TestAuthenticatedMaxAge does, and returns its answer.
func (s *testServer) callMaxAge(t *testing.T, token, maxAge string) string {
	t.Helper()
	return callDirective(s, token, &maxAge)
}

func TestReauthenticate(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 2 })
	p := s.signUp(t, "again@example.com")
	q := s.login(t, "again@example.com")
	// The proofs are 10 minutes old before the tokens are first used, so
	// that where the session cache is on it holds them so.
	s.backdate(t, "authenticated_at", "", 10*time.Minute)
	for range 2 {
		wantOK(t, s.post(t, p.AccessToken, meQuery, nil))
		wantOK(t, s.post(t, q.AccessToken, meQuery, nil))
	}
	if got := s.callMaxAge(t, p.AccessToken, "5m"); got != "error:REAUTHENTICATION_REQUIRED" {
		t.Fatalf("proof 10m old: %q", got)
	}

	t.Run("WrongPasswordChangesNothing", func(t *testing.T) {
		wantCode(t, s.post(t, p.AccessToken, reauthMutation, map[string]any{"pw": "not the password"}), "INVALID_CREDENTIALS")
		if got := s.callMaxAge(t, p.AccessToken, "5m"); got != "error:REAUTHENTICATION_REQUIRED" {
			t.Fatalf("after a wrong password: %q", got)
		}
	})
	t.Run("LiftsTheRequirement", func(t *testing.T) {
		r := s.post(t, p.AccessToken, reauthMutation, map[string]any{"pw": testPassword})
		wantOK(t, r)
		var got struct {
			ID                         string
			Current                    bool
			AuthenticatedAt, CreatedAt time.Time
		}
		r.field(t, "reauthenticate", &got)
		if got.ID != p.Session.ID || !got.Current || !got.AuthenticatedAt.After(got.CreatedAt) {
			t.Fatalf("reauthenticate returned %+v", got)
		}
		if got := s.callMaxAge(t, p.AccessToken, "5m"); got != "again@example.com" {
			t.Fatalf("after reauthenticate: %q", got)
		}
		// Only this session's proof moved.
		if got := s.callMaxAge(t, q.AccessToken, "5m"); got != "error:REAUTHENTICATION_REQUIRED" {
			t.Fatalf("the other session: %q", got)
		}
	})
	t.Run("NeedsAccessToken", func(t *testing.T) {
		wantCode(t, s.post(t, "", reauthMutation, map[string]any{"pw": testPassword}), "UNAUTHENTICATED")
		wantCode(t, s.post(t, p.refresh(), reauthMutation, map[string]any{"pw": testPassword}), "UNAUTHENTICATED")
	})
	t.Run("LimitedLikeLogin", func(t *testing.T) {
		// One failure above, one more: the account is locked, for
		// reauthenticate and login alike, before any password is checked.
		wantCode(t, s.post(t, q.AccessToken, reauthMutation, map[string]any{"pw": "still not it"}), "INVALID_CREDENTIALS")
		work := s.svc.PasswordWork().Verified
		r := s.post(t, q.AccessToken, reauthMutation, map[string]any{"pw": testPassword})
		wantCode(t, r, "RATE_LIMITED")
		if ra, _ := r.Errors[0].Extensions["retryAfterSeconds"].(float64); ra < 1 {
			t.Fatalf("retryAfterSeconds %v", r.Errors[0].Extensions["retryAfterSeconds"])
		}
		wantCode(t, s.post(t, "", loginMutation, map[string]any{"email": "again@example.com", "password": testPassword}), "RATE_LIMITED")
		if got := s.svc.PasswordWork().Verified; got != work {
			t.Fatalf("%d password checks while locked", got-work)
		}
		qid := q.Session.ID
		var got []string
		for _, e := range s.events(t, p.AccessToken)[:4] {
			got = append(got, e.String())
		}
		want := []string{
			"SIGN_IN_RATE_LIMITED - - " + here + " -",
			"SIGN_IN_RATE_LIMITED - - " + here + " " + qid,
			"SIGN_IN_FAILED - - " + here + " " + qid,
			"REAUTHENTICATED " + p.Session.ID + " test device " + here + " " + p.Session.ID,
		}
		if !slices.Equal(got, want) {
			t.Fatalf("events\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	})
}

// tablesMentioning returns the tables with a row whose text contains
// needle, with how many.
func tablesMentioning(t *testing.T, s *testServer, needle string) map[string]int {
	t.Helper()
	listTables := "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
	if pgtest.SQLite() {
		listTables = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
	}
	var tables []string
	if err := s.db.NewRaw(listTables).Scan(ctxT(t), &tables); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, table := range tables {
		rowText := fmt.Sprintf("SELECT t::text FROM %q t", table)
		if pgtest.SQLite() {
			var cols []string
			if err := s.db.NewRaw(fmt.Sprintf("SELECT name FROM pragma_table_info('%s')", table)).Scan(ctxT(t), &cols); err != nil {
				t.Fatal(err)
			}
			for i, c := range cols {
				cols[i] = fmt.Sprintf("coalesce(CAST(%q AS text), '') || '|' || coalesce(hex(%q), '')", c, c)
			}
			rowText = fmt.Sprintf("SELECT %s FROM %q", strings.Join(cols, " || '|' || "), table)
		}
		var rows []string
		if err := s.db.NewRaw(rowText).Scan(ctxT(t), &rows); err != nil && !strings.Contains(err.Error(), "no rows") {
			t.Fatal(err)
		}
		for _, r := range rows {
			if strings.Contains(strings.ToLower(r), strings.ToLower(needle)) {
				out[table]++
			}
		}
	}
	return out
}

func TestDeleteMyAccount(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.DeviceTokenTTL = time.Hour })
	var mu sync.Mutex
	var got []auth.DeliveredEvent
	s.svc.OnEvent("cleanup", func(_ context.Context, e auth.DeliveredEvent) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e)
		return nil
	})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.svc.DeliverEvents(ctx)
	}()
	t.Cleanup(func() { stop(); <-done })

	p := s.signUp(t, "leaving@example.com")
	q := s.login(t, "leaving@example.com")
	other := s.signUp(t, "staying@example.com")
	wantCode(t, s.post(t, "", loginMutation, map[string]any{"email": "leaving@example.com", "password": "a wrong one"}), "INVALID_CREDENTIALS")
	wantOK(t, s.post(t, p.AccessToken, renameMutation, map[string]any{"id": q.Session.ID, "name": "Laptop"}))
	uid := p.User.ID

	t.Run("WrongPasswordDeletesNothing", func(t *testing.T) {
		before := tablesMentioning(t, s, uid)
		wantCode(t, s.post(t, p.AccessToken, deleteMutation, map[string]any{"pw": "not the password"}), "INVALID_CREDENTIALS")
		wantOK(t, s.post(t, q.AccessToken, meQuery, nil))
		after := tablesMentioning(t, s, uid)
		if before["users"] != 1 || after["users"] != 1 || after["sessions"] != before["sessions"] || after["security_events"] != before["security_events"]+1 {
			t.Fatalf("before %v, after %v (want one more event, SIGN_IN_FAILED)", before, after)
		}
	})
	t.Run("NeedsAccessToken", func(t *testing.T) {
		wantCode(t, s.post(t, "", deleteMutation, map[string]any{"pw": testPassword}), "UNAUTHENTICATED")
		wantCode(t, s.post(t, p.refresh(), deleteMutation, map[string]any{"pw": testPassword}), "UNAUTHENTICATED")
	})
	t.Run("DeletesEverything", func(t *testing.T) {
		r := s.post(t, p.AccessToken, deleteMutation, map[string]any{"pw": testPassword})
		wantOK(t, r)
		var ok bool
		r.field(t, "deleteMyAccount", &ok)
		if !ok {
			t.Fatal("deleteMyAccount answered false")
		}
		// Nothing of the account is left but the handlers' outbox rows,
		// which hold ids only.
		for table := range tablesMentioning(t, s, uid) {
			if table != "security_event_outbox" {
				t.Errorf("table %s still mentions the user", table)
			}
		}
		for _, needle := range []string{"leaving@", "Laptop", p.Session.ID, q.Session.ID} {
			if needle == p.Session.ID || needle == q.Session.ID {
				// Ids of the sessions: in the outbox rows of their events only.
				for table := range tablesMentioning(t, s, needle) {
					if table != "security_event_outbox" {
						t.Errorf("session %s is still in %s", needle, table)
					}
				}
				continue
			}
			if m := tablesMentioning(t, s, needle); len(m) > 0 {
				t.Errorf("%q is still stored: %v", needle, m)
			}
		}
		for _, x := range []payload{p, q} {
			wantCode(t, s.post(t, x.AccessToken, meQuery, nil), "UNAUTHENTICATED")
			wantCode(t, s.post(t, x.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
		}
		wantCode(t, s.post(t, "", loginMutation, map[string]any{"email": "leaving@example.com", "password": testPassword}), "INVALID_CREDENTIALS")
		wantOK(t, s.post(t, other.AccessToken, meQuery, nil))
	})
	t.Run("HandlersHearOfIt", func(t *testing.T) {
		waitFor(t, "the deletion delivered", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) > 0 && got[len(got)-1].Kind == auth.EventAccountDeleted
		})
		mu.Lock()
		defer mu.Unlock()
		last := got[len(got)-1]
		if last.UserID != uid || last.SessionID != nil || last.BySessionID != nil || last.DeviceName != nil || last.IPAddress != nil || last.UserAgent != nil {
			t.Fatalf("deletion delivered as %+v", last)
		}
		var kinds []string
		for _, e := range got {
			if e.UserID == uid {
				kinds = append(kinds, string(e.Kind))
			}
		}
		if !slices.Contains(kinds, "SIGNED_UP") || kinds[len(kinds)-1] != "ACCOUNT_DELETED" {
			t.Fatalf("the user's deliveries %v, want every event before ACCOUNT_DELETED", kinds)
		}
	})
	t.Run("SignUpAgain", func(t *testing.T) {
		again := s.signUp(t, "Leaving@example.com")
		if again.User.ID == uid {
			t.Fatal("the old id came back")
		}
		if e := s.events(t, again.AccessToken); len(e) != 1 || e[0].Kind != "SIGNED_UP" {
			t.Fatalf("the new account starts with %v", e)
		}
	})
}

// TestDeleteMyAccountEndsSessionsOnEveryInstance: right after
// deleteMyAccount returns on one instance, the other, which had the
// sessions cached, refuses their tokens.
func TestDeleteMyAccountEndsSessionsOnEveryInstance(t *testing.T) {
	t.Parallel()
	a, b := twoCachingInstances(t, nil)
	p := a.signUp(t, "everywhere@example.com")
	q := a.login(t, "everywhere@example.com")
	warm(t, p.AccessToken, a, b)
	warm(t, q.AccessToken, a, b)
	wantOK(t, a.post(t, p.AccessToken, deleteMutation, map[string]any{"pw": testPassword}))
	wantCode(t, b.post(t, q.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	wantCode(t, b.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	wantCode(t, a.post(t, q.AccessToken, meQuery, nil), "UNAUTHENTICATED")
}

// TestDeleteMyAccountRacingItsSessions deletes an account while its
// sessions log out, refresh and sign in on other connections: every request
// gets an answer of the contract (no deadlock surfacing as INTERNAL), and
// nothing of the account is left.
func TestDeleteMyAccountRacingItsSessions(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	s := newLoggedTestServer(t, pgtest.New(t), nil, logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	owner := s.signUp(t, "racing@example.com")
	var sessions []payload
	for range 8 {
		sessions = append(sessions, s.login(t, "racing@example.com"))
	}
	allowed := map[string]bool{"": true, "UNAUTHENTICATED": true, "INVALID_CREDENTIALS": true}
	var wg sync.WaitGroup
	answers := make(chan gqlResponse, 32)
	for i, x := range sessions {
		wg.Go(func() {
			switch i % 4 {
			case 0:
				answers <- s.post(t, x.AccessToken, logoutMutation, nil)
			case 1:
				answers <- s.post(t, x.refresh(), refreshMutation, nil)
			case 2:
				answers <- s.post(t, x.AccessToken, revokeOthersMutaion, nil)
			default:
				answers <- s.post(t, "", loginMutation, map[string]any{"email": "racing@example.com", "password": testPassword})
			}
		})
	}
	wg.Go(func() { answers <- s.post(t, owner.AccessToken, deleteMutation, map[string]any{"pw": testPassword}) })
	wg.Wait()
	close(answers)
	for r := range answers {
		if !allowed[r.code()] {
			t.Errorf("answered %s: %+v", r.code(), r.Errors)
		}
	}
	// The deletion either won or came after a revokeOtherSessions that
	// ended the owner's session; finish it from a fresh sign-in then.
	if n, _ := s.db.NewSelect().Table("users").Count(ctxT(t)); n == 1 {
		p := s.login(t, "racing@example.com")
		wantOK(t, s.post(t, p.AccessToken, deleteMutation, map[string]any{"pw": testPassword}))
	}
	for table := range tablesMentioning(t, s, owner.User.ID) {
		if table != "security_event_outbox" {
			t.Errorf("table %s still mentions the user", table)
		}
	}
}

// TestSessionChangesRaceWithoutDeadlock runs every kind of change to one
// user's sessions at once, with MAX_SESSIONS_PER_USER ending sessions at
// sign-in: each records its event while holding a session and key-sharing
// the user's row, so a lock order that does not allow that deadlocks here
// (PostgreSQL answers one of them with an error, an INTERNAL).
func TestSessionChangesRaceWithoutDeadlock(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	s := newLoggedTestServer(t, pgtest.New(t), func(c *config) { c.Auth.MaxSessionsPerUser = 4 }, logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	owner := s.signUp(t, "crowd@example.com")
	for round := range 3 {
		var sessions []payload
		for range 4 {
			sessions = append(sessions, s.login(t, "crowd@example.com"))
		}
		allowed := map[string]bool{"": true, "UNAUTHENTICATED": true, "NOT_FOUND": true}
		var wg sync.WaitGroup
		answers := make(chan gqlResponse, 64)
		call := func(token, query string, vars map[string]any) {
			wg.Go(func() { answers <- s.post(t, token, query, vars) })
		}
		for i, x := range sessions {
			call(x.AccessToken, logoutMutation, nil)
			call(x.refresh(), refreshMutation, nil)
			call(owner.AccessToken, renameMutation, map[string]any{"id": x.Session.ID, "name": fmt.Sprint("device ", i)})
			call(sessions[(i+1)%len(sessions)].AccessToken, revokeMutation, map[string]any{"id": x.Session.ID})
			call("", loginMutation, map[string]any{"email": "crowd@example.com", "password": testPassword})
		}
		call(sessions[0].AccessToken, revokeOthersMutaion, nil)
		wg.Go(func() {
			if _, err := s.svc.RevokeUserSessions(context.Background(), "crowd@example.com"); err != nil {
				t.Errorf("revoke-sessions: %v", err)
			}
		})
		wg.Wait()
		close(answers)
		for r := range answers {
			if !allowed[r.code()] {
				t.Fatalf("round %d answered %s: %+v", round, r.code(), r.Errors)
			}
		}
		if _, err := s.svc.RevokeUserSessions(ctxT(t), "crowd@example.com"); err != nil {
			t.Fatal(err)
		}
		owner = s.login(t, "crowd@example.com")
	}
}

// TestDeleteMyAccountClearsRefreshCookie: a browser client's refresh-token
// cookie is cleared with the account, as logout clears it.
func TestDeleteMyAccountClearsRefreshCookie(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	s := newTestServer(t, func(c *config) { c.Auth.AllowedOrigins = []string{app} })
	b := newBrowser(t, s, app)
	r, resp := b.do(http.MethodPost, "application/json", `mutation { signUp(input: {email: "spa-gone@example.com", password: "`+testPassword+`"}) { `+payloadFields+` } }`, nil)
	var p payload
	r.field(t, "signUp", &p)
	cookie := refreshCookie(t, resp)

	body := fmt.Sprintf(`{"query": %q}`, `mutation { deleteMyAccount(password: "`+testPassword+`") }`)
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", app)
	req.Header.Set(cookies.TransportHeader, "cookie")
	req.Header.Set("Authorization", "Bearer "+p.AccessToken)
	req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if cleared := refreshCookie(t, res); cleared.MaxAge >= 0 || cleared.Value != "" {
		t.Fatalf("deleteMyAccount did not clear the cookie: %+v", cleared)
	}
	r, _ = b.do(http.MethodPost, "application/json", refreshMutation, cookie)
	wantCode(t, r, "UNAUTHENTICATED")
}
