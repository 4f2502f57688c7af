// Package auth is the session-auth domain: accounts, password hashing, opaque
// tokens, device sessions with rotating refresh tokens, and the HTTP
// middleware that tells every other piece of code who is calling. It knows
// nothing of GraphQL.
package auth

import (
	"context"
	"log/slog"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// Config holds the policy knobs of API.md.
type Config struct {
	AccessTTL   time.Duration // ACCESS_TOKEN_TTL
	RefreshTTL  time.Duration // REFRESH_TOKEN_TTL
	ReuseWindow time.Duration // REFRESH_REUSE_WINDOW
	AllowSignUp bool          // ALLOW_SIGNUP
}

// Service carries out every session-auth operation against the database.
type Service struct {
	db     *bun.DB
	cfg    Config
	hasher *hasher
	log    *slog.Logger
}

// NewService returns a Service over db, which must have been migrated.
func NewService(db *bun.DB, cfg Config, log *slog.Logger) *Service {
	return &Service{db: db, cfg: cfg, hasher: newHasher(), log: log}
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
}

// Issued is a freshly issued (or, for a retried refresh, re-issued) token
// pair with its session and user.
type Issued struct {
	AccessToken  string
	RefreshToken string
	Session      *models.Session
	User         *models.User
	// Now is the database's clock when the pair was read, for the
	// expires-in fields.
	Now time.Time
}

// sessionRow is a session read together with the database's clock.
type sessionRow struct {
	models.Session `bun:",extend"`
	DBNow          time.Time `bun:"db_now,scanonly"`
}

// emailKey is the canonical form under which emails compare.
func emailKey(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

func validEmail(email string) bool {
	if len(email) > maxEmailLen {
		return false
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" {
		return false
	}
	at := strings.LastIndexByte(email, '@')
	return at > 0 && strings.Contains(email[at+1:], ".")
}

func badInput(msg string) *Error { return &Error{Code: CodeBadUserInput, Message: msg} }

func checkPassword(password string) error {
	if n := utf8.RuneCountInString(password); n < minPasswordLen || n > maxPasswordLen {
		return badInput("the password must be 8 to 128 characters long")
	}
	return nil
}

func checkDeviceName(name *string) (*string, error) {
	if name == nil {
		return nil, nil
	}
	if utf8.RuneCountInString(*name) > maxDeviceNameLen {
		return nil, badInput("the device name must be at most 100 characters long")
	}
	trimmed := strings.TrimSpace(*name)
	if trimmed == "" {
		return nil, nil
	}
	return &trimmed, nil
}

// SignUp creates an account and its first session.
// Errors: FORBIDDEN when sign-up is disabled, BAD_USER_INPUT, EMAIL_TAKEN,
// SERVICE_UNAVAILABLE.
func (s *Service) SignUp(ctx context.Context, c Credentials) (*Issued, error) {
	if !s.cfg.AllowSignUp {
		return nil, errSignUpDisabled
	}
	email := strings.TrimSpace(c.Email)
	if !validEmail(email) {
		return nil, badInput("the email address is not valid")
	}
	if err := checkPassword(c.Password); err != nil {
		return nil, err
	}
	device, err := checkDeviceName(c.DeviceName)
	if err != nil {
		return nil, err
	}
	hash, err := s.hasher.hash(ctx, c.Password)
	if err != nil {
		return nil, dbError(err)
	}
	user := &models.User{ID: uuid.NewString(), Email: email, EmailKey: emailKey(email), PasswordHash: hash}
	var issued *Issued
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.NewInsert().Model(user).Value("created_at", sqlNow).Returning("created_at").Exec(ctx)
		if err != nil {
			if isUniqueViolation(err) {
				return errEmailTaken
			}
			return err
		}
		issued, err = s.createSession(ctx, tx, user, device)
		return err
	})
	if err != nil {
		return nil, dbError(err)
	}
	return issued, nil
}

