// Package auth is the session-auth domain: accounts, password hashing, opaque
// tokens, device sessions with rotating refresh tokens, and the HTTP
// middleware that tells every other piece of code who is calling. It knows
// nothing of GraphQL.
package auth

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/models"
)

// Config holds the policy knobs of API.md.
type Config struct {
	AccessTTL   time.Duration // ACCESS_TOKEN_TTL
	RefreshTTL  time.Duration // REFRESH_TOKEN_TTL
	ReuseWindow time.Duration // REFRESH_REUSE_WINDOW
	AllowSignUp bool          // ALLOW_SIGNUP
	// SessionMaxLifetime caps a session's life from sign-in; no refresh
	// extends it further. Zero means no cap (SESSION_MAX_LIFETIME).
	SessionMaxLifetime time.Duration
	// MaxSessionsPerUser, when positive, ends a user's least recently used
	// sessions at sign-in so that at most this many stay live
	// (MAX_SESSIONS_PER_USER).
	MaxSessionsPerUser int
	Throttle           ThrottleConfig
	// TrustedProxies are the addresses whose X-Forwarded-For is believed
	// (TRUSTED_PROXIES).
	TrustedProxies []netip.Prefix
	// AllowedOrigins may send cookie-authenticated mutations and get CORS
	// with credentials (ALLOWED_ORIGINS). The transport reads it; the
	// domain sees no cookies and no origins.
	AllowedOrigins []string
	// SessionCacheSize bounds the session cache's entries
	// (SESSION_CACHE_SIZE; 0: DefaultCacheSize).
	SessionCacheSize int
	// MemoryBudget is what the process may use (MEMORY_BUDGET); the number
	// of concurrent password hashes is derived from it (see hashSlots).
	MemoryBudget int64
	// EventRetention is how long security events are kept
	// (SECURITY_EVENT_RETENTION); zero means the default, 90 days.
	EventRetention time.Duration
}

// DefaultConfig is the policy when no variable says otherwise (README,
// "Configuration"): the defaults are the domain's, stated once.
func DefaultConfig() Config {
	return Config{
		AccessTTL:   15 * time.Minute,
		RefreshTTL:  168 * time.Hour,
		ReuseWindow: 30 * time.Second,
		AllowSignUp: true,
		Throttle: ThrottleConfig{
			MaxFailures:      5,
			MaxFailuresPerIP: 100,
			Window:           15 * time.Minute,
			MaxSignUpsPerIP:  100,
			SignUpWindow:     15 * time.Minute,
			DeviceTokenTTL:   4320 * time.Hour,
		},
		SessionCacheSize: DefaultCacheSize,
		MemoryBudget:     DefaultMemoryBudget,
		EventRetention:   2160 * time.Hour,
	}
}

// Service carries out every session-auth operation against the database.
type Service struct {
	db      *bun.DB
	dialect database.Dialect
	cfg     Config
	hasher  *hasher
	log     *slog.Logger
	cache   *sessionCache // nil unless EnableCache was called
	events  eventHub      // handlers of security events (events.go)
	watch   watchHub      // sessions of long-lived connections (watch.go)
	touches touchQueue    // lastUsedAt writes made in batches (touch.go)
	streams streamHub     // securityEvents subscribers (eventstream.go)

	verified, hashed atomic.Int64 // see PasswordWork

	lookupOnce sync.Once
	lookupSQL  string // see lookupAccess
	lockOnce   sync.Once
	lockSQL    [3]string // see lockByToken, by lockBy
}

// NewService returns a Service over db, which must have been migrated.
func NewService(db *bun.DB, cfg Config, log *slog.Logger) *Service {
	return &Service{db: db, dialect: database.DialectOf(db), cfg: cfg, hasher: newBoundedHasher(hashSlots(cfg.MemoryBudget, cfg.SessionCacheSize)), log: log}
}

// Input limits of API.md ("BAD_USER_INPUT").
const (
	minPasswordLen   = 8
	maxPasswordLen   = 128
	maxEmailLen      = 254 // RFC 5321's limit on a forward path
	maxDeviceNameLen = 100
	maxUserAgentLen  = 512 // longer values are cut, not refused: the client does not choose them
)

// Credentials is what signUp and login take.
type Credentials struct {
	Email      string
	Password   string
	DeviceName *string
	// DeviceProof is the device proof the client presented (device.go), ""
	// when none; login only. One that is not a live proof of the account's
	// device is ignored.
	DeviceProof string
}

