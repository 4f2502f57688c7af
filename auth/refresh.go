package auth

import (
	"context"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// Refresh rotates the token pair of the session that refreshToken belongs to.
// The session keeps its id and createdAt; the old access token dies at once.
//
// A superseded refresh token presented again gets the pair it was rotated
// into while that pair is unused or within the reuse window of its rotation
// (a client retrying after a lost response is not logged out); after that it
// is a replay and revokes the session. The session row is locked for the
// whole decision, so concurrent refreshes and replays are serialised and can
// never leave two live pairs.
//
// Errors: UNAUTHENTICATED (unknown token, revoked session), TOKEN_EXPIRED,
// REFRESH_TOKEN_REUSED, SERVICE_UNAVAILABLE.
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Issued, error) {
	if !wellFormed(refreshToken) {
		return nil, errUnauthenticated
	}
	release, err := s.admitWrite() // until the rotation is announced
	if err != nil {
		return nil, err
	}
	defer release()
	var issued *Issued
	var outcome *Error
	// One transaction: the decision, the rotation and the user for the
	// payload (read with the session). It NOTIFYs nothing for a rotation
	// (see coherence.go).
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		issued, outcome, err = s.refreshInTx(ctx, tx, refreshToken)
		return err
	})
	if err != nil {
		return nil, dbError(err)
	}
	// Answer only once the old access token (or, on a replay, the revoked
	// session) is refused on every instance. A retry's copy announces the
	// rotation again, in case the instance that made it died before it could.
	if issued != nil {
		if err := s.announceRotation(ctx, issued.Session.ID); err != nil {
			return nil, err
		}
	} else if outcome == errRefreshReused {
		s.syncInvalidations(ctx)
	}
	if outcome != nil {
		return nil, outcome
	}
	return issued, nil
}

// superseded is what is kept of a refresh token that was rotated away.
type superseded struct {
	rotatedAt     time.Time
	sealed        []byte // the pair it was rotated into, sealed under it; nil once spent
	successorUsed bool
}

// retriable reports whether presenting the superseded token at now still
// returns the pair it was rotated into (API.md, "Refresh"): while that pair
// is unused, or within window of the rotation. The sealed copy is erased no
// earlier than this turns false (see sealPair), so a nil one means false.
func (old *superseded) retriable(now time.Time, window time.Duration) bool {
	return old.sealed != nil && (!old.successorUsed || now.Before(old.rotatedAt.Add(window)))
}

// tokenRole is what a presented token is to the session it was found on.
type tokenRole int

const (
	unknownToken      tokenRole = iota
	currentAccess               // the session's access token
	currentRefresh              // the session's refresh token
	supersededRefresh           // a refresh token rotated away, on the row or retired
)

// lockByToken finds the session that a token with hash h belongs to, as its
// refresh token, the one it replaced, or one retired before that (and, with
// access, as its access token), reads it with its user and the database's
// now, and locks the session row (not the user's) until the transaction
// ends. old is set for a superseded refresh token.
func (s *Service) lockByToken(ctx context.Context, tx bun.Tx, h []byte, access bool) (*identityRow, tokenRole, *superseded, error) {
	by := byRefresh
	if access {
		by = byAnyToken
	}
	row, err := s.selectLocked(ctx, tx, by, h)
	switch {
	case err == nil && string(row.AccessHash) == string(h):
		return row, currentAccess, nil, nil
	case err == nil && string(row.RefreshHash) == string(h):
		return row, currentRefresh, nil, nil
	case err == nil:
		return row, supersededRefresh, &superseded{rotatedAt: *row.PrevRotatedAt, sealed: row.PrevSealed, successorUsed: row.SuccessorUsed}, nil
	case !isNoRows(err):
		return nil, unknownToken, nil, err
	}
	// Not on any session row: retired more than a generation ago, or
	// unknown.
	retired := new(models.RetiredRefreshToken)
	err = tx.NewSelect().Model(retired).Where("token_hash = ?", h).Scan(ctx)
	if isNoRows(err) {
		return nil, unknownToken, nil, nil
	}
	if err != nil {
		return nil, unknownToken, nil, err
	}
	if row, err = s.selectLocked(ctx, tx, byID, retired.SessionID); err != nil {
		return nil, unknownToken, nil, err
	}
	// Its successor was used: the token after it was presented to rotate.
	old := &superseded{sealed: retired.Sealed, successorUsed: true}
	if retired.RotatedAt != nil {
		old.rotatedAt = *retired.RotatedAt
	}
	return row, supersededRefresh, old, nil
}