// Login signs a device in with email and password.
// Errors: BAD_USER_INPUT (malformed email, overlong input), INVALID_CREDENTIALS,
// SERVICE_UNAVAILABLE.
func (s *Service) Login(ctx context.Context, c Credentials) (*Issued, error) {
	email := strings.TrimSpace(c.Email)
	if !validEmail(email) {
		return nil, badInput("the email address is not valid")
	}
	// Too long is refused before any hashing; too short cannot match any
	// password and is simply wrong.
	if utf8.RuneCountInString(c.Password) > maxPasswordLen {
		return nil, badInput("the password must be 8 to 128 characters long")
	}
	device, err := checkDeviceName(c.DeviceName)
	if err != nil {
		return nil, err
	}
	user := new(models.User)
	err = s.db.NewSelect().Model(user).Where("email_key = ?", emailKey(email)).Scan(ctx)
	if err != nil && !isNoRows(err) {
		return nil, dbError(err)
	}
	// An unknown email verifies against a dummy hash: same work, same answer.
	ok, err := s.hasher.verify(ctx, c.Password, user.PasswordHash)
	if err != nil {
		return nil, dbError(err)
	}
	if !ok {
		return nil, errInvalidCredentials
	}
	issued, err := s.createSession(ctx, s.db, user, device)
	return issued, dbError(err)
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
	accessExpr, accessArg := sqlNowPlus(s.cfg.AccessTTL)
	refreshExpr, refreshArg := sqlNowPlus(s.cfg.RefreshTTL)
	_, err := db.NewInsert().Model(row).
		Value("created_at", sqlNow).
		Value("last_used_at", sqlNow).
		Value("refresh_expires_at", refreshExpr, refreshArg).
		// An access token never outlives its session.
		Value("access_expires_at", "least("+accessExpr+", "+refreshExpr+")", accessArg, refreshArg).
		Returning("*, " + sqlNow + " AS db_now").
		Exec(ctx)
	if err != nil {
		return nil, err
	}
	return &Issued{AccessToken: pair.Access, RefreshToken: pair.Refresh, Session: &row.Session, User: user, Now: row.DBNow}, nil
}

// Refresh rotates the token pair of the session that refreshToken belongs to.
// The session keeps its id and createdAt; the old access token dies at once.
//
// Presenting the refresh token that the current pair replaced returns that
// same pair while it is unused or within the reuse window (a client retrying
// after a lost response is not logged out); after that it is a replay and
// revokes the session. The session row is locked for the whole decision, so
// concurrent refreshes and replays are serialised and can never leave two
// live pairs.
//
// Errors: UNAUTHENTICATED (unknown token, revoked session), TOKEN_EXPIRED,
// REFRESH_TOKEN_REUSED, SERVICE_UNAVAILABLE.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Issued, error) {
	if !wellFormed(refreshToken) {
		return nil, errUnauthenticated
	}
	h := hashToken(refreshToken)
	var issued *Issued
	var outcome error
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		row := new(sessionRow)
		err := tx.NewSelect().Model(row).
			ColumnExpr("session.*").ColumnExpr(sqlNow+" AS db_now").
			Where("refresh_hash = ? OR prev_refresh_hash = ?", h, h).
			For("UPDATE").Scan(ctx)
		if isNoRows(err) {
			var e *Error
			e, err = s.retiredReplay(ctx, tx, h)
			if e != nil {
				outcome = e
			}
			return err
		}
		if err != nil {
			return err
		}
		sess := &row.Session
		switch {
		case sess.RevokedAt != nil:
			outcome = errUnauthenticated
			return nil
		case !row.DBNow.Before(sess.RefreshExpiresAt):
			outcome = errRefreshExpired
			return nil
		case string(sess.RefreshHash) == string(h):
			issued, err = s.rotate(ctx, tx, row, refreshToken)
			return err
		case !sess.SuccessorUsed || row.DBNow.Before(sess.PrevRotatedAt.Add(s.cfg.ReuseWindow)):
			pair, err := openPair(refreshToken, sess.ID, sess.PrevSealed)
			if err != nil {
				return err
			}
			issued = &Issued{AccessToken: pair.Access, RefreshToken: pair.Refresh, Session: sess, Now: row.DBNow}
			return nil
		default:
			s.log.WarnContext(ctx, "refresh token replayed; session revoked", "session_id", sess.ID, "user_id", sess.UserID)
			outcome = errRefreshReused
			return revokeSession(ctx, tx, sess.ID)
		}
	})
	if err != nil {
		return nil, dbError(err)
	}
	if outcome != nil {
		return nil, outcome
	}
	issued.User = new(models.User)
	err = s.db.NewSelect().Model(issued.User).Where("id = ?", issued.Session.UserID).Scan(ctx)
	if err != nil {
		return nil, dbError(err)
	}
	return issued, nil
}