// Issued is a freshly issued (or, for a retried refresh, re-issued) token
// pair with its session and user: everything the client must be handed.
// How each token travels (the body, a cookie) is the transport's choice.
type Issued struct {
	AccessToken string
	// RefreshToken expires at Session.RefreshExpiresAt.
	RefreshToken string
	Session      *models.Session
	User         *models.User
	// Now is the database's clock when the pair was read, for the
	// expires-in fields and a cookie's Max-Age.
	Now time.Time
	// DeviceToken is a new device proof (device.go), after signUp and login
	// only, "" when device proofs are off; it expires at DeviceExpiresAt.
	DeviceToken     string
	DeviceExpiresAt time.Time
	rotated         bool // a new pair, not a retry's copy of the last one
}

// sessionRow is a session read together with the database's clock.
type sessionRow struct {
	models.Session `bun:",extend"`
	DBNow          time.Time `bun:"db_now,scanonly"`
}

func badInput(msg string) *Error { return &Error{Code: CodeBadUserInput, Message: msg} }

func checkDeviceName(name *string) (*string, error) {
	if name == nil {
		return nil, nil
	}
	trimmed := strings.TrimSpace(*name)
	if utf8.RuneCountInString(trimmed) > maxDeviceNameLen {
		return nil, badInput("the device name must be at most 100 characters long")
	}
	if strings.ContainsFunc(trimmed, unicode.IsControl) {
		return nil, badInput("the device name must not contain control characters")
	}
	if trimmed == "" {
		return nil, nil
	}
	return &trimmed, nil
}

// validate checks c's input limits before any hashing and returns the
// trimmed email and device name. Sign-up also enforces the password length;
// a login with a short password is merely wrong (INVALID_CREDENTIALS), but
// an overlong one is refused before it reaches argon2.
// Errors: BAD_USER_INPUT.
func (c Credentials) validate(signUp bool) (email string, device *string, err error) {
	if email, err = checkEmail(c.Email); err != nil {
		return "", nil, err
	}
	if signUp {
		err = checkPassword(c.Password)
	} else if utf8.RuneCountInString(c.Password) > maxPasswordLen {
		err = badInput("the password must be 8 to 128 characters long")
	}
	if err != nil {
		return "", nil, err
	}
	device, err = checkDeviceName(c.DeviceName)
	return email, device, err
}

// SignUp creates an account and its first session. Every attempt that
// passes validation counts against the client address's sign-up limit
// before any other work; a taken email answers EMAIL_TAKEN without hashing
// the password (it says no more than EMAIL_TAKEN does). Of two concurrent
// sign-ups of one email the unique index lets one win; the other answers
// EMAIL_TAKEN.
// Errors: FORBIDDEN when sign-up is disabled, BAD_USER_INPUT, RATE_LIMITED,
// EMAIL_TAKEN, SERVICE_UNAVAILABLE.
func (s *Service) SignUp(ctx context.Context, c Credentials) (*Issued, error) {
	if !s.cfg.AllowSignUp {
		return nil, errSignUpDisabled
	}
	email, device, err := c.validate(true)
	if err != nil {
		return nil, err
	}
	held, err := s.reserve(ctx, s.signUpLimits(clientFromContext(ctx).IP), errSignUpLimited)
	if err != nil {
		return nil, err
	}
	defer s.fail(ctx, held) // every attempt counts, whatever its outcome
	key := emailKey(email)
	taken, err := s.db.NewSelect().Model((*models.User)(nil)).Where("email_key = ?", key).Exists(ctx)
	if err != nil {
		return nil, dbError(err)
	}
	if taken {
		return nil, errEmailTaken
	}
	hash, err := s.hash(ctx, c.Password)
	if err != nil {
		return nil, dbError(err)
	}
	user := &models.User{ID: uuid.NewString(), Email: email, EmailKey: key, PasswordHash: hash}
	var issued *Issued
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.NewInsert().Model(user).Value("created_at", s.dialect.Now).Returning("created_at").Exec(ctx)
		if err != nil {
			if isUniqueViolation(err) {
				return errEmailTaken
			}
			return err
		}
		issued, err = s.signIn(ctx, tx, user, device, nil, EventSignedUp)
		return err
	})
	if err != nil {
		return nil, dbError(err)
	}
	return issued, nil
}