// lockBy is what selectLocked finds a session by.
type lockBy int

const (
	byRefresh  lockBy = iota // its refresh token or the one that token replaced
	byAnyToken               // the same, or its access token
	byID                     // its id
)

// selectLocked reads the session that key identifies (see lockBy) with its
// user and the database's now, and locks the session row, not the user's.
// It runs on every refresh and logout, so its text is built once, with a
// parameter, and prepared (as lookupAccess's): bun would write the hash into
// the text, and PostgreSQL would parse and plan the join anew each time.
// Errors: sql.ErrNoRows when there is no such session.
func (s *Service) selectLocked(ctx context.Context, tx bun.Tx, by lockBy, key any) (*identityRow, error) {
	s.lockOnce.Do(func() {
		p := s.dialect.Placeholder(1)
		for by, where := range [...]string{
			byRefresh:  "session.refresh_hash = ? OR session.prev_refresh_hash = ?",
			byAnyToken: "session.access_hash = ? OR session.refresh_hash = ? OR session.prev_refresh_hash = ?",
			byID:       "session.id = ?",
		} {
			args := make([]any, strings.Count(where, "?"))
			for i := range args {
				args[i] = p
			}
			s.lockSQL[by] = s.db.NewSelect().Model((*identityRow)(nil)).
				ColumnExpr("session.*").ColumnExpr(s.dialect.Now+" AS db_now").
				Relation("User").
				Where(where, args...).
				Apply(s.dialect.ForUpdateOf("session")).
				String()
		}
	})
	return s.scanIdentity(ctx)(s.dialect.QueryPreparedTx(ctx, tx, s.lockSQL[by], key))
}

// judgeRefresh decides what presenting a refresh token (the current one, or
// the superseded old) to its locked session amounts to: nil when it would
// refresh, errRefreshReused for a replay (the caller revokes the session),
// or the error to answer. Refresh and Logout decide alike, so that any
// token that refreshes also logs out.
func (s *Service) judgeRefresh(row *identityRow, old *superseded) *Error {
	sess := &row.Session
	switch {
	case sess.RevokedAt != nil:
		return errUnauthenticated
	case !row.DBNow.Before(sess.RefreshExpiresAt):
		return errRefreshExpired
	case old == nil || old.retriable(row.DBNow, s.cfg.ReuseWindow):
		return nil
	default:
		return errRefreshReused
	}
}

// replayed revokes the session of a replayed refresh token and records
// REFRESH_TOKEN_REUSED, with the replaying request's address and user agent.
func (s *Service) replayed(ctx context.Context, tx bun.Tx, sess *models.Session) error {
	s.log.WarnContext(ctx, "refresh token replayed; session revoked", "session_id", sess.ID, "user_id", sess.UserID)
	if err := s.revokeSession(ctx, tx, sess.ID); err != nil {
		return err
	}
	return s.recordEvent(ctx, tx, sessionEvent(EventRefreshTokenReused, sess, nil))
}

