package api

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
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
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
	r := s.Post(t, token, securityEventsQuery, map[string]any{"first": 100})
	testkit.WantOK(t, r)
	var c eventConnection
	r.Field(t, "mySecurityEvents", &c)
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
		if _, err := s.db.ExecContext(testkit.Context(t), "DELETE FROM "+table+" WHERE user_id = ?", userID); err != nil {
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
	p := s.SignUp(t, "log@example.com")
	me := &eventLog{s: s, token: p.AccessToken}
	pid := p.Session.ID
	me.expect(t, "SIGNED_UP "+pid+" test device "+here+" -")

	login := func(device string) testkit.Payload {
		t.Helper()
		r := s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "log@example.com", "password": testkit.Password, "device": device})
		var q testkit.Payload
		r.Field(t, "login", &q)
		return q
	}
	t.Run("SignedIn", func(t *testing.T) {
		q := login("Phone")
		me.expect(t, "SIGNED_IN "+q.Session.ID+" Phone "+here+" -")
	})
	t.Run("SignInFailed", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "LOG@example.com", "password": "wrong password"}), "INVALID_CREDENTIALS")
		me.expect(t, "SIGN_IN_FAILED - - "+here+" -")
	})
	t.Run("RenameAndRevoke", func(t *testing.T) {
		q := login("")
		me.expect(t, "SIGNED_IN "+q.Session.ID+" - "+here+" -")
		testkit.WantOK(t, s.Post(t, p.AccessToken, renameMutation, map[string]any{"id": q.Session.ID, "name": " Work laptop "}))
		me.expect(t, "SESSION_RENAMED "+q.Session.ID+" Work laptop "+here+" "+pid)
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}))
		me.expect(t, "SESSION_REVOKED "+q.Session.ID+" Work laptop "+here+" "+pid)
	})
	t.Run("FailedChangesRecordNothing", func(t *testing.T) {
		q := login("Tablet")
		me.expect(t, "SIGNED_IN "+q.Session.ID+" Tablet "+here+" -")
		// Another id that looks like one: its last digit changed (one
		// UUID in sixteen already ends in "0").
		other := q.Session.ID[:35] + "0"
		if other == q.Session.ID {
			other = q.Session.ID[:35] + "1"
		}
		testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": other}), "NOT_FOUND")
		testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": "nope"}), "NOT_FOUND")
		testkit.WantCode(t, s.Post(t, p.AccessToken, renameMutation, map[string]any{"id": q.Session.ID, "name": "  "}), "BAD_USER_INPUT")
		testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "short"}), "BAD_USER_INPUT")
		testkit.WantCode(t, s.Post(t, strings.Repeat("x", 256), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, q.AccessToken, testkit.RefreshMutation, nil), "UNAUTHENTICATED")
		// A refresh that works is no change of API.md's lists.
		s.Refresh(t, q.Refresh())
		me.expect(t)
		testkit.WantOK(t, s.Post(t, q.AccessToken[:0]+p.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}))
		me.expect(t, "SESSION_REVOKED "+q.Session.ID+" Tablet "+here+" "+pid)
		// Revoking it again: NOT_FOUND, nothing recorded.
		testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}), "NOT_FOUND")
		me.expect(t)
	})
	t.Run("OtherSessionsRevoked", func(t *testing.T) {
		a, b := login("A"), login("B")
		me.expect(t, "SIGNED_IN "+a.Session.ID+" A "+here+" -", "SIGNED_IN "+b.Session.ID+" B "+here+" -")
		r := s.Post(t, p.AccessToken, testkit.RevokeOthersMutation, nil)
		var n int
		r.Field(t, "revokeOtherSessions", &n)
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
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.RevokeOthersMutation, nil))
		me.expect(t) // none ended, none recorded
	})
	t.Run("PasswordChanged", func(t *testing.T) {
		c := login("C")
		me.expect(t, "SIGNED_IN "+c.Session.ID+" C "+here+" -")
		testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": "not the password", "new": "a new fine password"}), "INVALID_CREDENTIALS")
		me.expect(t, "SIGN_IN_FAILED - - "+here+" "+pid)
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "a new fine password"}))
		me.expect(t, "PASSWORD_CHANGED - - "+here+" "+pid, "SESSION_REVOKED "+c.Session.ID+" C "+here+" "+pid)
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": "a new fine password", "new": testkit.Password}))
		me.expect(t, "PASSWORD_CHANGED - - "+here+" "+pid)
	})
	t.Run("RefreshTokenReused", func(t *testing.T) {
		d := login("D")
		me.expect(t, "SIGNED_IN "+d.Session.ID+" D "+here+" -")
		next := s.Refresh(t, d.Refresh())
		testkit.WantOK(t, s.Post(t, next.AccessToken, testkit.MeQuery, nil)) // the successor is used
		testkit.WantCode(t, s.PostHeader(t, http.Header{"Authorization": {"Bearer " + d.Refresh()}, "User-Agent": {"thief/1.0"}}, testkit.RefreshMutation, nil), "REFRESH_TOKEN_REUSED")
		me.expect(t, "REFRESH_TOKEN_REUSED "+d.Session.ID+" D 127.0.0.1 thief/1.0 -")
		// The session is over: its tokens record nothing more.
		testkit.WantCode(t, s.Post(t, d.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, next.AccessToken, testkit.LogoutMutation, nil), "UNAUTHENTICATED")
		me.expect(t)
	})
	t.Run("ReplayOnLogout", func(t *testing.T) {
		d := login("E")
		me.expect(t, "SIGNED_IN "+d.Session.ID+" E "+here+" -")
		next := s.Refresh(t, d.Refresh())
		testkit.WantOK(t, s.Post(t, next.AccessToken, testkit.MeQuery, nil))
		testkit.WantCode(t, s.Post(t, d.Refresh(), testkit.LogoutMutation, nil), "REFRESH_TOKEN_REUSED")
		me.expect(t, "REFRESH_TOKEN_REUSED "+d.Session.ID+" E "+here+" -")
	})
	t.Run("SignedOut", func(t *testing.T) {
		f := login("F")
		me.expect(t, "SIGNED_IN "+f.Session.ID+" F "+here+" -")
		testkit.WantOK(t, s.Post(t, f.Refresh(), testkit.LogoutMutation, nil))
		me.expect(t, "SIGNED_OUT "+f.Session.ID+" F "+here+" "+f.Session.ID)
		testkit.WantCode(t, s.Post(t, f.AccessToken, testkit.LogoutMutation, nil), "UNAUTHENTICATED")
		me.expect(t)
	})
	t.Run("Reauthenticated", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, p.AccessToken, reauthMutation, map[string]any{"pw": "not the password"}), "INVALID_CREDENTIALS")
		me.expect(t, "SIGN_IN_FAILED - - "+here+" "+pid)
		testkit.WantOK(t, s.Post(t, p.AccessToken, reauthMutation, map[string]any{"pw": testkit.Password}))
		me.expect(t, "REAUTHENTICATED "+pid+" test device "+here+" "+pid)
	})
	t.Run("SessionExpired", func(t *testing.T) {
		g := login("G")
		me.expect(t, "SIGNED_IN "+g.Session.ID+" G "+here+" -")
		if _, err := s.svc.Housekeep(testkit.Context(t)); err != nil {
			t.Fatal(err)
		}
		me.expect(t) // nothing has expired
		s.backdate(t, "refresh_expires_at", g.Session.ID, time.Second)
		testkit.WantCode(t, s.Post(t, g.Refresh(), testkit.RefreshMutation, nil), "TOKEN_EXPIRED")
		for range 2 { // recorded once
			if _, err := s.svc.Housekeep(testkit.Context(t)); err != nil {
				t.Fatal(err)
			}
		}
		me.expect(t, "SESSION_EXPIRED "+g.Session.ID+" G - - -")
		// Deleted a day later, once recorded; its event stays.
		s.backdate(t, "refresh_expires_at", g.Session.ID, 25*time.Hour)
		if _, err := s.svc.Housekeep(testkit.Context(t)); err != nil {
			t.Fatal(err)
		}
		if n, _ := s.db.NewSelect().Table("sessions").Where("id = ?", g.Session.ID).Count(testkit.Context(t)); n != 0 {
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
	a := s.SignUp(t, "capped@example.com")
	b := s.Login(t, "capped@example.com", testkit.Password)
	c := s.Login(t, "capped@example.com", testkit.Password)
	l := &eventLog{s: s, token: c.AccessToken}
	l.expect(t,
		"SIGNED_UP "+a.Session.ID+" test device "+here+" -",
		"SIGNED_IN "+b.Session.ID+" - "+here+" -",
		"SIGNED_IN "+c.Session.ID+" - "+here+" -",
		"SESSION_EXPIRED "+a.Session.ID+" test device "+here+" "+c.Session.ID)
	testkit.WantCode(t, s.Post(t, a.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
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
	known := s.SignUp(t, "known@example.com")
	attempt := func(email string) testkit.Error {
		r := s.Post(t, "", testkit.LoginMutation, map[string]any{"email": email, "password": "not the password"})
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
	if err := s.db.NewSelect().Model((*models.SecurityEvent)(nil)).Column("kind").Where("kind <> ?", "SIGNED_UP").OrderExpr("at, id").Scan(testkit.Context(t), &kinds); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(kinds) != "[SIGN_IN_FAILED SIGN_IN_FAILED SIGN_IN_RATE_LIMITED SIGN_IN_RATE_LIMITED]" {
		t.Fatalf("events %v", kinds)
	}
	if n, _ := s.db.NewSelect().Model((*models.SecurityEvent)(nil)).Where("user_id <> ?", known.User.ID).Count(testkit.Context(t)); n != 0 {
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
	p := s.SignUp(t, "busy@example.com")
	for range 6 {
		s.Login(t, "busy@example.com", testkit.Password)
	}
	before := s.events(t, p.AccessToken)
	var got []string
	vars := map[string]any{"first": 2}
	for {
		r := s.Post(t, p.AccessToken, securityEventsQuery, vars)
		testkit.WantOK(t, r)
		var c eventConnection
		r.Field(t, "mySecurityEvents", &c)
		for _, e := range c.Edges {
			got = append(got, e.Node.ID)
		}
		if !c.PageInfo.HasNextPage {
			break
		}
		vars["after"] = *c.PageInfo.EndCursor
		s.Login(t, "busy@example.com", testkit.Password) // a new event between pages
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
	p := s.SignUp(t, "again@example.com")
	q := s.Login(t, "again@example.com", testkit.Password)
	// The proofs are 10 minutes old before the tokens are first used, so
	// that where the session cache is on it holds them so.
	s.backdate(t, "authenticated_at", "", 10*time.Minute)
	for range 2 {
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil))
		testkit.WantOK(t, s.Post(t, q.AccessToken, testkit.MeQuery, nil))
	}
	if got := s.callMaxAge(t, p.AccessToken, "5m"); got != "error:REAUTHENTICATION_REQUIRED" {
		t.Fatalf("proof 10m old: %q", got)
	}

	t.Run("WrongPasswordChangesNothing", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, p.AccessToken, reauthMutation, map[string]any{"pw": "not the password"}), "INVALID_CREDENTIALS")
		if got := s.callMaxAge(t, p.AccessToken, "5m"); got != "error:REAUTHENTICATION_REQUIRED" {
			t.Fatalf("after a wrong password: %q", got)
		}
	})
	t.Run("LiftsTheRequirement", func(t *testing.T) {
		r := s.Post(t, p.AccessToken, reauthMutation, map[string]any{"pw": testkit.Password})
		testkit.WantOK(t, r)
		var got struct {
			ID                         string
			Current                    bool
			AuthenticatedAt, CreatedAt time.Time
		}
		r.Field(t, "reauthenticate", &got)
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
		testkit.WantCode(t, s.Post(t, "", reauthMutation, map[string]any{"pw": testkit.Password}), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, p.Refresh(), reauthMutation, map[string]any{"pw": testkit.Password}), "UNAUTHENTICATED")
	})
	t.Run("LimitedLikeLogin", func(t *testing.T) {
		// One failure above, one more: the account is locked, for
		// reauthenticate and login alike, before any password is checked.
		testkit.WantCode(t, s.Post(t, q.AccessToken, reauthMutation, map[string]any{"pw": "still not it"}), "INVALID_CREDENTIALS")
		work := s.svc.PasswordWork().Verified
		r := s.Post(t, q.AccessToken, reauthMutation, map[string]any{"pw": testkit.Password})
		testkit.WantCode(t, r, "RATE_LIMITED")
		if ra, _ := r.Errors[0].Extensions["retryAfterSeconds"].(float64); ra < 1 {
			t.Fatalf("retryAfterSeconds %v", r.Errors[0].Extensions["retryAfterSeconds"])
		}
		testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "again@example.com", "password": testkit.Password}), "RATE_LIMITED")
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
	out := map[string]int{}
	for _, table := range testkit.Tables(t, s.db) {
		rowText := fmt.Sprintf("SELECT t::text FROM %q t", table)
		if pgtest.SQLite() {
			var cols []string
			if err := s.db.NewRaw(fmt.Sprintf("SELECT name FROM pragma_table_info('%s')", table)).Scan(testkit.Context(t), &cols); err != nil {
				t.Fatal(err)
			}
			for i, c := range cols {
				cols[i] = fmt.Sprintf("coalesce(CAST(%q AS text), '') || '|' || coalesce(hex(%q), '')", c, c)
			}
			rowText = fmt.Sprintf("SELECT %s FROM %q", strings.Join(cols, " || '|' || "), table)
		}
		var rows []string
		if err := s.db.NewRaw(rowText).Scan(testkit.Context(t), &rows); err != nil && !strings.Contains(err.Error(), "no rows") {
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

	p := s.SignUp(t, "leaving@example.com")
	q := s.Login(t, "leaving@example.com", testkit.Password)
	other := s.SignUp(t, "staying@example.com")
	testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "leaving@example.com", "password": "a wrong one"}), "INVALID_CREDENTIALS")
	testkit.WantOK(t, s.Post(t, p.AccessToken, renameMutation, map[string]any{"id": q.Session.ID, "name": "Laptop"}))
	uid := p.User.ID

	t.Run("WrongPasswordDeletesNothing", func(t *testing.T) {
		before := tablesMentioning(t, s, uid)
		testkit.WantCode(t, s.Post(t, p.AccessToken, deleteMutation, map[string]any{"pw": "not the password"}), "INVALID_CREDENTIALS")
		testkit.WantOK(t, s.Post(t, q.AccessToken, testkit.MeQuery, nil))
		after := tablesMentioning(t, s, uid)
		if before["users"] != 1 || after["users"] != 1 || after["sessions"] != before["sessions"] || after["security_events"] != before["security_events"]+1 {
			t.Fatalf("before %v, after %v (want one more event, SIGN_IN_FAILED)", before, after)
		}
	})
	t.Run("NeedsAccessToken", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, "", deleteMutation, map[string]any{"pw": testkit.Password}), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, p.Refresh(), deleteMutation, map[string]any{"pw": testkit.Password}), "UNAUTHENTICATED")
	})
	t.Run("DeletesEverything", func(t *testing.T) {
		r := s.Post(t, p.AccessToken, deleteMutation, map[string]any{"pw": testkit.Password})
		testkit.WantOK(t, r)
		var ok bool
		r.Field(t, "deleteMyAccount", &ok)
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
		for _, x := range []testkit.Payload{p, q} {
			testkit.WantCode(t, s.Post(t, x.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
			testkit.WantCode(t, s.Post(t, x.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
		}
		testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "leaving@example.com", "password": testkit.Password}), "INVALID_CREDENTIALS")
		testkit.WantOK(t, s.Post(t, other.AccessToken, testkit.MeQuery, nil))
	})
	t.Run("HandlersHearOfIt", func(t *testing.T) {
		testkit.Eventually(t, "the deletion delivered", func() bool {
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
		again := s.SignUp(t, "Leaving@example.com")
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
	p := a.SignUp(t, "everywhere@example.com")
	q := a.Login(t, "everywhere@example.com", testkit.Password)
	warm(t, p.AccessToken, a, b)
	warm(t, q.AccessToken, a, b)
	testkit.WantOK(t, a.Post(t, p.AccessToken, deleteMutation, map[string]any{"pw": testkit.Password}))
	testkit.WantCode(t, b.Post(t, q.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantCode(t, b.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantCode(t, a.Post(t, q.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
}

// TestDeleteMyAccountRacingItsSessions deletes an account while its
// sessions log out, refresh and sign in on other connections: every request
// gets an answer of the contract (no deadlock surfacing as INTERNAL), and
// nothing of the account is left.
func TestDeleteMyAccountRacingItsSessions(t *testing.T) {
	t.Parallel()
	logs := &testkit.SyncBuffer{}
	s := newLoggedTestServer(t, pgtest.New(t), nil, logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	owner := s.SignUp(t, "racing@example.com")
	var sessions []testkit.Payload
	for range 8 {
		sessions = append(sessions, s.Login(t, "racing@example.com", testkit.Password))
	}
	allowed := map[string]bool{"": true, "UNAUTHENTICATED": true, "INVALID_CREDENTIALS": true}
	var wg sync.WaitGroup
	answers := make(chan testkit.Response, 32)
	for i, x := range sessions {
		wg.Go(func() {
			switch i % 4 {
			case 0:
				answers <- s.Post(t, x.AccessToken, testkit.LogoutMutation, nil)
			case 1:
				answers <- s.Post(t, x.Refresh(), testkit.RefreshMutation, nil)
			case 2:
				answers <- s.Post(t, x.AccessToken, testkit.RevokeOthersMutation, nil)
			default:
				answers <- s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "racing@example.com", "password": testkit.Password})
			}
		})
	}
	wg.Go(func() {
		answers <- s.Post(t, owner.AccessToken, deleteMutation, map[string]any{"pw": testkit.Password})
	})
	wg.Wait()
	close(answers)
	for r := range answers {
		if !allowed[r.Code()] {
			t.Errorf("answered %s: %+v", r.Code(), r.Errors)
		}
	}
	// The deletion either won or came after a revokeOtherSessions that
	// ended the owner's session; finish it from a fresh sign-in then.
	if n, _ := s.db.NewSelect().Table("users").Count(testkit.Context(t)); n == 1 {
		p := s.Login(t, "racing@example.com", testkit.Password)
		testkit.WantOK(t, s.Post(t, p.AccessToken, deleteMutation, map[string]any{"pw": testkit.Password}))
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
	logs := &testkit.SyncBuffer{}
	s := newLoggedTestServer(t, pgtest.New(t), func(c *config) { c.Auth.MaxSessionsPerUser = 4 }, logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	owner := s.SignUp(t, "crowd@example.com")
	for round := range 3 {
		var sessions []testkit.Payload
		for range 4 {
			sessions = append(sessions, s.Login(t, "crowd@example.com", testkit.Password))
		}
		allowed := map[string]bool{"": true, "UNAUTHENTICATED": true, "NOT_FOUND": true}
		var wg sync.WaitGroup
		answers := make(chan testkit.Response, 64)
		call := func(token, query string, vars map[string]any) {
			wg.Go(func() { answers <- s.Post(t, token, query, vars) })
		}
		for i, x := range sessions {
			call(x.AccessToken, testkit.LogoutMutation, nil)
			call(x.Refresh(), testkit.RefreshMutation, nil)
			call(owner.AccessToken, renameMutation, map[string]any{"id": x.Session.ID, "name": fmt.Sprint("device ", i)})
			call(sessions[(i+1)%len(sessions)].AccessToken, testkit.RevokeMutation, map[string]any{"id": x.Session.ID})
			call("", testkit.LoginMutation, map[string]any{"email": "crowd@example.com", "password": testkit.Password})
		}
		call(sessions[0].AccessToken, testkit.RevokeOthersMutation, nil)
		wg.Go(func() {
			if _, err := s.svc.RevokeUserSessions(context.Background(), "crowd@example.com"); err != nil {
				t.Errorf("revoke-sessions: %v", err)
			}
		})
		wg.Wait()
		close(answers)
		for r := range answers {
			if !allowed[r.Code()] {
				t.Fatalf("round %d answered %s: %+v", round, r.Code(), r.Errors)
			}
		}
		if _, err := s.svc.RevokeUserSessions(testkit.Context(t), "crowd@example.com"); err != nil {
			t.Fatal(err)
		}
		owner = s.Login(t, "crowd@example.com", testkit.Password)
	}
}

// TestDeleteMyAccountClearsRefreshCookie: a browser client's refresh-token
// cookie is cleared with the account, as logout clears it.
func TestDeleteMyAccountClearsRefreshCookie(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	s := newTestServer(t, func(c *config) { c.Auth.AllowedOrigins = []string{app} })
	b := newBrowser(t, s, app)
	r := b.do("application/json", `mutation { signUp(input: {email: "spa-gone@example.com", password: "`+testkit.Password+`"}) { `+testkit.PayloadFields+` } }`, nil)
	var p testkit.Payload
	r.Field(t, "signUp", &p)
	cookie := refreshCookie(t, r)

	r = b.doAs(p.AccessToken, "application/json", `mutation { deleteMyAccount(password: "`+testkit.Password+`") }`, cookie)
	if cleared := refreshCookie(t, r); cleared.MaxAge >= 0 || cleared.Value != "" {
		t.Fatalf("deleteMyAccount did not clear the cookie: %+v", cleared)
	}
	r = b.do("application/json", testkit.RefreshMutation, cookie)
	testkit.WantCode(t, r, "UNAUTHENTICATED")
}
