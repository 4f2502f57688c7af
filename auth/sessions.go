package auth

import (
	"context"
	"database/sql"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// Identity is who is calling: the session an access token belongs to and its
// user, as read from the database at Now (the database's clock). Session and
// User are read-only: with the session cache on, every request of the same
// token (and User, of the same user) shares them, so a write would show in
// other requests and race with them. Copy what you change (the pointers of a
// copied Session still point at shared values).
type Identity struct {
	Session *models.Session
	User    *models.User
	Now     time.Time
}

// touchInterval bounds how stale lastUsedAt may get: it is written at most
// once per interval per session, not on every request.
const touchInterval = 30 * time.Second

type identityRow struct {
	sessionRow `bun:",extend"`
	User       *models.User `bun:"rel:belongs-to,join:user_id=id"`
}

func isNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// authenticateAccess resolves an access token to its identity: from the
// session cache when it is on and holds the token, else with one indexed
// query. The only write is the throttled lastUsedAt (see touch).
// Errors: UNAUTHENTICATED (malformed, unknown, revoked), TOKEN_EXPIRED,
// SERVICE_UNAVAILABLE.
func (s *Service) authenticateAccess(ctx context.Context, token string) (*Identity, error) {
	if !wellFormed(token) {
		return nil, errUnauthenticated
	}
	return s.authenticateWellFormed(ctx, token)
}

// authenticateWellFormed is authenticateAccess for a token already known
// to be well formed: one that ParseBearer returned (a request's bearer
// token), which checked each of its 256 bytes already.
func (s *Service) authenticateWellFormed(ctx context.Context, token string) (*Identity, error) {
	h := hashToken(token)
	var epoch uint64
	if s.cache != nil {
		id, at, ok := s.cache.get(string(h))
		if ok {
			return s.checkAccess(ctx, at, h, id, true)
		}
		epoch = at
	}
	row, err := s.lookupAccess(ctx, h)
	if isNoRows(err) {
		return nil, errUnauthenticated
	}
	if err != nil {
		return nil, dbError(err)
	}
	return s.checkAccess(ctx, epoch, h, &Identity{Session: &row.Session, User: row.User, Now: row.DBNow}, false)
}

// checkAccess decides on an identity read at id.Now (from the cache when
// cached), records the use, and caches the result when it is valid, changed
// the cached copy, and no invalidation arrived since epoch.
func (s *Service) checkAccess(ctx context.Context, epoch uint64, h []byte, id *Identity, cached bool) (*Identity, error) {
	sess := id.Session
	if sess.RevokedAt != nil {
		return nil, errUnauthenticated
	}
	if !id.Now.Before(sess.AccessExpiresAt) {
		return nil, errAccessExpired
	}
	changed := !cached
	own := func() { // the cached copy is shared (see sessionCache.get): write to one of our own
		if cached {
			cp := *sess
			sess, id.Session = &cp, &cp
		}
	}
	switch {
	case sess.PrevRefreshHash != nil && !sess.SuccessorUsed:
		own()
		// The first use of a rotated pair also marks it used, which ends
		// the grace for its predecessor refresh token (see Refresh): in
		// this request, never queued.
		if err := s.touch(ctx, sess); err != nil {
			return nil, dbError(err)
		}
		changed = true
	case id.Now.Sub(sess.LastUsedAt) >= touchInterval:
		own()
		if s.touches.queue(sess.ID) {
			sess.LastUsedAt = id.Now // written within touchFlushInterval
		} else if err := s.touch(ctx, sess); err != nil {
			return nil, dbError(err)
		}
		changed = true
	}
	if s.cache != nil && changed {
		s.cache.put(epoch, string(h), id)
	}
	return id, nil
}

// touch records a use of sess's current access token. It matches the token's
// hash too: if a refresh rotated the pair meanwhile, the new pair has not been
// used and must not be marked so. A use after the reuse window also erases
// the pair's sealed copy: no retry may ask for it any more (see sealPair).
func (s *Service) touch(ctx context.Context, sess *models.Session) error {
	passed, arg := s.windowPassed("prev_rotated_at")
	_, err := s.db.NewUpdate().Model(sess).
		Set("last_used_at = "+s.dialect.Now).
		Set("successor_used = true").
		Set("prev_sealed = CASE WHEN "+passed+" THEN NULL ELSE prev_sealed END", arg).
		WherePK().
		Where("access_hash = ?", sess.AccessHash).
		Returning("last_used_at, successor_used").
		Exec(ctx)
	if isNoRows(err) {
		return nil // rotated meanwhile; this request still saw a valid token
	}
	return err
}

// Logout ends the session that token belongs to, recording SIGNED_OUT: its access token, or any
// refresh token that would still refresh (the current one, or one a retry
// may still present, see Refresh), so that a client which lost a refresh
// response can still log out. A superseded refresh token past that is a
// replay, as it is for Refresh: the session is revoked all the same and the
// answer says so. The session is over when it returns nil or
// REFRESH_TOKEN_REUSED (a browser client's cookie may go), and not otherwise.
// Errors: UNAUTHENTICATED, TOKEN_EXPIRED, REFRESH_TOKEN_REUSED,
// SERVICE_UNAVAILABLE.
func (s *Service) Logout(ctx context.Context, token string) error {
	if !wellFormed(token) {
		return errUnauthenticated
	}
	var outcome *Error
	ended, err := s.runAnnounced(ctx, func(ctx context.Context, tx bun.Tx, a *announcement) error {
		row, role, old, err := s.lockByToken(ctx, tx, hashToken(token), true)
		if err != nil {
			return err
		}
		if role == unknownToken {
			outcome = errUnauthenticated
			return nil
		}
		sess := &row.Session
		switch {
		case role != currentAccess:
			outcome = s.judgeRefresh(row, old)
		case sess.RevokedAt != nil:
			outcome = errUnauthenticated
			if a.quiet && row.DBNow.Sub(*sess.RevokedAt) < cacheTTL {
				// Perhaps a retry of a logout whose instance died
				// before it announced the end: announce it again.
				a.sessions = append(a.sessions, sess.ID)
			}
		case !row.DBNow.Before(sess.AccessExpiresAt):
			outcome = errAccessExpired
		}
		if outcome == nil || outcome == errRefreshReused {
			noteSubject(ctx, sess) // for the request log
		}
		switch outcome {
		case nil:
			if err := s.revokeSession(ctx, tx, sess.ID); err != nil {
				return err
			}
			return s.recordEvent(ctx, tx, sessionEvent(EventSignedOut, sess, &sess.ID))
		case errRefreshReused:
			return s.replayed(ctx, tx, sess)
		}
		return nil
	})
	if err != nil {
		return dbError(err)
	}
	if err := s.announce(ctx, ended); err != nil {
		return err
	}
	if outcome != nil {
		return outcome // REFRESH_TOKEN_REUSED: the session is over all the same
	}
	return nil
}

// isLive is the condition for a session that still works: not ended and its
// refresh token not expired.
func (s *Service) isLive() string {
	return "revoked_at IS NULL AND refresh_expires_at > " + s.dialect.Now
}

// Sessions lists the live sessions of who's user, most recently used first.
// Errors: SERVICE_UNAVAILABLE.
func (s *Service) Sessions(ctx context.Context, who *Identity) ([]*models.Session, error) {
	var sessions []*models.Session
	err := s.db.NewSelect().Model(&sessions).
		Where("user_id = ?", who.User.ID).
		Where(s.isLive()).
		Order("last_used_at DESC", "created_at DESC", "id").
		Scan(ctx)
	if err != nil {
		return nil, dbError(err)
	}
	return sessions, nil
}

// RevokeSession ends one of who's user's live sessions (the current one too)
// and records SESSION_REVOKED by the caller's session.
// Errors: NOT_FOUND when id is not one of them, SERVICE_UNAVAILABLE.
func (s *Service) RevokeSession(ctx context.Context, who *Identity, id string) error {
	id, ok := canonicalID(id)
	if !ok {
		return errSessionNotFound
	}
	var outcome *Error
	changed, err := s.runAnnounced(ctx, func(ctx context.Context, tx bun.Tx, a *announcement) error {
		ended := new(models.Session)
		err := tx.NewUpdate().Model(ended).
			Set("revoked_at = "+s.dialect.Now).
			Where("id = ? AND user_id = ?", id, who.User.ID).
			Where(s.isLive()).
			Returning("id, user_id, device_name").
			Scan(ctx)
		if isNoRows(err) {
			outcome = errSessionNotFound
			if !a.quiet {
				return nil
			}
			// Perhaps a retry of a revocation whose instance died before
			// it announced the end: announce it again.
			since, arg := s.dialect.NowMinus(cacheTTL)
			n, err := tx.NewSelect().Model((*models.Session)(nil)).
				Where("id = ? AND user_id = ?", id, who.User.ID).
				Where("revoked_at > "+since, arg).
				Count(ctx)
			if n > 0 {
				a.sessions = append(a.sessions, id)
			}
			return err
		}
		if err != nil {
			return err
		}
		a.sessions = append(a.sessions, ended.ID)
		return s.recordEvent(ctx, tx, sessionEvent(EventSessionRevoked, ended, &who.Session.ID))
	})
	if err != nil {
		return dbError(err)
	}
	if err := s.announce(ctx, changed); err != nil {
		return err
	}
	if outcome != nil {
		return outcome
	}
	return nil
}

// RevokeOtherSessions ends every live session of who's user but the current
// one, recording OTHER_SESSIONS_REVOKED by the caller's session for each
// (none when there was none), and returns how many it ended.
// Errors: SERVICE_UNAVAILABLE.
func (s *Service) RevokeOtherSessions(ctx context.Context, who *Identity) (int, error) {
	var n int
	changed, err := s.runAnnounced(ctx, func(ctx context.Context, tx bun.Tx, a *announcement) error {
		// The user's row first, as every change of several sessions does
		// (see lockUser).
		q := tx.NewSelect().Model((*models.User)(nil)).Column("id").Where("id = ?", who.User.ID)
		var id string
		if err := s.lockUser(q, "NO KEY UPDATE").Scan(ctx, &id); err != nil {
			if isNoRows(err) {
				return errUnauthenticated // deleted meanwhile
			}
			return err
		}
		ended, err := s.revokeOthers(ctx, tx, who)
		n = len(ended)
		if err != nil {
			return err
		}
		return s.recordEvents(ctx, tx, endedEvents(EventOtherSessionsRevoked, who.User.ID, ended, &who.Session.ID))
	})
	if err != nil {
		return 0, dbError(err)
	}
	return n, s.announce(ctx, changed)
}

// revokeOthers ends every live session of who's user but the current one
// and returns them (endedColumns).
func (s *Service) revokeOthers(ctx context.Context, db bun.IDB, who *Identity) ([]models.Session, error) {
	var ended []models.Session
	_, err := db.NewUpdate().Model((*models.Session)(nil)).
		Set("revoked_at = "+s.dialect.Now).
		Where("user_id = ? AND id <> ?", who.User.ID, who.Session.ID).
		Where(s.isLive()).
		Returning(endedColumns).
		Exec(ctx, &ended)
	if a := announcementOf(ctx); a != nil && err == nil {
		for _, e := range ended {
			a.sessions = append(a.sessions, e.ID)
		}
	}
	return ended, err
}

// ChangePassword replaces who's password and ends all their other sessions,
// in one transaction that records PASSWORD_CHANGED and SESSION_REVOKED for
// each session it ended, all by the caller's session. A wrong current
// password records SIGN_IN_FAILED by the caller's session, a refusal
// SIGN_IN_RATE_LIMITED. A check of the current password is counted like a
// login's, on the same per-email key and before any hashing, so an access
// token is no oracle for more guesses than login allows. The user's device
// proofs go too: they proved the old password.
// Errors: INVALID_CREDENTIALS (wrong current password), RATE_LIMITED (too
// many failed password checks for the account; retryAfterSeconds),
// BAD_USER_INPUT, SERVICE_UNAVAILABLE.
func (s *Service) ChangePassword(ctx context.Context, who *Identity, current, next string) error {
	if utf8.RuneCountInString(current) > maxPasswordLen {
		return errInvalidCredentials
	}
	if err := checkPassword(next); err != nil {
		return err
	}
	held, err := s.proveAgain(ctx, who, current)
	if err != nil {
		return err
	}
	hash, err := s.hash(ctx, next)
	if err != nil {
		s.release(ctx, held)
		return dbError(err)
	}
	changed, err := s.runAnnounced(ctx, func(ctx context.Context, tx bun.Tx, a *announcement) error {
		// Compare-and-set on the old hash: of two concurrent changes made
		// with the same current password, one wins and the other is told
		// its current password is wrong (it is, by then). The update locks
		// the user's row, which a login's sign-in waits for (see signIn).
		res, err := tx.NewUpdate().Model((*models.User)(nil)).
			Set("password_hash = ?", hash).
			Where("id = ? AND password_hash = ?", who.User.ID, who.User.PasswordHash).
			Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errInvalidCredentials
		}
		a.users = append(a.users, who.User.ID)
		ended, err := s.revokeOthers(ctx, tx, who)
		if err != nil {
			return err
		}
		if err := s.deleteUserDevices(ctx, tx, who.User.ID); err != nil {
			return err
		}
		by := &who.Session.ID
		events := append([]Event{{Kind: EventPasswordChanged, UserID: who.User.ID, BySessionID: by}},
			endedEvents(EventSessionRevoked, who.User.ID, ended, by)...)
		return s.recordEvents(ctx, tx, events)
	})
	if err != nil {
		// Losing the compare-and-set is a failure: the current password
		// given is not the password any more.
		s.settleProof(ctx, who, held, err)
		return dbError(err)
	}
	s.release(ctx, held)
	return s.announce(ctx, changed)
}

