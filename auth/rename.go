package auth

import (
	"context"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// RenameSession sets the device name of one of who's user's live sessions
// (the current one too) and returns the session as it now is. The name is
// stored trimmed. It records SESSION_RENAMED, with the new name, by the
// caller's session.
// Errors: BAD_USER_INPUT when deviceName is empty after trimming or longer
// than 100 characters, NOT_FOUND when id is not one of the user's live
// sessions (malformed ids too), SERVICE_UNAVAILABLE.
func (s *Service) RenameSession(ctx context.Context, who *Identity, id, deviceName string) (*models.Session, error) {
	name, err := checkDeviceName(&deviceName)
	if err != nil {
		return nil, err
	}
	if name == nil {
		return nil, badInput("the device name must not be empty")
	}
	id, ok := canonicalID(id)
	if !ok {
		return nil, errSessionNotFound
	}
	sess := new(models.Session)
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		err := tx.NewUpdate().Model(sess).
			Set("device_name = ?", *name).
			Where("id = ? AND user_id = ?", id, who.User.ID).
			Where(s.isLive()).
			Returning("*").
			Scan(ctx)
		if isNoRows(err) {
			return errSessionNotFound
		}
		if err != nil {
			return err
		}
		return s.recordEvent(ctx, tx, sessionEvent(EventSessionRenamed, sess, &who.Session.ID))
	})
	if err != nil {
		return nil, dbError(err)
	}
	return sess, nil
}

// canonicalID returns id in the form the database stores, or false when it
// is not a UUID. uuid.Validate alone is not enough: it accepts a "urn:uuid:"
// prefix, which PostgreSQL's uuid type refuses with an error (an INTERNAL for
// the client) instead of matching nothing.
func canonicalID(id string) (string, bool) {
	u, err := uuid.Parse(id)
	if err != nil {
		return "", false
	}
	return u.String(), true
}
