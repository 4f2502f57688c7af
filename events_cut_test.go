package main

import (
	"context"
	"testing"
)

// TestEventsUnderCuts cuts the database conversation of changes at every
// point: a session ended has its event and a session not ended has none,
// whatever the cut, so an event and its change commit together or not at
// all.
func TestEventsUnderCuts(t *testing.T) {
	t.Parallel()
	viaProxy, direct, proxy := proxiedDatabase(t)
	prog := startProgram(t, map[string]string{"DATABASE_URL": viaProxy})
	c := newAPIClient(t, prog.base)
	db := openDirect(t, direct)
	ctx := context.Background()

	// ended reports whether the session is revoked, and fails unless it
	// has exactly as many events of kind as that (1 or 0).
	ended := func(t *testing.T, n int, sessionID, kind string) bool {
		t.Helper()
		var revoked bool
		if err := db.NewRaw("SELECT revoked_at IS NOT NULL FROM sessions WHERE id = ?", sessionID).Scan(ctx, &revoked); err != nil {
			t.Fatal(err)
		}
		var events int
		if err := db.NewRaw("SELECT count(*) FROM security_events WHERE session_id = ? AND kind = ?", sessionID, kind).Scan(ctx, &events); err != nil {
			t.Fatal(err)
		}
		if revoked != (events == 1) || events > 1 {
			t.Fatalf("cut after %d: session revoked %v with %d %s events", n, revoked, events, kind)
		}
		return revoked
	}

	t.Run("Logout", func(t *testing.T) {
		c.signUp(t, "cut-logout@example.com")
		var s payload
		cutSweep(t, proxy, db, 24, func(int) {
			s = c.login(t, "cut-logout@example.com", testPassword)
		}, func(int) (gqlResponse, error) {
			return c.call(s.AccessToken, logoutMutation, nil)
		}, func(n int, r gqlResponse) bool {
			return ended(t, n, s.Session.ID, "SIGNED_OUT")
		})
	})
	t.Run("RevokeSession", func(t *testing.T) {
		owner := c.signUp(t, "cut-revoke@example.com")
		var s payload
		cutSweep(t, proxy, db, 24, func(int) {
			s = c.login(t, "cut-revoke@example.com", testPassword)
		}, func(int) (gqlResponse, error) {
			return c.call(owner.AccessToken, revokeMutation, map[string]any{"id": s.Session.ID})
		}, func(n int, r gqlResponse) bool {
			return ended(t, n, s.Session.ID, "SESSION_REVOKED")
		})
	})
	t.Run("Login", func(t *testing.T) {
		owner := c.signUp(t, "cut-login@example.com")
		count := func(n int) int {
			var sessions, events int
			err := db.NewRaw(`SELECT (SELECT count(*) FROM sessions WHERE user_id = ?),
				(SELECT count(*) FROM security_events WHERE user_id = ? AND kind IN ('SIGNED_UP', 'SIGNED_IN'))`,
				owner.User.ID, owner.User.ID).Scan(ctx, &sessions, &events)
			if err != nil {
				t.Fatal(err)
			}
			if sessions != events {
				t.Fatalf("cut after %d: %d sessions, %d sign-in events", n, sessions, events)
			}
			return sessions
		}
		var before int
		cutSweep(t, proxy, db, 24, func(n int) { before = count(n) }, func(int) (gqlResponse, error) {
			return c.call("", loginMutation, map[string]any{"email": "cut-login@example.com", "password": testPassword})
		}, func(n int, r gqlResponse) bool {
			return count(n) == before+1
		})
	})
}
