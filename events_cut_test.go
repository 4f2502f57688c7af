package main

import (
	"context"
	"testing"

	"github.com/example/sessionauth/internal/testkit"
)

// TestEventsUnderCuts cuts the database conversation of changes at every
// point: a session ended has its event and a session not ended has none,
// whatever the cut, so an event and its change commit together or not at
// all.
func TestEventsUnderCuts(t *testing.T) {
	t.Parallel()
	viaProxy, direct, proxy := testkit.ProxiedDatabase(t)
	prog := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": viaProxy})
	c := prog.WithPatience()
	db := testkit.OpenDirect(t, direct)
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
		c.SignUp(t, "cut-logout@example.com")
		var s testkit.Payload
		cutSweep(t, proxy, db, 24, func(int) {
			s = c.Login(t, "cut-logout@example.com", testkit.Password)
		}, func(int) (testkit.Response, error) {
			return c.Call(s.AccessToken, testkit.LogoutMutation, nil)
		}, func(n int, r testkit.Response) bool {
			return ended(t, n, s.Session.ID, "SIGNED_OUT")
		})
	})
	t.Run("RevokeSession", func(t *testing.T) {
		owner := c.SignUp(t, "cut-revoke@example.com")
		var s testkit.Payload
		cutSweep(t, proxy, db, 24, func(int) {
			s = c.Login(t, "cut-revoke@example.com", testkit.Password)
		}, func(int) (testkit.Response, error) {
			return c.Call(owner.AccessToken, testkit.RevokeMutation, map[string]any{"id": s.Session.ID})
		}, func(n int, r testkit.Response) bool {
			return ended(t, n, s.Session.ID, "SESSION_REVOKED")
		})
	})
	t.Run("Login", func(t *testing.T) {
		owner := c.SignUp(t, "cut-login@example.com")
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
		cutSweep(t, proxy, db, 24, func(n int) { before = count(n) }, func(int) (testkit.Response, error) {
			return c.Call("", testkit.LoginMutation, map[string]any{"email": "cut-login@example.com", "password": testkit.Password})
		}, func(n int, r testkit.Response) bool {
			return count(n) == before+1
		})
	})
}
