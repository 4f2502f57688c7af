package auth

import (
	"testing"
	"time"
)

// TestLogoutWithAnyTokenThatWouldRefresh: a client that lost a refresh
// response still holds the token it sent, which refresh would still accept
// (its successor unused, or within the reuse window); logout with it must
// end the session, and nothing of the session may work afterwards. A
// superseded token past that is a replay for logout as for refresh.
func TestLogoutWithAnyTokenThatWouldRefresh(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	base := newTestService(t, testConfig)
	user := signUp(t, base, "ann@example.com").User
	windowed := testConfig
	windowed.ReuseWindow = time.Hour
	inWindow := withConfig(base, windowed)

	// ended asserts that nothing of the session works any more.
	ended := func(t *testing.T, s *Service, tokens ...*Issued) {
		t.Helper()
		for _, iss := range tokens {
			_, err := s.authenticateAccess(ctx, iss.AccessToken)
			wantCode(t, "an access token of the logged-out session", err, CodeUnauthenticated)
			_, err = s.Refresh(ctx, iss.RefreshToken)
			wantCode(t, "a refresh token of the logged-out session", err, CodeUnauthenticated)
		}
		if sess := loadSession(t, s, tokens[0].Session.ID); sess.RevokedAt == nil {
			t.Fatal("the session is not revoked")
		}
	}

	t.Run("PreviousTokenBeforeSuccessorUsed", func(t *testing.T) {
		s := base // no reuse window: only the unused successor makes it retriable
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken) // the response is lost
		if err := s.Logout(ctx, old.RefreshToken); err != nil {
			t.Fatalf("Logout(previous refresh token): %v (code %s)", err, ErrorCode(err))
		}
		ended(t, s, old, next)
		wantCode(t, "a second logout", s.Logout(ctx, old.RefreshToken), CodeUnauthenticated)
	})
	t.Run("PreviousTokenWithinWindowAfterSuccessorUsed", func(t *testing.T) {
		s := inWindow
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		authenticate(t, s, next.AccessToken)
		if err := s.Logout(ctx, old.RefreshToken); err != nil {
			t.Fatalf("Logout(previous refresh token): %v (code %s)", err, ErrorCode(err))
		}
		ended(t, s, old, next)
	})
	t.Run("RetiredTokenWithinWindow", func(t *testing.T) {
		s := inWindow
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		third := refresh(t, s, next.RefreshToken) // old is retired now
		if again := refresh(t, s, old.RefreshToken); !samePair(again, next) {
			t.Fatal("a retry of the retired token within the window did not get its successor")
		}
		if err := s.Logout(ctx, old.RefreshToken); err != nil {
			t.Fatalf("Logout(retired refresh token): %v (code %s)", err, ErrorCode(err))
		}
		ended(t, s, old, next, third)
	})
	t.Run("ReplayedPreviousTokenRevokes", func(t *testing.T) {
		s := base
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		authenticate(t, s, next.AccessToken) // no retry may come any more
		wantCode(t, "Logout(replayed refresh token)", s.Logout(ctx, old.RefreshToken), CodeRefreshTokenReused)
		ended(t, s, old, next)
	})
	t.Run("ReplayedRetiredTokenRevokes", func(t *testing.T) {
		s := inWindow
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		third := refresh(t, s, next.RefreshToken)
		ageRotations(t, s, old.Session.ID, 2*windowed.ReuseWindow)
		wantCode(t, "Logout(replayed retired token)", s.Logout(ctx, old.RefreshToken), CodeRefreshTokenReused)
		ended(t, s, old, next, third)
	})
	t.Run("PreviousTokenOfExpiredSession", func(t *testing.T) {
		s := base
		old := newSession(t, s, user)
		refresh(t, s, old.RefreshToken)
		expire(t, s, old.Session.ID, "access_expires_at", "refresh_expires_at")
		wantCode(t, "Logout(previous token, session expired)", s.Logout(ctx, old.RefreshToken), CodeTokenExpired)
	})
	t.Run("PreviousAccessTokenIsRefused", func(t *testing.T) {
		// The old access token died with the rotation, and no retry
		// brings it back: it logs nothing out.
		s := inWindow
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		wantCode(t, "Logout(previous access token)", s.Logout(ctx, old.AccessToken), CodeUnauthenticated)
		authenticate(t, s, next.AccessToken)
	})
}