// Login signs a device in with email and password. The attempt is counted
// before the password is checked (see throttle.go): on the device proof it
// presents, when that is a live proof of this account's device (device.go),
// else on the email and the client address. A wrong password records
// SIGN_IN_FAILED, a refusal SIGN_IN_RATE_LIMITED, for a registered email
// only; an unknown one runs the same statements, which record nothing (see
// Event.EmailKey), so the answer and its time say nothing of the email.
// Errors: BAD_USER_INPUT (malformed email, overlong input), RATE_LIMITED,
// INVALID_CREDENTIALS, SERVICE_UNAVAILABLE.
func (s *Service) Login(ctx context.Context, c Credentials) (*Issued, error) {
	email, device, err := c.validate(false)
	if err != nil {
		return nil, err
	}
	key := emailKey(email)
	user := new(models.User)
	err = s.db.NewSelect().Model(user).Where("email_key = ?", key).Scan(ctx)
	if err != nil && !isNoRows(err) {
		return nil, dbError(err)
	}
	proof, err := s.reserveDevice(ctx, c.DeviceProof, user.ID)
	if err != nil {
		return nil, err
	}
	held := proof
	if proof == nil {
		limited := &Event{Kind: EventSignInRateLimited, EmailKey: key}
		if held, err = s.reserveOr(ctx, s.loginLimits(key, clientFromContext(ctx).IP), errLoginLimited, limited); err != nil {
			return nil, err
		}
	}
	failed := Event{Kind: EventSignInFailed, EmailKey: key}
	// An unknown email verifies against a dummy hash: same work, same answer.
	ok, err := s.verify(ctx, c.Password, user.PasswordHash)
	if err != nil {
		s.release(ctx, held)
		return nil, dbError(err)
	}
	if !ok {
		s.failWith(ctx, held, failed)
		return nil, errInvalidCredentials
	}
	var issued *Issued
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		issued, err = s.signIn(ctx, tx, user, device, proof, EventSignedIn)
		return err
	})
	if err != nil {
		// A password changed meanwhile is a failure: what was proven is no
		// longer the password.
		if ErrorCode(err) == CodeInvalidCredentials {
			s.failWith(ctx, held, failed)
		} else {
			s.release(ctx, held)
		}
		return nil, dbError(err)
	}
	s.release(ctx, held)
	if s.cfg.MaxSessionsPerUser > 0 {
		s.syncInvalidations(ctx)
	}
	return issued, nil
}

// signIn is where every proof of identity ends, inside the transaction that
// records it: it locks the user's row and checks that the password hash the
// caller proved (user.PasswordHash) is still the stored one, so a login
// racing changePassword either commits before the change (whose
// revocation then ends its session) or answers INVALID_CREDENTIALS; then it
// creates the session, replaces the device proof (proof, when the caller
// presented one), ends the least recently used sessions beyond
// MaxSessionsPerUser, and records kind (SIGNED_UP or SIGNED_IN) for the new
// session and SESSION_EXPIRED, by the new session, for each one it ended.
// The row lock also serialises the user's sign-ins, so concurrent ones
// cannot each see room for one more session.
func (s *Service) signIn(ctx context.Context, tx bun.Tx, user *models.User, device *string, proof *reservation, kind EventKind) (*Issued, error) {
	var stored string
	// NO KEY UPDATE (see lockUser): it serialises the user's sign-ins and
	// password changes, and lets a logout holding one of the sessions
	// insert its event.
	err := s.lockUser(tx.NewSelect().Model((*models.User)(nil)).Column("password_hash").
		Where("id = ?", user.ID), "NO KEY UPDATE").Scan(ctx, &stored)
	if isNoRows(err) || err == nil && stored != user.PasswordHash {
		return nil, errInvalidCredentials
	}
	if err != nil {
		return nil, err
	}
	issued, err := s.createSession(ctx, tx, user, device)
	if err != nil {
		return nil, err
	}
	if issued.DeviceToken, err = s.issueDevice(ctx, tx, user.ID, proof); err != nil {
		return nil, err
	}
	if issued.DeviceToken != "" {
		// issueDevice stored now + DeviceTokenTTL, by the same clock.
		issued.DeviceExpiresAt = issued.Now.Add(s.cfg.Throttle.DeviceTokenTTL)
	}
	sess := issued.Session
	events := []Event{{Kind: kind, UserID: user.ID, SessionID: &sess.ID, DeviceName: sess.DeviceName}}
	if s.cfg.MaxSessionsPerUser > 0 {
		ended, err := s.endLeastRecentlyUsed(ctx, tx, user.ID, sess.ID)
		if err != nil {
			return nil, err
		}
		events = append(events, endedEvents(EventSessionExpired, user.ID, ended, &sess.ID)...)
	}
	return issued, s.recordEvents(ctx, tx, events)
}

