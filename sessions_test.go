package main

import (
	"testing"
	"time"
)

func TestLogout(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)

	for _, kind := range []string{"AccessToken", "RefreshToken"} {
		t.Run("With"+kind, func(t *testing.T) {
			p := s.signUp(t, kind+"@example.com")
			token := p.AccessToken
			if kind == "RefreshToken" {
				token = p.refresh()
			}
			r := s.post(t, token, logoutMutation, nil)
			wantOK(t, r)
			if string(r.Data["logout"]) != "true" {
				t.Fatalf("logout = %s", r.Data["logout"])
			}
			wantCode(t, s.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
			wantCode(t, s.post(t, p.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
			wantCode(t, s.post(t, token, logoutMutation, nil), "UNAUTHENTICATED")
		})
	}

	t.Run("WithoutToken", func(t *testing.T) {
		wantCode(t, s.post(t, "", logoutMutation, nil), "UNAUTHENTICATED")
	})

	t.Run("EndsOnlyThatDevice", func(t *testing.T) {
		a := s.signUp(t, "two@example.com")
		b := s.login(t, "two@example.com")
		wantOK(t, s.post(t, a.AccessToken, logoutMutation, nil))
		wantOK(t, s.post(t, b.AccessToken, meQuery, nil))
	})

	t.Run("RetryOfRotatedTokenAfterLogoutIsRefused", func(t *testing.T) {
		p := s.signUp(t, "lo-retry@example.com")
		n := s.refresh(t, p.refresh())
		wantOK(t, s.post(t, n.AccessToken, logoutMutation, nil))
		wantCode(t, s.post(t, p.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
	})
}

func TestMySessions(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signUp(t, "many@example.com")
	b := s.login(t, "many@example.com")
	c := s.login(t, "many@example.com")
	stranger := s.signUp(t, "stranger@example.com")
	wantOK(t, s.post(t, c.AccessToken, logoutMutation, nil))
	// Make a the most recently used, by the database's own clock.
	s.backdate(t, "last_used_at", b.Session.ID, time.Hour)

	var list []session
	s.post(t, b.AccessToken, mySessionsQuery, nil).field(t, "mySessions", &list)
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
	p := s.signUp(t, "touch@example.com")
	lastUsed := func() time.Time {
		var ts time.Time
		if err := s.db.NewRaw("SELECT last_used_at FROM sessions WHERE id = ?", p.Session.ID).Scan(ctxT(t), &ts); err != nil {
			t.Fatal(err)
		}
		return ts
	}
	before := lastUsed()
	for range 5 {
		wantOK(t, s.post(t, p.AccessToken, meQuery, nil))
	}
	if got := lastUsed(); !got.Equal(before) {
		t.Fatalf("lastUsedAt written on every request: %v -> %v", before, got)
	}
	s.backdate(t, "last_used_at", p.Session.ID, 2*time.Minute)
	stale := lastUsed()
	wantOK(t, s.post(t, p.AccessToken, meQuery, nil))
	// Written in a batch within a second (auth/touch.go), not in the
	// request.
	eventually(t, func() bool { return lastUsed().Sub(stale) >= time.Minute })
}

func TestRevokeSession(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signUp(t, "owner@example.com")
	b := s.login(t, "owner@example.com")
	mallory := s.signUp(t, "mallory@example.com")

	t.Run("AnotherUsersSessionIsNotFound", func(t *testing.T) {
		wantCode(t, s.post(t, mallory.AccessToken, revokeMutation, map[string]any{"id": a.Session.ID}), "NOT_FOUND")
		wantOK(t, s.post(t, a.AccessToken, meQuery, nil))
	})
	t.Run("MalformedIDIsNotFound", func(t *testing.T) {
		wantCode(t, s.post(t, a.AccessToken, revokeMutation, map[string]any{"id": "'; DROP TABLE sessions; --"}), "NOT_FOUND")
		wantCode(t, s.post(t, a.AccessToken, revokeMutation, map[string]any{"id": "00000000-0000-0000-0000-000000000000"}), "NOT_FOUND")
		wantCode(t, s.post(t, a.AccessToken, revokeMutation, map[string]any{"id": "urn:uuid:00000000-0000-0000-0000-000000000000"}), "NOT_FOUND")
	})
	t.Run("NeedsAccessToken", func(t *testing.T) {
		wantCode(t, s.post(t, "", revokeMutation, map[string]any{"id": b.Session.ID}), "UNAUTHENTICATED")
		wantCode(t, s.post(t, a.refresh(), revokeMutation, map[string]any{"id": b.Session.ID}), "UNAUTHENTICATED")
	})
	t.Run("EndsOwnOtherDeviceAtOnce", func(t *testing.T) {
		r := s.post(t, a.AccessToken, revokeMutation, map[string]any{"id": b.Session.ID})
		wantOK(t, r)
		if string(r.Data["revokeSession"]) != "true" {
			t.Fatalf("revokeSession = %s", r.Data["revokeSession"])
		}
		wantCode(t, s.post(t, b.AccessToken, meQuery, nil), "UNAUTHENTICATED")
		wantCode(t, s.post(t, b.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
		wantCode(t, s.post(t, a.AccessToken, revokeMutation, map[string]any{"id": b.Session.ID}), "NOT_FOUND")
	})
	t.Run("CurrentSessionToo", func(t *testing.T) {
		wantOK(t, s.post(t, a.AccessToken, revokeMutation, map[string]any{"id": a.Session.ID}))
		wantCode(t, s.post(t, a.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	})
}

func TestRevokeOtherSessions(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signUp(t, "others@example.com")
	b := s.login(t, "others@example.com")
	c := s.login(t, "others@example.com")
	d := s.login(t, "others@example.com")
	wantOK(t, s.post(t, d.AccessToken, logoutMutation, nil))
	other := s.signUp(t, "bystander@example.com")

	r := s.post(t, a.AccessToken, revokeOthersMutaion, nil)
	wantOK(t, r)
	if string(r.Data["revokeOtherSessions"]) != "2" {
		t.Fatalf("revokeOtherSessions = %s, want 2", r.Data["revokeOtherSessions"])
	}
	wantOK(t, s.post(t, a.AccessToken, meQuery, nil))
	wantOK(t, s.post(t, other.AccessToken, meQuery, nil))
	for _, p := range []payload{b, c} {
		wantCode(t, s.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	}
	r = s.post(t, a.AccessToken, revokeOthersMutaion, nil)
	if string(r.Data["revokeOtherSessions"]) != "0" {
		t.Fatalf("second revokeOtherSessions = %s, want 0", r.Data["revokeOtherSessions"])
	}
	wantCode(t, s.post(t, "", revokeOthersMutaion, nil), "UNAUTHENTICATED")
}

func TestChangePassword(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.signUp(t, "pw@example.com")
	b := s.login(t, "pw@example.com")
	const newPassword = "a much better passphrase"

	wantCode(t, s.post(t, a.AccessToken, changePassword, map[string]any{"cur": "not the password", "new": newPassword}), "INVALID_CREDENTIALS")
	wantCode(t, s.post(t, a.AccessToken, changePassword, map[string]any{"cur": testPassword, "new": "short"}), "BAD_USER_INPUT")
	wantCode(t, s.post(t, "", changePassword, map[string]any{"cur": testPassword, "new": newPassword}), "UNAUTHENTICATED")
	// Nothing changed by the failures.
	wantOK(t, s.post(t, b.AccessToken, meQuery, nil))

	r := s.post(t, a.AccessToken, changePassword, map[string]any{"cur": testPassword, "new": newPassword})
	wantOK(t, r)
	wantOK(t, s.post(t, a.AccessToken, meQuery, nil))
	wantCode(t, s.post(t, b.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	wantCode(t, s.post(t, b.refresh(), refreshMutation, nil), "UNAUTHENTICATED")
	wantCode(t, s.post(t, "", loginMutation, map[string]any{"email": "pw@example.com", "password": testPassword}), "INVALID_CREDENTIALS")
	wantOK(t, s.post(t, "", loginMutation, map[string]any{"email": "pw@example.com", "password": newPassword}))
}
