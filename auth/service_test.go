package auth

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/models"
)

// testConfig is the policy of the service tests: short but not racy TTLs, no
// reuse window (so a used successor makes the predecessor a replay at once).
var testConfig = Config{AccessTTL: time.Minute, RefreshTTL: time.Hour, ReuseWindow: 0, AllowSignUp: true}

// newTestService returns a Service over a fresh, migrated database of its own.
func newTestService(tb testing.TB, cfg Config) *Service {
	tb.Helper()
	db := pgtest.Open(pgtest.New(tb))
	tb.Cleanup(func() { db.Close() })
	return NewService(db, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// newTestServiceOn returns another instance over the database at url, with
// a pool of its own; h, when not nil, saves computing another dummy hash.
func newTestServiceOn(tb testing.TB, url string, h *hasher) *Service {
	tb.Helper()
	db := pgtest.Open(url)
	tb.Cleanup(func() { db.Close() })
	if h == nil {
		h = newHasher()
	}
	return &Service{db: db, dialect: database.DialectOf(db), cfg: testConfig, hasher: h, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// withConfig returns a Service over the same database and hasher as s, with
// another policy (and without paying for another dummy hash).
func withConfig(s *Service, cfg Config) *Service {
	return &Service{db: s.db, dialect: s.dialect, cfg: cfg, hasher: s.hasher, log: s.log}
}

func signUp(tb testing.TB, s *Service, email string) *Issued {
	tb.Helper()
	iss, err := s.SignUp(context.Background(), Credentials{Email: email, Password: "orchid lantern 7"})
	if err != nil {
		tb.Fatalf("SignUp(%q): %v", email, err)
	}
	return iss
}

// newSession signs user in once more without any password hashing, for
// tests that need many sessions.
func newSession(tb testing.TB, s *Service, user *models.User) *Issued {
	tb.Helper()
	iss, err := s.createSession(context.Background(), s.db, user, nil)
	if err != nil {
		tb.Fatalf("createSession: %v", err)
	}
	return iss
}

func refresh(tb testing.TB, s *Service, token string) *Issued {
	tb.Helper()
	iss, err := s.Refresh(context.Background(), token)
	if err != nil {
		tb.Fatalf("Refresh: %v (code %s)", err, ErrorCode(err))
	}
	return iss
}

func authenticate(tb testing.TB, s *Service, token string) *Identity {
	tb.Helper()
	id, err := s.authenticateAccess(context.Background(), token)
	if err != nil {
		tb.Fatalf("authenticateAccess: %v (code %s)", err, ErrorCode(err))
	}
	return id
}

func loadSession(tb testing.TB, s *Service, id string) *models.Session {
	tb.Helper()
	sess := new(models.Session)
	if err := s.db.NewSelect().Model(sess).Where("id = ?", id).Scan(context.Background()); err != nil {
		tb.Fatalf("loading session %s: %v", id, err)
	}
	return sess
}

// expire moves the given expiry columns of a session into the past, by the
// database's clock: the service reads that clock, so no sleeping is needed.
func expire(tb testing.TB, s *Service, id string, columns ...string) {
	tb.Helper()
	q := s.db.NewUpdate().Model((*models.Session)(nil)).Where("id = ?", id)
	then, arg := s.dialect.NowMinus(time.Second)
	for _, c := range columns {
		q = q.Set(c+" = "+then, arg)
	}
	if _, err := q.Exec(context.Background()); err != nil {
		tb.Fatalf("expiring %v of session %s: %v", columns, id, err)
	}
}

func wantCode(tb testing.TB, what string, err error, code string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("%s: no error, want %s", what, code)
	}
	if got := ErrorCode(err); got != code {
		tb.Fatalf("%s: code %s (%v), want %s", what, got, err, code)
	}
}

func samePair(a, b *Issued) bool {
	return a.AccessToken == b.AccessToken && a.RefreshToken == b.RefreshToken &&
		a.Session.ID == b.Session.ID &&
		a.Session.AccessExpiresAt.Equal(b.Session.AccessExpiresAt) &&
		a.Session.RefreshExpiresAt.Equal(b.Session.RefreshExpiresAt)
}

func TestCheckDeviceName(t *testing.T) {
	ptr := func(s string) *string { return &s }
	tests := []struct {
		name string
		in   *string
		want *string // nil: no device name
		ok   bool
	}{
		{"Absent", nil, nil, true},
		{"Empty", ptr(""), nil, true},
		{"OnlySpaces", ptr("   "), nil, true},
		{"Trimmed", ptr("  Ann's phone \t"), ptr("Ann's phone"), true},
		{"100ASCII", ptr(strings.Repeat("x", 100)), ptr(strings.Repeat("x", 100)), true},
		{"101ASCII", ptr(strings.Repeat("x", 101)), nil, false},
		{"100TwoByteRunes", ptr(strings.Repeat("é", 100)), ptr(strings.Repeat("é", 100)), true},
		{"101TwoByteRunes", ptr(strings.Repeat("é", 101)), nil, false},
		{"100FourByteRunes", ptr(strings.Repeat("📱", 100)), ptr(strings.Repeat("📱", 100)), true},
		{"101FourByteRunes", ptr(strings.Repeat("📱", 101)), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkDeviceName(tt.in)
			if !tt.ok {
				wantCode(t, "checkDeviceName", err, CodeBadUserInput)
				return
			}
			if err != nil {
				t.Fatalf("checkDeviceName: %v", err)
			}
			switch {
			case tt.want == nil && got != nil:
				t.Fatalf("checkDeviceName = %q, want nil", *got)
			case tt.want != nil && (got == nil || *got != *tt.want):
				t.Fatalf("checkDeviceName = %v, want %q", got, *tt.want)
			}
		})
	}
}

func TestSignUp(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestService(t, testConfig)
	device := "  Laptop "
	iss, err := s.SignUp(ctx, Credentials{Email: " Ann@Example.com ", Password: "orchid lantern 7", DeviceName: &device})
	if err != nil {
		t.Fatalf("SignUp: %v", err)
	}

	t.Run("IssuesTwoDistinctTokens", func(t *testing.T) {
		if !wellFormed(iss.AccessToken) || !wellFormed(iss.RefreshToken) {
			t.Fatal("SignUp issued a token that is not well formed")
		}
		if iss.AccessToken == iss.RefreshToken {
			t.Fatal("access and refresh tokens are equal")
		}
	})
	t.Run("RecordsUserAndSession", func(t *testing.T) {
		if iss.User.Email != "Ann@Example.com" || iss.User.EmailKey != "ann@example.com" {
			t.Fatalf("user email = %q key %q, want trimmed as typed and lower-cased", iss.User.Email, iss.User.EmailKey)
		}
		if iss.Session.UserID != iss.User.ID {
			t.Fatalf("session.UserID = %s, want %s", iss.Session.UserID, iss.User.ID)
		}
		if iss.Session.DeviceName == nil || *iss.Session.DeviceName != "Laptop" {
			t.Fatalf("device name = %v, want trimmed \"Laptop\"", iss.Session.DeviceName)
		}
	})
	t.Run("ExpiriesFromTheDatabaseClock", func(t *testing.T) {
		sess := iss.Session
		if got := sess.AccessExpiresAt.Sub(sess.CreatedAt); got != testConfig.AccessTTL {
			t.Fatalf("access expiry - createdAt = %v, want %v", got, testConfig.AccessTTL)
		}
		if got := sess.RefreshExpiresAt.Sub(sess.CreatedAt); got != testConfig.RefreshTTL {
			t.Fatalf("refresh expiry - createdAt = %v, want %v", got, testConfig.RefreshTTL)
		}
		if !iss.Now.Equal(sess.CreatedAt) || !sess.LastUsedAt.Equal(sess.CreatedAt) {
			t.Fatalf("now %v, createdAt %v, lastUsedAt %v: want one instant", iss.Now, sess.CreatedAt, sess.LastUsedAt)
		}
	})
	t.Run("StoresOnlyHashes", func(t *testing.T) {
		stored := loadSession(t, s, iss.Session.ID)
		if !bytes.Equal(stored.AccessHash, hashToken(iss.AccessToken)) || !bytes.Equal(stored.RefreshHash, hashToken(iss.RefreshToken)) {
			t.Fatal("the stored hashes are not SHA-256 of the issued tokens")
		}
		user := new(models.User)
		if err := s.db.NewSelect().Model(user).Where("id = ?", iss.User.ID).Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(user.PasswordHash, "$argon2id$") || strings.Contains(user.PasswordHash, "orchid lantern 7") {
			t.Fatalf("stored password hash %q is not an argon2id hash", user.PasswordHash)
		}
	})
	t.Run("EmailTakenCaseInsensitively", func(t *testing.T) {
		_, err := s.SignUp(ctx, Credentials{Email: "ANN@example.COM", Password: "another-password"})
		wantCode(t, "SignUp with a registered email", err, CodeEmailTaken)
	})
	t.Run("BadUserInput", func(t *testing.T) {
		long := strings.Repeat("x", 101)
		for _, c := range []Credentials{
			{Email: "not-an-email", Password: "orchid lantern 7"},
			{Email: "Bob <bob@example.com>", Password: "orchid lantern 7"},
			{Email: "bob@example.com", Password: "short"},
			{Email: "bob@example.com", Password: strings.Repeat("p", 129)},
			{Email: "bob@example.com", Password: "orchid lantern 7", DeviceName: &long},
		} {
			_, err := s.SignUp(ctx, c)
			wantCode(t, "SignUp("+c.Email+")", err, CodeBadUserInput)
		}
	})
	t.Run("ForbiddenWhenDisabled", func(t *testing.T) {
		cfg := testConfig
		cfg.AllowSignUp = false
		_, err := withConfig(s, cfg).SignUp(ctx, Credentials{Email: "bob@example.com", Password: "orchid lantern 7"})
		wantCode(t, "SignUp while disabled", err, CodeForbidden)
	})
}

func TestLogin(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestService(t, testConfig)
	first := signUp(t, s, "ann@example.com")

	t.Run("OpensAnotherSession", func(t *testing.T) {
		iss, err := s.Login(ctx, Credentials{Email: "  ANN@Example.com", Password: "orchid lantern 7"})
		if err != nil {
			t.Fatalf("Login: %v", err)
		}
		if iss.User.ID != first.User.ID {
			t.Fatalf("Login user = %s, want %s", iss.User.ID, first.User.ID)
		}
		if iss.Session.ID == first.Session.ID || iss.AccessToken == first.AccessToken || iss.RefreshToken == first.RefreshToken {
			t.Fatal("Login reused the first session or its tokens")
		}
		// Both devices stay signed in.
		authenticate(t, s, first.AccessToken)
		authenticate(t, s, iss.AccessToken)
	})
	t.Run("WrongPassword", func(t *testing.T) {
		_, err := s.Login(ctx, Credentials{Email: "ann@example.com", Password: "password124"})
		wantCode(t, "Login with a wrong password", err, CodeInvalidCredentials)
	})
	t.Run("UnknownEmailLooksTheSame", func(t *testing.T) {
		_, known := s.Login(ctx, Credentials{Email: "ann@example.com", Password: "password124"})
		_, unknown := s.Login(ctx, Credentials{Email: "nobody@example.com", Password: "password124"})
		wantCode(t, "Login with an unknown email", unknown, CodeInvalidCredentials)
		if known.Error() != unknown.Error() {
			t.Fatal("wrong password and unknown email answer with different messages")
		}
	})
	t.Run("TooShortPasswordIsJustWrong", func(t *testing.T) {
		_, err := s.Login(ctx, Credentials{Email: "ann@example.com", Password: "pw"})
		wantCode(t, "Login with a 2-character password", err, CodeInvalidCredentials)
	})
	t.Run("BadUserInput", func(t *testing.T) {
		long := strings.Repeat("x", 101)
		for _, c := range []Credentials{
			{Email: "ann", Password: "orchid lantern 7"},
			{Email: "ann@example.com", Password: strings.Repeat("p", 129)},
			{Email: "ann@example.com", Password: "orchid lantern 7", DeviceName: &long},
		} {
			_, err := s.Login(ctx, c)
			wantCode(t, "Login("+c.Email+")", err, CodeBadUserInput)
		}
	})
}

func TestAuthenticateAccess(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestService(t, testConfig)
	iss := signUp(t, s, "ann@example.com")

	t.Run("AccessTokenIdentifiesSessionAndUser", func(t *testing.T) {
		id := authenticate(t, s, iss.AccessToken)
		if id.Session.ID != iss.Session.ID || id.User == nil || id.User.ID != iss.User.ID || id.User.Email != "ann@example.com" {
			t.Fatalf("identity = session %s user %+v; want session %s user %s", id.Session.ID, id.User, iss.Session.ID, iss.User.ID)
		}
		if id.Now.Before(iss.Now) {
			t.Fatalf("identity.Now %v is before sign-up's %v", id.Now, iss.Now)
		}
	})
	t.Run("RefreshTokenIsNotAccess", func(t *testing.T) {
		_, err := s.authenticateAccess(ctx, iss.RefreshToken)
		wantCode(t, "authenticateAccess(refresh token)", err, CodeUnauthenticated)
	})
	t.Run("UnknownOrMalformedToken", func(t *testing.T) {
		for _, tok := range []string{newToken(), "", "short", iss.AccessToken + "x"} {
			_, err := s.authenticateAccess(ctx, tok)
			wantCode(t, "authenticateAccess(unknown)", err, CodeUnauthenticated)
		}
	})
	t.Run("ExpiredAccessToken", func(t *testing.T) {
		other := newSession(t, s, iss.User)
		expire(t, s, other.Session.ID, "access_expires_at")
		_, err := s.authenticateAccess(ctx, other.AccessToken)
		wantCode(t, "authenticateAccess(expired)", err, CodeTokenExpired)
	})
	t.Run("LoggedOutSession", func(t *testing.T) {
		other := newSession(t, s, iss.User)
		if err := s.Logout(ctx, other.AccessToken); err != nil {
			t.Fatalf("Logout: %v", err)
		}
		_, err := s.authenticateAccess(ctx, other.AccessToken)
		wantCode(t, "authenticateAccess(after logout)", err, CodeUnauthenticated)
	})
	t.Run("FirstUseMarksRotatedPairUsed", func(t *testing.T) {
		other := newSession(t, s, iss.User)
		next := refresh(t, s, other.RefreshToken)
		if loadSession(t, s, other.Session.ID).SuccessorUsed {
			t.Fatal("successor_used is set before the new pair was used")
		}
		authenticate(t, s, next.AccessToken)
		if !loadSession(t, s, other.Session.ID).SuccessorUsed {
			t.Fatal("successor_used is not set after the new access token authenticated")
		}
	})
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestService(t, testConfig)
	user := signUp(t, s, "ann@example.com").User

	t.Run("RotatesThePair", func(t *testing.T) {
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		if next.AccessToken == old.AccessToken || next.RefreshToken == old.RefreshToken ||
			!wellFormed(next.AccessToken) || !wellFormed(next.RefreshToken) {
			t.Fatal("Refresh did not issue two new well-formed tokens")
		}
		if next.Session.ID != old.Session.ID || !next.Session.CreatedAt.Equal(old.Session.CreatedAt) {
			t.Fatal("Refresh changed the session's id or createdAt")
		}
		if next.User == nil || next.User.ID != user.ID {
			t.Fatalf("Refresh user = %+v, want %s", next.User, user.ID)
		}
		if next.Session.LastUsedAt.Before(old.Session.LastUsedAt) {
			t.Fatal("lastUsedAt moved backwards")
		}
		if got := next.Session.RefreshExpiresAt.Sub(next.Session.LastUsedAt); got != testConfig.RefreshTTL {
			t.Fatalf("new refresh expiry - lastUsedAt = %v, want %v", got, testConfig.RefreshTTL)
		}
		if got := next.Session.AccessExpiresAt.Sub(next.Session.LastUsedAt); got != testConfig.AccessTTL {
			t.Fatalf("new access expiry - lastUsedAt = %v, want %v", got, testConfig.AccessTTL)
		}
		_, err := s.authenticateAccess(ctx, old.AccessToken)
		wantCode(t, "old access token after refresh", err, CodeUnauthenticated)
		authenticate(t, s, next.AccessToken)
	})
	t.Run("RetryBeforeSuccessorUsedGetsSamePair", func(t *testing.T) {
		old := newSession(t, s, user)
		a := refresh(t, s, old.RefreshToken)
		b := refresh(t, s, old.RefreshToken)
		if !samePair(a, b) {
			t.Fatal("a retried refresh returned a different pair")
		}
		if b.User == nil || b.User.ID != user.ID {
			t.Fatalf("retried refresh user = %+v, want %s", b.User, user.ID)
		}
		authenticate(t, s, b.AccessToken)
	})
	t.Run("ReplayAfterSuccessorAuthenticated", func(t *testing.T) {
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		authenticate(t, s, next.AccessToken)
		_, err := s.Refresh(ctx, old.RefreshToken)
		wantCode(t, "replayed refresh token", err, CodeRefreshTokenReused)
		_, err = s.authenticateAccess(ctx, next.AccessToken)
		wantCode(t, "current access token after replay", err, CodeUnauthenticated)
		_, err = s.Refresh(ctx, next.RefreshToken)
		wantCode(t, "current refresh token after replay", err, CodeUnauthenticated)
		_, err = s.Refresh(ctx, old.RefreshToken)
		wantCode(t, "replayed refresh token again", err, CodeUnauthenticated)
	})
	t.Run("ReplayAfterSuccessorRefreshed", func(t *testing.T) {
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		third := refresh(t, s, next.RefreshToken)
		_, err := s.Refresh(ctx, old.RefreshToken)
		wantCode(t, "replayed retired refresh token", err, CodeRefreshTokenReused)
		_, err = s.authenticateAccess(ctx, third.AccessToken)
		wantCode(t, "current access token after replay", err, CodeUnauthenticated)
		_, err = s.Refresh(ctx, third.RefreshToken)
		wantCode(t, "current refresh token after replay", err, CodeUnauthenticated)
		_, err = s.Refresh(ctx, next.RefreshToken)
		wantCode(t, "previous refresh token after replay", err, CodeUnauthenticated)
	})
	t.Run("RetryWithinReuseWindowGetsSamePair", func(t *testing.T) {
		cfg := testConfig
		cfg.ReuseWindow = time.Hour
		s := withConfig(s, cfg)
		old := newSession(t, s, user)
		next := refresh(t, s, old.RefreshToken)
		authenticate(t, s, next.AccessToken)
		again := refresh(t, s, old.RefreshToken)
		if !samePair(next, again) {
			t.Fatal("a retry within the reuse window returned a different pair")
		}
		authenticate(t, s, again.AccessToken)
	})
	t.Run("AccessTokenIsNotRefresh", func(t *testing.T) {
		iss := newSession(t, s, user)
		_, err := s.Refresh(ctx, iss.AccessToken)
		wantCode(t, "Refresh(access token)", err, CodeUnauthenticated)
		refresh(t, s, iss.RefreshToken) // and the session is unharmed
	})
	t.Run("UnknownOrMalformedToken", func(t *testing.T) {
		for _, tok := range []string{newToken(), "", "Bearer x", strings.Repeat("+", TokenLength)} {
			_, err := s.Refresh(ctx, tok)
			wantCode(t, "Refresh(unknown)", err, CodeUnauthenticated)
		}
	})
	t.Run("ExpiredRefreshToken", func(t *testing.T) {
		iss := newSession(t, s, user)
		expire(t, s, iss.Session.ID, "access_expires_at", "refresh_expires_at")
		_, err := s.Refresh(ctx, iss.RefreshToken)
		wantCode(t, "Refresh(expired)", err, CodeTokenExpired)
	})
	t.Run("ExpiredAccessTokenStillRefreshes", func(t *testing.T) {
		iss := newSession(t, s, user)
		expire(t, s, iss.Session.ID, "access_expires_at")
		next := refresh(t, s, iss.RefreshToken)
		authenticate(t, s, next.AccessToken)
	})
	t.Run("LoggedOutSession", func(t *testing.T) {
		iss := newSession(t, s, user)
		if err := s.Logout(ctx, iss.RefreshToken); err != nil {
			t.Fatalf("Logout: %v", err)
		}
		_, err := s.Refresh(ctx, iss.RefreshToken)
		wantCode(t, "Refresh after logout", err, CodeUnauthenticated)
	})
}

func TestLogout(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestService(t, testConfig)
	user := signUp(t, s, "ann@example.com").User

	for _, kind := range []string{"AccessToken", "RefreshToken"} {
		t.Run("With"+kind+"EndsTheSession", func(t *testing.T) {
			iss := newSession(t, s, user)
			other := newSession(t, s, user)
			tok := iss.AccessToken
			if kind == "RefreshToken" {
				tok = iss.RefreshToken
			}
			if err := s.Logout(ctx, tok); err != nil {
				t.Fatalf("Logout: %v", err)
			}
			_, err := s.authenticateAccess(ctx, iss.AccessToken)
			wantCode(t, "access token after logout", err, CodeUnauthenticated)
			_, err = s.Refresh(ctx, iss.RefreshToken)
			wantCode(t, "refresh token after logout", err, CodeUnauthenticated)
			err = s.Logout(ctx, tok)
			wantCode(t, "second logout", err, CodeUnauthenticated)
			authenticate(t, s, other.AccessToken) // other devices stay signed in
		})
	}
	t.Run("UnknownOrMalformedToken", func(t *testing.T) {
		for _, tok := range []string{newToken(), "", "x"} {
			wantCode(t, "Logout(unknown)", s.Logout(ctx, tok), CodeUnauthenticated)
		}
	})
	t.Run("ExpiredAccessToken", func(t *testing.T) {
		iss := newSession(t, s, user)
		expire(t, s, iss.Session.ID, "access_expires_at")
		wantCode(t, "Logout(expired access token)", s.Logout(ctx, iss.AccessToken), CodeTokenExpired)
		if err := s.Logout(ctx, iss.RefreshToken); err != nil {
			t.Fatalf("Logout(refresh token) after the access token expired: %v", err)
		}
	})
}

// TestRefreshConcurrentSameToken: ten clients refreshing with one token at
// once (a retrying app, several tabs) all get the one successor pair, and
// nobody is logged out. Repeated along a chain for more interleavings.
func TestRefreshConcurrentSameToken(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestService(t, testConfig)
	iss := signUp(t, s, "ann@example.com")

	const n = 10
	token := iss.RefreshToken
	for round := range 5 {
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			results [n]*Issued
			errs    [n]error
		)
		for i := range n {
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.Refresh(ctx, token)
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d: refresh %d: %v (code %s)", round, i, errs[i], ErrorCode(errs[i]))
			}
			if !samePair(results[0], results[i]) {
				t.Fatalf("round %d: refresh %d returned a different pair from refresh 0", round, i)
			}
		}
		next := results[0]
		if next.RefreshToken == token {
			t.Fatalf("round %d: the refresh token did not rotate", round)
		}
		authenticate(t, s, next.AccessToken)
		// Exactly one rotation happened: the pair's parent is the token
		// everyone presented.
		if got := loadSession(t, s, iss.Session.ID).PrevRefreshHash; !bytes.Equal(got, hashToken(token)) {
			t.Fatalf("round %d: prev_refresh_hash is not the hash of the token presented", round)
		}
		token = next.RefreshToken
	}
}

