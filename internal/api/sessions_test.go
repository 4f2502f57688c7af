package api

import (
	"testing"
	"time"

	"github.com/example/sessionauth/internal/testkit"
)

func TestLogout(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)

	for _, kind := range []string{"AccessToken", "RefreshToken"} {
		t.Run("With"+kind, func(t *testing.T) {
			p := s.SignUp(t, kind+"@example.com")
			token := p.AccessToken
			if kind == "RefreshToken" {
				token = p.Refresh()
			}
			r := s.Post(t, token, testkit.LogoutMutation, nil)
			testkit.WantOK(t, r)
			if string(r.Data["logout"]) != "true" {
				t.Fatalf("logout = %s", r.Data["logout"])
			}
			testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
			testkit.WantCode(t, s.Post(t, p.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
			testkit.WantCode(t, s.Post(t, token, testkit.LogoutMutation, nil), "UNAUTHENTICATED")
		})
	}

	t.Run("WithoutToken", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, "", testkit.LogoutMutation, nil), "UNAUTHENTICATED")
	})

	t.Run("EndsOnlyThatDevice", func(t *testing.T) {
		a := s.SignUp(t, "two@example.com")
		b := s.Login(t, "two@example.com", testkit.Password)
		testkit.WantOK(t, s.Post(t, a.AccessToken, testkit.LogoutMutation, nil))
		testkit.WantOK(t, s.Post(t, b.AccessToken, testkit.MeQuery, nil))
	})

	t.Run("RetryOfRotatedTokenAfterLogoutIsRefused", func(t *testing.T) {
		p := s.SignUp(t, "lo-retry@example.com")
		n := s.Refresh(t, p.Refresh())
		testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.LogoutMutation, nil))
		testkit.WantCode(t, s.Post(t, p.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
	})
}

func TestMySessions(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.SignUp(t, "many@example.com")
	b := s.Login(t, "many@example.com", testkit.Password)
	c := s.Login(t, "many@example.com", testkit.Password)
	stranger := s.SignUp(t, "stranger@example.com")
	testkit.WantOK(t, s.Post(t, c.AccessToken, testkit.LogoutMutation, nil))
	// Make a the most recently used, by the database's own clock.
	s.backdate(t, "last_used_at", b.Session.ID, time.Hour)

	var list []testkit.Session
	s.Post(t, b.AccessToken, testkit.MySessionsQuery, nil).Field(t, "mySessions", &list)
	if len(list) != 2 {
		t.Fatalf("got %d sessions, want 2 live ones: %+v", len(list), list)
	}
	// b was just used (lastUsedAt an hour old is refreshed on use) so it leads.
	if list[0].ID != b.Session.ID || !list[0].Current || list[1].ID != a.Session.ID || list[1].Current {
		t.Fatalf("order/current wrong: %+v", list)
	}
	if list[0].LastUsedAt.Before(list[1].LastUsedAt) {
		t.Fatal("not most recently used first")
	}
	for _, sess := range list {
		if sess.ID == stranger.Session.ID || sess.ID == c.Session.ID {
			t.Fatalf("listed a foreign or ended session: %s", sess.ID)
		}
	}
}

func TestLastUsedAtIsThrottled(t *testing.T) {
	t.Parallel()
	// Without the session cache: its entries keep the lastUsedAt they last
	// wrote, so the backdating below would go unnoticed until they expire.
	s := newTestServer(t, func(c *config) { c.SessionCache = false })
	p := s.SignUp(t, "touch@example.com")
	lastUsed := func() time.Time {
		var ts time.Time
		if err := s.db.NewRaw("SELECT last_used_at FROM sessions WHERE id = ?", p.Session.ID).Scan(testkit.Context(t), &ts); err != nil {
			t.Fatal(err)
		}
		return ts
	}
	before := lastUsed()
	for range 5 {
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil))
	}
	if got := lastUsed(); !got.Equal(before) {
		t.Fatalf("lastUsedAt written on every request: %v -> %v", before, got)
	}
	s.backdate(t, "last_used_at", p.Session.ID, 2*time.Minute)
	stale := lastUsed()
	testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil))
	// Written in a batch within a second (auth/touch.go), not in the
	// request.
	testkit.Eventually(t, "lastUsedAt moved forward after 2 minutes", func() bool { return lastUsed().Sub(stale) >= time.Minute })
}

