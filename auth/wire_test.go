package auth

import (
	"context"
	"testing"

	"github.com/example/sessionauth/models"
)

// signUpQuiet signs up like signUp and then forgets the sign-up's own
// events (SIGNED_UP and its outbox rows), for tests of the event machinery
// that count every event they record themselves.
func signUpQuiet(tb testing.TB, s *Service, email string) *Issued {
	tb.Helper()
	iss := signUp(tb, s, email)
	ctx := context.Background()
	for _, m := range []any{(*models.SecurityEventOutbox)(nil), (*models.SecurityEvent)(nil)} {
		if _, err := s.db.NewDelete().Model(m).Where("user_id = ?", iss.User.ID).Exec(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	return iss
}
