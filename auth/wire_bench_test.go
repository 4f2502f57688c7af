package auth

import (
	"context"
	"testing"
	"time"

	"github.com/example/sessionauth/models"
)

// BenchmarkLoginWrongPassword is a whole failed login, as an attacker
// probing for registered emails times it: for a registered email it counts
// the failure and records SIGN_IN_FAILED in one transaction; for an unknown
// one it runs the same statements, which write no event. The account's
// events are deleted between iterations (untimed) so that the cap never
// turns the registered case into the unknown one.
func BenchmarkLoginWrongPassword(b *testing.B) {
	cfg := testConfig
	cfg.Throttle = ThrottleConfig{MaxFailures: 1 << 30, MaxFailuresPerIP: 1 << 30, Window: 15 * time.Minute}
	s := newTestService(b, cfg)
	user := signUp(b, s, "registered@example.com").User
	ctx := context.Background()
	for _, c := range []struct{ name, email string }{{"Registered", "registered@example.com"}, {"Unknown", "unknown@example.com"}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				if _, err := s.db.NewDelete().Model((*models.SecurityEvent)(nil)).Where("user_id = ?", user.ID).Exec(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				_, err := s.Login(ctx, Credentials{Email: c.email, Password: "not the password"})
				if ErrorCode(err) != CodeInvalidCredentials {
					b.Fatalf("login: %v", err)
				}
			}
		})
	}
}
