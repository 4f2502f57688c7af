package api

import (
	"strings"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/testkit"
)

const renameMutation = `mutation($id: ID!, $name: String!) {
	renameSession(id: $id, deviceName: $name) { ` + testkit.SessionFields + ` } }`

// rename calls renameSession with token as bearer.
func (s *testServer) rename(t *testing.T, token, id, name string) testkit.Response {
	t.Helper()
	return s.Post(t, token, renameMutation, map[string]any{"id": id, "name": name})
}

// deviceNames returns the device name of each of the caller's live sessions,
// by session id, as mySessions lists them.
func (s *testServer) deviceNames(t *testing.T, token string) map[string]string {
	t.Helper()
	var list []testkit.Session
	s.Post(t, token, testkit.MySessionsQuery, nil).Field(t, "mySessions", &list)
	names := make(map[string]string, len(list))
	for _, sess := range list {
		names[sess.ID] = ""
		if sess.DeviceName != nil {
			names[sess.ID] = *sess.DeviceName
		}
	}
	return names
}

func TestRenameSession(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.SignUp(t, "renamer@example.com")
	b := s.Login(t, "renamer@example.com", testkit.Password)
	mallory := s.SignUp(t, "mallory@example.com")

	t.Run("OwnOtherSession", func(t *testing.T) {
		r := s.rename(t, a.AccessToken, b.Session.ID, "  Work laptop  ")
		testkit.WantOK(t, r)
		var got testkit.Session
		r.Field(t, "renameSession", &got)
		if got.ID != b.Session.ID || got.DeviceName == nil || *got.DeviceName != "Work laptop" || got.Current {
			t.Fatalf("renameSession = %+v, want b's session named %q, not current", got, "Work laptop")
		}
		if !got.CreatedAt.Equal(b.Session.CreatedAt) {
			t.Fatalf("createdAt changed: %v -> %v", b.Session.CreatedAt, got.CreatedAt)
		}
		if name := s.deviceNames(t, b.AccessToken)[b.Session.ID]; name != "Work laptop" {
			t.Fatalf("mySessions shows %q", name)
		}
	})
	t.Run("CurrentSessionIsCurrent", func(t *testing.T) {
		r := s.rename(t, a.AccessToken, a.Session.ID, "Phone")
		testkit.WantOK(t, r)
		var got testkit.Session
		r.Field(t, "renameSession", &got)
		if got.ID != a.Session.ID || !got.Current {
			t.Fatalf("renameSession = %+v, want a's session, current", got)
		}
		if name := s.deviceNames(t, a.AccessToken)[a.Session.ID]; name != "Phone" {
			t.Fatalf("mySessions shows %q", name)
		}
	})
	t.Run("HundredMultiByteCharacters", func(t *testing.T) {
		name := strings.Repeat("é", 50) + strings.Repeat("🔑", 50)
		r := s.rename(t, a.AccessToken, b.Session.ID, name)
		testkit.WantOK(t, r)
		if got := s.deviceNames(t, a.AccessToken)[b.Session.ID]; got != name {
			t.Fatalf("mySessions shows %q, want %q", got, name)
		}
	})
	t.Run("BadNames", func(t *testing.T) {
		for _, name := range []string{strings.Repeat("x", 101), strings.Repeat("é", 101), "", "   \t "} {
			testkit.WantCode(t, s.rename(t, a.AccessToken, a.Session.ID, name), "BAD_USER_INPUT")
		}
		if got := s.deviceNames(t, a.AccessToken)[a.Session.ID]; got != "Phone" {
			t.Fatalf("a refused rename changed the name to %q", got)
		}
	})
	t.Run("AnotherUsersSessionIsNotFound", func(t *testing.T) {
		testkit.WantCode(t, s.rename(t, mallory.AccessToken, a.Session.ID, "pwned"), "NOT_FOUND")
		if got := s.deviceNames(t, a.AccessToken)[a.Session.ID]; got != "Phone" {
			t.Fatalf("another user renamed the session to %q", got)
		}
	})
	t.Run("MalformedIDIsNotFound", func(t *testing.T) {
		for _, id := range []string{
			"'; DROP TABLE sessions; --",
			"",
			"00000000-0000-0000-0000-000000000000",
			"urn:uuid:00000000-0000-0000-0000-000000000000", // valid to uuid.Validate, refused by PostgreSQL
			a.Session.ID + "0",
		} {
			testkit.WantCode(t, s.rename(t, a.AccessToken, id, "x"), "NOT_FOUND")
		}
	})
	t.Run("RevokedSessionIsNotFound", func(t *testing.T) {
		c := s.Login(t, "renamer@example.com", testkit.Password)
		testkit.WantOK(t, s.Post(t, c.AccessToken, testkit.LogoutMutation, nil))
		testkit.WantCode(t, s.rename(t, a.AccessToken, c.Session.ID, "ghost"), "NOT_FOUND")
	})
	t.Run("ExpiredSessionIsNotFound", func(t *testing.T) {
		d := s.Login(t, "renamer@example.com", testkit.Password)
		s.backdate(t, "refresh_expires_at", d.Session.ID, time.Second)
		testkit.WantCode(t, s.rename(t, a.AccessToken, d.Session.ID, "ghost"), "NOT_FOUND")
	})
	t.Run("NeedsAccessToken", func(t *testing.T) {
		testkit.WantCode(t, s.rename(t, "", a.Session.ID, "anon"), "UNAUTHENTICATED")
		testkit.WantCode(t, s.rename(t, a.Refresh(), a.Session.ID, "anon"), "UNAUTHENTICATED")
		if got := s.deviceNames(t, a.AccessToken)[a.Session.ID]; got != "Phone" {
			t.Fatalf("an unauthenticated rename changed the name to %q", got)
		}
	})
	t.Run("ExpiredAccessToken", func(t *testing.T) {
		e := s.Login(t, "renamer@example.com", testkit.Password)
		s.backdate(t, "access_expires_at", e.Session.ID, time.Second)
		testkit.WantCode(t, s.rename(t, e.AccessToken, e.Session.ID, "late"), "TOKEN_EXPIRED")
	})
}
