package auth

import (
	"context"
	"unicode/utf8"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// Proving the password again on a signed-in session: reauthenticate,
// deleteMyAccount and changePassword. Each check is counted like a login's,
// on the account's per-email key and before any hashing, so an access token
// is no oracle for more guesses than login allows.

// proveAgain checks password against who's account. A wrong one records
// SIGN_IN_FAILED by who's session, a refusal SIGN_IN_RATE_LIMITED. On
// success the caller holds the returned place and settles it with
// settleProof once its change has committed or failed.
// Errors: INVALID_CREDENTIALS, RATE_LIMITED (retryAfterSeconds),
// SERVICE_UNAVAILABLE.
func (s *Service) proveAgain(ctx context.Context, who *Identity, password string) (*reservation, error) {
	if utf8.RuneCountInString(password) > maxPasswordLen {
		return nil, errInvalidCredentials
	}
	limited := &Event{Kind: EventSignInRateLimited, UserID: who.User.ID, BySessionID: &who.Session.ID}
	held, err := s.reserveOr(ctx, []limit{s.emailLimit(who.User.EmailKey)}, errLoginLimited, limited)
	if err != nil {
		return nil, err
	}
	ok, err := s.verify(ctx, password, who.User.PasswordHash)
	if err != nil {
		s.release(ctx, held)
		return nil, dbError(err)
	}
	if !ok {
		s.failWith(ctx, held, failedProof(who))
		return nil, errInvalidCredentials
	}
	return held, nil
}

func failedProof(who *Identity) Event {
	return Event{Kind: EventSignInFailed, UserID: who.User.ID, BySessionID: &who.Session.ID}
}

// settleProof settles a proof's place after its change failed with err:
// INVALID_CREDENTIALS (the password changed meanwhile, so what was proven is
// not the password any more) is a failure, anything else is not.
func (s *Service) settleProof(ctx context.Context, who *Identity, held *reservation, err error) {
	if ErrorCode(err) == CodeInvalidCredentials {
		s.failWith(ctx, held, failedProof(who))
		return
	}
	s.release(ctx, held)
}

// lockProven locks who's user row until tx ends (with lock, a PostgreSQL
// row-lock strength) and checks that the password hash proven is still the
// stored one: a concurrent changePassword either committed before (then
// INVALID_CREDENTIALS) or waits for tx. UNAUTHENTICATED when the account is
// gone.
func (s *Service) lockProven(ctx context.Context, tx bun.Tx, who *Identity, lock string) error {
	var stored string
	err := s.lockUser(tx.NewSelect().Model((*models.User)(nil)).Column("password_hash").Where("id = ?", who.User.ID), lock).Scan(ctx, &stored)
	switch {
	case isNoRows(err):
		return errUnauthenticated
	case err != nil:
		return err
	case stored != who.User.PasswordHash:
		return errInvalidCredentials
	}
	return nil
}

// Reauthenticate proves the password again on who's current session: it
// moves the session's authenticatedAt to the database's now, records
// REAUTHENTICATED, and returns the session. Later fields of the same request
// see the new proof too; other requests read it from the database (see
// RequireRecentPassword).
// Errors: INVALID_CREDENTIALS, RATE_LIMITED (retryAfterSeconds),
// UNAUTHENTICATED (the session ended meanwhile), SERVICE_UNAVAILABLE.
func (s *Service) Reauthenticate(ctx context.Context, who *Identity, password string) (*models.Session, error) {
	held, err := s.proveAgain(ctx, who, password)
	if err != nil {
		return nil, err
	}
	sess := new(models.Session)
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// FOR SHARE: holds off a password change, not other readers.
		if err := s.lockProven(ctx, tx, who, "SHARE"); err != nil {
			return err
		}
		err := tx.NewUpdate().Model(sess).
			Set("authenticated_at = "+s.dialect.Now).
			Where("id = ?", who.Session.ID).
			Where(s.isLive()).
			Returning("*").
			Scan(ctx)
		if isNoRows(err) {
			return errUnauthenticated
		}
		if err != nil {
			return err
		}
		return s.recordEvent(ctx, tx, sessionEvent(EventReauthenticated, sess, &sess.ID))
	})
	if err != nil {
		s.settleProof(ctx, who, held, err)
		return nil, dbError(err)
	}
	s.release(ctx, held)
	who.Session.AuthenticatedAt = sess.AuthenticatedAt // this request's copy
	return sess, nil
}

// DeleteMyAccount proves the password again and then, in one transaction,
// deletes who's account with everything of it: its sessions (so every
// instance stops accepting their tokens: the call waits until every
// instance has applied the deletion), retired tokens, security
// events, device proofs and per-email throttle counter. It queues
// EventAccountDeleted for the handlers, with the user's id and nothing
// else of theirs; the email may sign up again at once.
// Errors: INVALID_CREDENTIALS, RATE_LIMITED (retryAfterSeconds),
// UNAUTHENTICATED (deleted meanwhile), SERVICE_UNAVAILABLE.
func (s *Service) DeleteMyAccount(ctx context.Context, who *Identity, password string) error {
	held, err := s.proveAgain(ctx, who, password)
	if err != nil {
		return err
	}
	id := who.User.ID
	changed, err := s.runAnnounced(ctx, func(ctx context.Context, tx bun.Tx, a *announcement) error {
		a.users = append(a.users, id) // its sessions and record go
		// NO KEY UPDATE, not UPDATE: a logout or revocation holding one of
		// the user's sessions takes a key-share lock on the user to insert
		// its event, and must get it, or the two would deadlock; the
		// sessions' delete below then waits for it to commit.
		if err := s.lockProven(ctx, tx, who, "NO KEY UPDATE"); err != nil {
			return err
		}
		for _, del := range []*bun.DeleteQuery{
			tx.NewDelete().Model((*models.Session)(nil)).Where("user_id = ?", id), // retired tokens cascade
			tx.NewDelete().Model((*models.SecurityEvent)(nil)).Where("user_id = ?", id),
			tx.NewDelete().Model((*models.DeviceToken)(nil)).Where("user_id = ?", id),
			tx.NewDelete().Model((*models.LoginThrottle)(nil)).Where("key = ?", emailThrottleKey(who.User.EmailKey)),
			tx.NewDelete().Model((*models.User)(nil)).Where("id = ?", id),
		} {
			if _, err := del.Exec(ctx); err != nil {
				return err
			}
		}
		return s.recordEvent(ctx, tx, Event{Kind: EventAccountDeleted, UserID: id})
	})
	if err != nil {
		s.settleProof(ctx, who, held, err)
		return dbError(err)
	}
	// The place was on the counter just deleted: nothing to settle.
	return s.announce(ctx, changed)
}

// lockUser has q, a select of one user's row, lock it with lock (a
// PostgreSQL row-lock strength) until its transaction ends. SQLite's
// transactions hold the whole file: there it changes nothing.
//
// Lock order, so that no two transactions wait for each other: one that
// changes several sessions of a user (deleteMyAccount, revokeOtherSessions,
// changePassword, revoke-sessions, a sign-in under MAX_SESSIONS_PER_USER)
// first takes the user's row FOR NO KEY UPDATE (changePassword by updating
// it), which serialises them per user. One that changes a single session
// (logout, revokeSession, renameSession, a replay, reauthenticate's
// update) locks that session and then only key-shares the user's row to
// insert its event (the foreign key), which NO KEY UPDATE does not block:
// so never lock a user's row FOR UPDATE while its sessions may be locked.
func (s *Service) lockUser(q *bun.SelectQuery, lock string) *bun.SelectQuery {
	return s.dialect.For(q, lock)
}