func TestRevokeSession(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.SignUp(t, "owner@example.com")
	b := s.Login(t, "owner@example.com", testkit.Password)
	mallory := s.SignUp(t, "mallory@example.com")

	t.Run("AnotherUsersSessionIsNotFound", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, mallory.AccessToken, testkit.RevokeMutation, map[string]any{"id": a.Session.ID}), "NOT_FOUND")
		testkit.WantOK(t, s.Post(t, a.AccessToken, testkit.MeQuery, nil))
	})
	t.Run("MalformedIDIsNotFound", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, a.AccessToken, testkit.RevokeMutation, map[string]any{"id": "'; DROP TABLE sessions; --"}), "NOT_FOUND")
		testkit.WantCode(t, s.Post(t, a.AccessToken, testkit.RevokeMutation, map[string]any{"id": "00000000-0000-0000-0000-000000000000"}), "NOT_FOUND")
		testkit.WantCode(t, s.Post(t, a.AccessToken, testkit.RevokeMutation, map[string]any{"id": "urn:uuid:00000000-0000-0000-0000-000000000000"}), "NOT_FOUND")
	})
	t.Run("NeedsAccessToken", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, "", testkit.RevokeMutation, map[string]any{"id": b.Session.ID}), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, a.Refresh(), testkit.RevokeMutation, map[string]any{"id": b.Session.ID}), "UNAUTHENTICATED")
	})
	t.Run("EndsOwnOtherDeviceAtOnce", func(t *testing.T) {
		r := s.Post(t, a.AccessToken, testkit.RevokeMutation, map[string]any{"id": b.Session.ID})
		testkit.WantOK(t, r)
		if string(r.Data["revokeSession"]) != "true" {
			t.Fatalf("revokeSession = %s", r.Data["revokeSession"])
		}
		testkit.WantCode(t, s.Post(t, b.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, b.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, a.AccessToken, testkit.RevokeMutation, map[string]any{"id": b.Session.ID}), "NOT_FOUND")
	})
	t.Run("CurrentSessionToo", func(t *testing.T) {
		testkit.WantOK(t, s.Post(t, a.AccessToken, testkit.RevokeMutation, map[string]any{"id": a.Session.ID}))
		testkit.WantCode(t, s.Post(t, a.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	})
}

func TestRevokeOtherSessions(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.SignUp(t, "others@example.com")
	b := s.Login(t, "others@example.com", testkit.Password)
	c := s.Login(t, "others@example.com", testkit.Password)
	d := s.Login(t, "others@example.com", testkit.Password)
	testkit.WantOK(t, s.Post(t, d.AccessToken, testkit.LogoutMutation, nil))
	other := s.SignUp(t, "bystander@example.com")

	r := s.Post(t, a.AccessToken, testkit.RevokeOthersMutation, nil)
	testkit.WantOK(t, r)
	if string(r.Data["revokeOtherSessions"]) != "2" {
		t.Fatalf("revokeOtherSessions = %s, want 2", r.Data["revokeOtherSessions"])
	}
	testkit.WantOK(t, s.Post(t, a.AccessToken, testkit.MeQuery, nil))
	testkit.WantOK(t, s.Post(t, other.AccessToken, testkit.MeQuery, nil))
	for _, p := range []testkit.Payload{b, c} {
		testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	}
	r = s.Post(t, a.AccessToken, testkit.RevokeOthersMutation, nil)
	if string(r.Data["revokeOtherSessions"]) != "0" {
		t.Fatalf("second revokeOtherSessions = %s, want 0", r.Data["revokeOtherSessions"])
	}
	testkit.WantCode(t, s.Post(t, "", testkit.RevokeOthersMutation, nil), "UNAUTHENTICATED")
}

func TestChangePassword(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.SignUp(t, "pw@example.com")
	b := s.Login(t, "pw@example.com", testkit.Password)
	const newPassword = "a much better passphrase"

	testkit.WantCode(t, s.Post(t, a.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": "not the password", "new": newPassword}), "INVALID_CREDENTIALS")
	testkit.WantCode(t, s.Post(t, a.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "short"}), "BAD_USER_INPUT")
	testkit.WantCode(t, s.Post(t, "", testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": newPassword}), "UNAUTHENTICATED")
	// Nothing changed by the failures.
	testkit.WantOK(t, s.Post(t, b.AccessToken, testkit.MeQuery, nil))

	r := s.Post(t, a.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": newPassword})
	testkit.WantOK(t, r)
	testkit.WantOK(t, s.Post(t, a.AccessToken, testkit.MeQuery, nil))
	testkit.WantCode(t, s.Post(t, b.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantCode(t, s.Post(t, b.Refresh(), testkit.RefreshMutation, nil), "UNAUTHENTICATED")
	testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "pw@example.com", "password": testkit.Password}), "INVALID_CREDENTIALS")
	testkit.WantOK(t, s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "pw@example.com", "password": newPassword}))
}