// RevokeUserSessions ends every session of the user with email, for incident
// response, recording SESSION_REVOKED (by no session) for each, and returns
// how many were live.
// Errors: NOT_FOUND when no user has that email, SERVICE_UNAVAILABLE.
func (s *Service) RevokeUserSessions(ctx context.Context, email string) (int, error) {
	var n int
	changed, err := s.runAnnounced(ctx, func(ctx context.Context, tx bun.Tx, a *announcement) error {
		user := new(models.User)
		err := s.lockUser(tx.NewSelect().Model(user).Column("id").Where("email_key = ?", emailKey(email)), "NO KEY UPDATE").Scan(ctx)
		if isNoRows(err) {
			return &Error{Code: CodeNotFound, Message: "no user has that email"}
		}
		if err != nil {
			return err
		}
		var ended []models.Session
		_, err = tx.NewUpdate().Model((*models.Session)(nil)).
			Set("revoked_at = "+s.dialect.Now).
			Where("user_id = ?", user.ID).Where(s.isLive()).
			Returning(endedColumns).
			Exec(ctx, &ended)
		if err != nil {
			return err
		}
		n = len(ended)
		for _, e := range ended {
			a.sessions = append(a.sessions, e.ID)
		}
		return s.recordEvents(ctx, tx, endedEvents(EventSessionRevoked, user.ID, ended, nil))
	})
	if err != nil {
		return 0, dbError(err)
	}
	return n, s.announce(ctx, changed)
}