// PasswordWork is how many argon2id computations a Service has run.
type PasswordWork struct {
	Verified int64 // passwords checked against a hash (login, changePassword)
	Hashed   int64 // passwords hashed (signUp, changePassword)
}

// PasswordWork returns the argon2id computations s has run since it was
// made, for metrics and for tests that prove an attempt was refused before
// it cost a hash.
func (s *Service) PasswordWork() PasswordWork {
	return PasswordWork{Verified: s.verified.Load(), Hashed: s.hashed.Load()}
}

func (s *Service) verify(ctx context.Context, password, encoded string) (bool, error) {
	s.verified.Add(1)
	return s.hasher.verify(ctx, password, encoded)
}

func (s *Service) hash(ctx context.Context, password string) (string, error) {
	s.hashed.Add(1)
	return s.hasher.hash(ctx, password)
}

// endLeastRecentlyUsed ends the user's live sessions beyond the newest
// MaxSessionsPerUser - 1 others, keeping the session just created, and
// returns the sessions it ended (id and device name).
func (s *Service) endLeastRecentlyUsed(ctx context.Context, tx bun.Tx, userID, keep string) ([]models.Session, error) {
	surplus := tx.NewSelect().Model((*models.Session)(nil)).Column("id").
		Where("user_id = ? AND id <> ?", userID, keep).
		Where(s.isLive()).
		Order("last_used_at DESC", "created_at DESC", "id DESC")
	surplus = s.dialect.Offset(surplus, int64(s.cfg.MaxSessionsPerUser-1))
	var ended []models.Session
	_, err := tx.NewUpdate().Model((*models.Session)(nil)).
		Set("revoked_at = "+s.dialect.Now).
		Where("id IN (?)", surplus).
		Returning(endedColumns).
		Exec(ctx, &ended)
	return ended, err
}

// lifetimes returns how long a new pair lives: the refresh token for
// RefreshTTL, capped by the session's maximum lifetime, and the access token
// never longer than its refresh token.
func (s *Service) lifetimes() (access, refresh time.Duration) {
	refresh = s.cfg.RefreshTTL
	if m := s.cfg.SessionMaxLifetime; m > 0 && m < refresh {
		refresh = m
	}
	return min(s.cfg.AccessTTL, refresh), refresh
}

// createSession inserts a new session for user with a fresh token pair whose
// expiries are fixed now, by the database's clock.
func (s *Service) createSession(ctx context.Context, db bun.IDB, user *models.User, device *string) (*Issued, error) {
	pair := tokenPair{Access: newToken(), Refresh: newToken()}
	client := clientFromContext(ctx)
	row := &sessionRow{Session: models.Session{
		ID:          uuid.NewString(),
		UserID:      user.ID,
		DeviceName:  device,
		UserAgent:   client.userAgent(),
		IPAddress:   client.ipAddress(),
		AccessHash:  hashToken(pair.Access),
		RefreshHash: hashToken(pair.Refresh),
	}}
	accessTTL, refreshTTL := s.lifetimes()
	accessExpr, accessArg := s.dialect.NowPlus(accessTTL)
	refreshExpr, refreshArg := s.dialect.NowPlus(refreshTTL)
	_, err := db.NewInsert().Model(row).
		Value("created_at", s.dialect.Now).
		Value("last_used_at", s.dialect.Now).
		Value("authenticated_at", s.dialect.Now).
		Value("access_expires_at", accessExpr, accessArg).
		Value("refresh_expires_at", refreshExpr, refreshArg).
		Returning("*, " + s.dialect.Now + " AS db_now").
		Exec(ctx)
	if err != nil {
		return nil, err
	}
	return &Issued{AccessToken: pair.Access, RefreshToken: pair.Refresh, Session: &row.Session, User: user, Now: row.DBNow}, nil
}

func (s *Service) revokeSession(ctx context.Context, db bun.IDB, id string) error {
	_, err := db.NewUpdate().Model((*models.Session)(nil)).
		Set("revoked_at = "+s.dialect.Now).Where("id = ? AND revoked_at IS NULL", id).Exec(ctx)
	if a := announcementOf(ctx); a != nil && err == nil {
		a.sessions = append(a.sessions, id)
	}
	return err
}
