package auth

import (
	"context"
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
	var issued *Issued
	var outcome *Error
	// One transaction: the decision, the rotation and the user for the
	// payload. It NOTIFYs nothing for a rotation (see coherence.go).
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		issued, outcome, err = s.refreshInTx(ctx, tx, refreshToken)
		if err != nil {
			return err
		}
		if issued != nil {
			issued.User = new(models.User)
			if err := tx.NewSelect().Model(issued.User).Where("id = ?", issued.Session.UserID).Scan(ctx); err != nil {
				return err
			}
		}
		return nil
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
	issued.RefreshInCookie = deliverRefreshCookie(ctx, issued)
	return issued, nil
}

// superseded is what is kept of a refresh token that was rotated away.
type superseded struct {
	rotatedAt     time.Time
	sealed        []byte // the pair it was rotated into, sealed under it
	successorUsed bool
}

func (s *Service) refreshInTx(ctx context.Context, tx bun.Tx, token string) (*Issued, *Error, error) {
	h := hashToken(token)
	row := new(sessionRow)
	err := tx.NewSelect().Model(row).
		ColumnExpr("session.*").ColumnExpr(s.dialect.Now+" AS db_now").
		Where("refresh_hash = ? OR prev_refresh_hash = ?", h, h).
		Apply(s.dialect.ForUpdate).Scan(ctx)
	var old *superseded
	switch {
	case isNoRows(err):
		// Not on any session row: retired more than a generation ago, or
		// unknown.
		retired := new(models.RetiredRefreshToken)
		err = tx.NewSelect().Model(retired).Where("token_hash = ?", h).Scan(ctx)
		if isNoRows(err) {
			return nil, errUnauthenticated, nil
		}
		if err != nil {
			return nil, nil, err
		}
		err = tx.NewSelect().Model(row).
			ColumnExpr("session.*").ColumnExpr(s.dialect.Now+" AS db_now").
			Where("id = ?", retired.SessionID).
			Apply(s.dialect.ForUpdate).Scan(ctx)
		if err != nil {
			return nil, nil, err
		}
		old = &superseded{sealed: retired.Sealed, successorUsed: true}
		if retired.RotatedAt != nil {
			old.rotatedAt = *retired.RotatedAt
		}
	case err != nil:
		return nil, nil, err
	case string(row.RefreshHash) != string(h):
		old = &superseded{rotatedAt: *row.PrevRotatedAt, sealed: row.PrevSealed, successorUsed: row.SuccessorUsed}
	}

	sess := &row.Session
	switch {
	case sess.RevokedAt != nil:
		return nil, errUnauthenticated, nil
	case !row.DBNow.Before(sess.RefreshExpiresAt):
		return nil, errRefreshExpired, nil
	case old == nil:
		issued, err := s.rotate(ctx, tx, row, token)
		return issued, nil, err
	case old.sealed != nil && (!old.successorUsed || row.DBNow.Before(old.rotatedAt.Add(s.cfg.ReuseWindow))):
		pair, err := openPair(token, sess.ID, old.sealed)
		if err != nil {
			return nil, nil, err
		}
		view := *sess
		view.AccessExpiresAt, view.RefreshExpiresAt = pair.AccessExpiresAt, pair.RefreshExpiresAt
		return &Issued{AccessToken: pair.Access, RefreshToken: pair.Refresh, Session: &view, Now: row.DBNow}, nil, nil
	default:
		s.log.WarnContext(ctx, "refresh token replayed; session revoked", "session_id", sess.ID, "user_id", sess.UserID)
		return nil, errRefreshReused, s.revokeSession(ctx, tx, sess.ID)
	}
}

// rotate replaces the session's pair, keeps the replaced refresh token's hash
// and the new pair sealed under it, and retires the generation before.
//
// Every time written is the database's now as read under the row lock, so
// the rotation happens at one instant: PostgreSQL's now() is fixed for the
// transaction anyway, but SQLite's clock moves between statements. The
// expiries are therefore the values the database would compute, and they can
// be sealed with the pair.
func (s *Service) rotate(ctx context.Context, tx bun.Tx, row *sessionRow, refreshToken string) (*Issued, error) {
	sess := &row.Session
	if sess.PrevRefreshHash != nil {
		retired := &models.RetiredRefreshToken{
			TokenHash: sess.PrevRefreshHash, SessionID: sess.ID,
			RotatedAt: sess.PrevRotatedAt, Sealed: sess.PrevSealed,
		}
		if _, err := tx.NewInsert().Model(retired).Value("retired_at", s.dialect.Now).Exec(ctx); err != nil {
			return nil, err
		}
	}
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
	_, err := tx.NewUpdate().Model(row).
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
		Returning("*").
		Exec(ctx)
	if err != nil {
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