// TestRefreshConcurrentAcrossInstances is TestRefreshConcurrentSameToken
// with the ten refreshes split between two instances, each with its own pool
// over the one database: on PostgreSQL two servers behind a load balancer,
// on SQLite two processes contending for the file's write lock.
func TestRefreshConcurrentAcrossInstances(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.New(t)
	a := newTestServiceOn(t, url, nil)
	b := newTestServiceOn(t, url, a.hasher)
	token := signUp(t, a, "ann@example.com").RefreshToken

	const n = 10
	for round := range 3 {
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			results [n]*Issued
			errs    [n]error
		)
		for i := range n {
			s := a
			if i%2 == 1 {
				s = b
			}
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.Refresh(ctx, token)
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("round %d: refresh %d: %v (code %s)", round, i, errs[i], ErrorCode(errs[i]))
			}
			if !samePair(results[0], results[i]) {
				t.Fatalf("round %d: refresh %d returned a different pair from refresh 0", round, i)
			}
		}
		authenticate(t, b, results[0].AccessToken)
		authenticate(t, a, results[0].AccessToken)
		token = results[0].RefreshToken
	}
}

// TestRefreshReplayRacingSuccessor races a replay of a superseded refresh
// token (its successor already used) against the legitimate refresh of that
// successor, many times. Whatever order the database serialises them in, the
// replay is detected and the session does not fork: afterwards at most one of
// the refresh tokens the two parties hold can refresh.
func TestRefreshReplayRacingSuccessor(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newTestService(t, testConfig)
	user := signUp(t, s, "ann@example.com").User

	for i := range 50 {
		first := newSession(t, s, user)
		second := refresh(t, s, first.RefreshToken)
		authenticate(t, s, second.AccessToken) // the successor is used: first is now a replay

		var (
			wg                  sync.WaitGroup
			start               = make(chan struct{})
			replayErr, legitErr error
			legit               *Issued
		)
		wg.Go(func() { <-start; _, replayErr = s.Refresh(ctx, first.RefreshToken) })
		wg.Go(func() { <-start; legit, legitErr = s.Refresh(ctx, second.RefreshToken) })
		close(start)
		wg.Wait()

		wantCode(t, fmt.Sprintf("iteration %d: the replay", i), replayErr, CodeRefreshTokenReused)
		if legitErr != nil && ErrorCode(legitErr) != CodeUnauthenticated {
			t.Fatalf("iteration %d: the legitimate refresh: %v (code %s), want success or %s",
				i, legitErr, ErrorCode(legitErr), CodeUnauthenticated)
		}

		held := []string{first.RefreshToken, second.RefreshToken}
		if legit != nil {
			held = append(held, legit.RefreshToken)
		}
		usable := 0
		for _, tok := range held {
			if _, err := s.Refresh(ctx, tok); err == nil {
				usable++
			}
		}
		if usable > 1 {
			t.Fatalf("iteration %d: %d of the %d refresh tokens held can still refresh", i, usable, len(held))
		}
		// A detected replay revokes the whole session (API.md, "Refresh").
		if loadSession(t, s, first.Session.ID).RevokedAt == nil {
			t.Fatalf("iteration %d: the session survived a detected replay", i)
		}
		if legit != nil {
			_, err := s.authenticateAccess(ctx, legit.AccessToken)
			wantCode(t, fmt.Sprintf("iteration %d: access token issued in the race", i), err, CodeUnauthenticated)
		}
	}
}