func (s *Service) refreshInTx(ctx context.Context, tx bun.Tx, token string) (*Issued, *Error, error) {
	row, role, old, err := s.lockByToken(ctx, tx, hashToken(token), false)
	if err != nil {
		return nil, nil, err
	}
	if role == unknownToken {
		return nil, errUnauthenticated, nil
	}
	sess := &row.Session
	switch outcome := s.judgeRefresh(row, old); {
	case outcome == errRefreshReused:
		return nil, outcome, s.replayed(ctx, tx, sess)
	case outcome != nil:
		return nil, outcome, nil
	case old == nil:
		issued, err := s.rotate(ctx, tx, &row.sessionRow, token)
		if issued != nil {
			issued.User = row.User
		}
		return issued, nil, err
	}
	pair, err := openPair(token, sess.ID, old.sealed)
	if err != nil {
		return nil, nil, err
	}
	view := *sess
	view.AccessExpiresAt, view.RefreshExpiresAt = pair.AccessExpiresAt, pair.RefreshExpiresAt
	return &Issued{AccessToken: pair.Access, RefreshToken: pair.Refresh, Session: &view, User: row.User, Now: row.DBNow}, nil, nil
}

// rotate replaces the session's pair, keeps the replaced refresh token's hash
// and the new pair sealed under it, and retires the generation before: its
// hash always (a replay must be recognised), its sealed pair only while a
// retry may still ask for it. Presenting the replaced token proves that pair
// used, so that is while the reuse window of its rotation lasts.
//
// Every time written is the database's now as read under the row lock, so
// the rotation happens at one instant: PostgreSQL's now() is fixed for the
// transaction anyway, but SQLite's clock moves between statements. The
// expiries are therefore the values the database would compute, and they can
// be sealed with the pair.
func (s *Service) rotate(ctx context.Context, tx bun.Tx, row *sessionRow, refreshToken string) (*Issued, error) {
	sess := &row.Session
	accessTTL, refreshTTL := s.lifetimes()
	refreshExp := row.DBNow.Add(refreshTTL)
	if m := s.cfg.SessionMaxLifetime; m > 0 {
		// Sliding, but never past sign-in plus the maximum lifetime.
		refreshExp = minTime(refreshExp, sess.CreatedAt.Add(m))
	}
	pair := tokenPair{
		Access:           newToken(),
		Refresh:          newToken(),
		RefreshExpiresAt: refreshExp.Truncate(time.Microsecond).UTC(),
		AccessExpiresAt:  minTime(row.DBNow.Add(accessTTL), refreshExp).Truncate(time.Microsecond).UTC(),
	}
	update := tx.NewUpdate().Model(row).
		Set("access_hash = ?", hashToken(pair.Access)).
		Set("refresh_hash = ?", hashToken(pair.Refresh)).
		Set("access_expires_at = ?", pair.AccessExpiresAt).
		Set("refresh_expires_at = ?", pair.RefreshExpiresAt).
		Set("prev_refresh_hash = refresh_hash").
		Set("prev_rotated_at = ?", row.DBNow).
		Set("prev_sealed = ?", sealPair(refreshToken, sess.ID, pair)).
		Set("successor_used = false").
		Set("last_used_at = ?", row.DBNow).
		WherePK().
		Returning("*")
	if sess.PrevRefreshHash != nil {
		retired := &models.RetiredRefreshToken{
			TokenHash: sess.PrevRefreshHash, SessionID: sess.ID, RotatedAt: sess.PrevRotatedAt,
		}
		if sess.PrevRotatedAt != nil && row.DBNow.Before(sess.PrevRotatedAt.Add(s.cfg.ReuseWindow)) {
			retired.Sealed = sess.PrevSealed
		}
		// One statement with the update on PostgreSQL: a round trip less.
		var err error
		insert := tx.NewInsert().Model(retired).Value("retired_at", s.dialect.Now)
		if update, err = s.dialect.After(ctx, insert, update); err != nil {
			return nil, err
		}
	}
	if _, err := update.Exec(ctx); err != nil {
		return nil, err
	}
	return &Issued{AccessToken: pair.Access, RefreshToken: pair.Refresh, Session: sess, Now: row.DBNow, rotated: true}, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