// rotate replaces the session's pair, keeps the replaced refresh token's hash
// and the new pair sealed under it, and retires the generation before.
func (s *Service) rotate(ctx context.Context, tx bun.Tx, row *sessionRow, refreshToken string) (*Issued, error) {
	sess := &row.Session
	if sess.PrevRefreshHash != nil {
		retired := &models.RetiredRefreshToken{TokenHash: sess.PrevRefreshHash, SessionID: sess.ID}
		if _, err := tx.NewInsert().Model(retired).Value("retired_at", sqlNow).Exec(ctx); err != nil {
			return nil, err
		}
	}
	pair := tokenPair{Access: newToken(), Refresh: newToken()}
	accessExpr, accessArg := sqlNowPlus(s.cfg.AccessTTL)
	refreshExpr, refreshArg := sqlNowPlus(s.cfg.RefreshTTL)
	_, err := tx.NewUpdate().Model(row).
		Set("access_hash = ?", hashToken(pair.Access)).
		Set("refresh_hash = ?", hashToken(pair.Refresh)).
		Set("refresh_expires_at = "+refreshExpr, refreshArg).
		Set("access_expires_at = least("+accessExpr+", "+refreshExpr+")", accessArg, refreshArg).
		Set("prev_refresh_hash = refresh_hash").
		Set("prev_rotated_at = "+sqlNow).
		Set("prev_sealed = ?", sealPair(refreshToken, sess.ID, pair)).
		Set("successor_used = false").
		Set("last_used_at = " + sqlNow).
		WherePK().
		Returning("*, " + sqlNow + " AS db_now").
		Exec(ctx)
	if err != nil {
		return nil, err
	}
	return &Issued{AccessToken: pair.Access, RefreshToken: pair.Refresh, Session: sess, Now: row.DBNow}, nil
}

// retiredReplay handles a refresh token that is not on any session row: if it
// was retired, this is a replay and its session is revoked.
func (s *Service) retiredReplay(ctx context.Context, tx bun.Tx, h []byte) (*Error, error) {
	var sessionID string
	err := tx.NewSelect().Model((*models.RetiredRefreshToken)(nil)).Column("session_id").
		Where("token_hash = ?", h).Scan(ctx, &sessionID)
	if isNoRows(err) {
		return errUnauthenticated, nil
	}
	if err != nil {
		return nil, err
	}
	res, err := tx.NewUpdate().Model((*models.Session)(nil)).
		Set("revoked_at = "+sqlNow).
		Where("id = ? AND revoked_at IS NULL", sessionID).Exec(ctx)
	if err != nil {
		return nil, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errUnauthenticated, nil
	}
	s.log.WarnContext(ctx, "retired refresh token replayed; session revoked", "session_id", sessionID)
	return errRefreshReused, nil
}

func revokeSession(ctx context.Context, db bun.IDB, id string) error {
	_, err := db.NewUpdate().Model((*models.Session)(nil)).
		Set("revoked_at = "+sqlNow).Where("id = ? AND revoked_at IS NULL", id).Exec(ctx)
	return err
}
