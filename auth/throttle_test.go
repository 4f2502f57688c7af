package auth

import (
	"context"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

func TestAddressBucket(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"IPv4", "192.0.2.1", "192.0.2.1"},
		{"IPv4Mapped", "::ffff:192.0.2.1", "192.0.2.1"},
		{"IPv6", "2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"IPv6SameSlash64", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"IPv6OtherSlash64", "2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"IPv6Zone", "fe80::1%eth0", "fe80::/64"},
		{"Loopback", "::1", "::/64"},
		{"NotAnAddress", "pipe", "pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := addressBucket(tt.in); got != tt.want {
				t.Fatalf("addressBucket(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestSignInRefusesAStaleHash is the login-versus-changePassword race made
// deterministic: a login that verified the password against the hash it
// read before a change completed may not create a session after it.
func TestSignInRefusesAStaleHash(t *testing.T) {
	t.Parallel()
	s := newTestService(t, testConfig)
	ctx := context.Background()
	iss := signUp(t, s, "stale@example.com")
	stale := *iss.User // what a racing login read and verified against
	who := authenticate(t, s, iss.AccessToken)
	if err := s.ChangePassword(ctx, who, "orchid lantern 7", "another password 9"); err != nil {
		t.Fatal(err)
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := s.signIn(ctx, tx, &stale, nil, nil, EventSignedIn)
		return err
	})
	wantCode(t, "signIn with the old hash", err, CodeInvalidCredentials)
	n, err := s.db.NewSelect().Model((*models.Session)(nil)).Where("revoked_at IS NULL").Count(ctx)
	if err != nil || n != 1 {
		t.Fatalf("%d live sessions (%v), want only the changer's", n, err)
	}
}

func throttleRow(t *testing.T, s *Service, key string) models.LoginThrottle {
	t.Helper()
	var row models.LoginThrottle
	if err := s.db.NewSelect().Model(&row).Where("key = ?", key).Scan(context.Background()); err != nil {
		t.Fatalf("counter %s: %v", key, err)
	}
	return row
}

// TestSettlingActsOnItsOwnWindow: a place taken in a window that has since
// closed (and reopened for others) settles nothing in the new one.
func TestSettlingActsOnItsOwnWindow(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.Throttle = ThrottleConfig{MaxFailures: 3, Window: time.Hour}
	s := newTestService(t, cfg)
	ctx := context.Background()
	limits := s.loginLimits("win@example.com", "")
	old, err := s.reserve(ctx, limits, errLoginLimited)
	if err != nil {
		t.Fatal(err)
	}
	then, arg := s.dialect.NowMinus(2 * time.Hour)
	if _, err := s.db.NewUpdate().Model((*models.LoginThrottle)(nil)).Set("window_start = "+then, arg).Where("true").Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.reserve(ctx, limits, errLoginLimited); err != nil {
		t.Fatal(err)
	}
	s.fail(ctx, old)
	if row := throttleRow(t, s, emailThrottleKey("win@example.com")); row.Failures != 0 || row.Pending != 1 {
		t.Fatalf("after settling an old place: %+v, want the new window untouched", row)
	}
}

// TestReserveWaitsOnlyForAttemptsInFlight: a key full of attempts in flight
// makes the next wait, and answer RATE_LIMITED with retryAfterSeconds 1 if
// they never settle; a key full of failures answers at once with the time
// left in its window.
func TestReserveWaitsOnlyForAttemptsInFlight(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.Throttle = ThrottleConfig{MaxFailures: 1, Window: time.Hour}
	s := newTestService(t, cfg)
	limits := s.loginLimits("busy@example.com", "")
	held, err := s.reserve(context.Background(), limits, errLoginLimited)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pendingMargin+300*time.Millisecond)
	defer cancel()
	_, err = s.reserve(ctx, limits, errLoginLimited)
	wantCode(t, "reserve while one is in flight", err, CodeRateLimited)
	if e := err.(*Error); e.RetryAfter != 1 {
		t.Fatalf("retryAfter = %d, want 1", e.RetryAfter)
	}

	released := make(chan error, 1)
	go func() {
		r, err := s.reserve(context.Background(), limits, errLoginLimited)
		s.release(context.Background(), r)
		released <- err
	}()
	time.Sleep(50 * time.Millisecond)
	s.release(context.Background(), held)
	if err := <-released; err != nil {
		t.Fatalf("the waiting attempt got %v after the one in flight settled", err)
	}

	held, _ = s.reserve(context.Background(), limits, errLoginLimited)
	s.fail(context.Background(), held)
	_, err = s.reserve(context.Background(), limits, errLoginLimited)
	wantCode(t, "reserve after a failure", err, CodeRateLimited)
	if e := err.(*Error); e.RetryAfter < 3500 || e.RetryAfter > 3600 {
		t.Fatalf("retryAfter = %d, want about an hour", e.RetryAfter)
	}
}

// TestHousekeepingKeepsSignUpCountersForTheirWindow: sign-up counters live
// for SignUpWindow, login counters for the login window.
func TestHousekeepingKeepsSignUpCountersForTheirWindow(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.Throttle = ThrottleConfig{MaxFailures: 5, MaxFailuresPerIP: 5, Window: time.Minute, MaxSignUpsPerIP: 5, SignUpWindow: time.Hour}
	s := newTestService(t, cfg)
	ctx := context.Background()
	for _, l := range [][]limit{s.loginLimits("kept@example.com", "192.0.2.1"), s.signUpLimits("192.0.2.1")} {
		r, err := s.reserve(ctx, l, errLoginLimited)
		if err != nil {
			t.Fatal(err)
		}
		s.fail(ctx, r)
	}
	then, arg := s.dialect.NowMinus(10 * time.Minute)
	for _, table := range []string{loginThrottle, signUpThrottle} {
		if _, err := s.db.NewUpdate().Table(table).Set("window_start = "+then, arg).Where("true").Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Housekeep(ctx); err != nil {
		t.Fatal(err)
	}
	for table, want := range map[string]int64{loginThrottle: 0, signUpThrottle: 1} {
		n, err := s.db.NewSelect().Table(table).Count(ctx)
		if err != nil || n != want {
			t.Fatalf("%s: %d counters left (%v), want %d", table, n, err, want)
		}
	}
}

// TestDeviceProofsPerUserAreCapped: a client that never presents its proof
// gets a new one at each login; the user keeps only the newest.
func TestDeviceProofsPerUserAreCapped(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.Throttle = ThrottleConfig{DeviceTokenTTL: time.Hour}
	s := newTestService(t, cfg)
	ctx := context.Background()
	iss := signUp(t, s, "many@example.com")
	other := signUp(t, s, "other@example.com")
	var last string
	for range maxDeviceProofs + 5 {
		err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			var err error
			last, err = s.issueDevice(ctx, tx, iss.User.ID, nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	count := func(userID string) int64 {
		n, err := s.db.NewSelect().Model((*models.DeviceToken)(nil)).Where("user_id = ?", userID).Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(iss.User.ID); n != maxDeviceProofs {
		t.Fatalf("%d device proofs kept, want %d", n, maxDeviceProofs)
	}
	if n := count(other.User.ID); n != 1 {
		t.Fatalf("another user's proofs went too: %d left", n)
	}
	if r, err := s.reserveDevice(ctx, last, iss.User.ID); err != nil || r == nil {
		t.Fatalf("the newest proof is not live: %v", err)
	}
}

// BenchmarkLoginRefused is the cheapest answer an attacker can make the
// server give over and over: a login for an account whose limit is
// exhausted, refused before any hashing.
func BenchmarkLoginRefused(b *testing.B) {
	cfg := testConfig
	cfg.Throttle = ThrottleConfig{MaxFailures: 1, MaxFailuresPerIP: 100, Window: time.Hour}
	s := newTestService(b, cfg)
	ctx := context.Background()
	c := Credentials{Email: "locked@example.com", Password: "wrong password"}
	if _, err := s.Login(ctx, c); ErrorCode(err) != CodeInvalidCredentials {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Login(ctx, c); ErrorCode(err) != CodeRateLimited {
			b.Fatal(err)
		}
	}
}

// BenchmarkReserveRelease is the database work the throttle adds to a
// login with the right password: a place on the email and the address
// before the hash, given back after.
func BenchmarkReserveRelease(b *testing.B) {
	cfg := testConfig
	cfg.Throttle = ThrottleConfig{MaxFailures: 5, MaxFailuresPerIP: 100, Window: time.Hour}
	s := newTestService(b, cfg)
	ctx := context.Background()
	limits := s.loginLimits("bench@example.com", "192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		r, err := s.reserve(ctx, limits, errLoginLimited)
		if err != nil {
			b.Fatal(err)
		}
		s.release(ctx, r)
	}
}

// TestSettlingCountsEveryKey: one attempt's places on the email and the
// address are settled together, as failures or given back.
func TestSettlingCountsEveryKey(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.Throttle = ThrottleConfig{MaxFailures: 5, MaxFailuresPerIP: 5, Window: time.Hour}
	s := newTestService(t, cfg)
	ctx := context.Background()
	limits := s.loginLimits("both@example.com", "2001:db8::7")
	for _, failed := range []bool{true, false, true} {
		r, err := s.reserve(ctx, limits, errLoginLimited)
		if err != nil {
			t.Fatal(err)
		}
		s.settle(ctx, r, failed, nil)
	}
	for _, key := range []string{emailThrottleKey("both@example.com"), ipThrottleKey("2001:db8::/64")} {
		if row := throttleRow(t, s, key); row.Failures != 2 || row.Pending != 0 {
			t.Fatalf("%s: %+v, want 2 failures and nothing in flight", key, row)
		}
	}
}
