package auth

import (
	"context"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// Device proofs keep a stranger from locking an owner out of their account.
// The per-email limit stops guessing, but anyone who knows an email can
// exhaust it, and then even the right password answers RATE_LIMITED (ASVS
// 5.0 V6.1.1). The design is OWASP's "device cookies":
//
//   - A device that proves the password (signUp, login) gets a device proof:
//     a random token (the same 256-character kind as the session tokens),
//     bound to that user, stored only as its SHA-256, lasting DeviceTokenTTL.
//     Mobile and API clients get it as AuthPayload.deviceToken and send it
//     back on login as the header X-Device-Token; browsers (X-Token-Transport:
//     cookie) get it as the HttpOnly cookie __Host-device_token, which they
//     send by themselves. The transport (internal/api/cookies) carries it
//     both ways: Login takes it as Credentials.DeviceProof, and sign-in
//     returns the new one as Issued.DeviceToken.
//   - A login that presents a live proof of the account it names is counted
//     on that proof alone: it is exempt from the per-email and per-address
//     lockouts (the proof is bound to one user, so it cannot help spraying),
//     and limited on its own to LOGIN_MAX_FAILURES per window. A proof that
//     reaches the limit is deleted: its device is a stranger again.
//   - A proof that is unknown, expired, deleted, of another user, or out of
//     attempts is ignored, never refused: the login goes the way of any new
//     device, and the answer says nothing about the proof.
//   - Each successful login replaces the proof it presented with a new one,
//     so a stolen copy dies the next time the owner signs in; changePassword
//     deletes all of the user's proofs (they proved the old password). A
//     user keeps the newest maxDeviceProofs proofs: a client that never
//     sends its proof back cannot pile them up.
//
// So an attacker without the password gets at most LOGIN_MAX_FAILURES
// guesses per window per account from unknown devices, plus as many per
// window per proof they managed to steal, while the owner keeps signing in
// from every device they already used.

// reserveDevice counts one attempt on the device proof token of user, in one
// statement that counts and answers like reserve's. It returns nil when the
// token is not a live proof of user's device with attempts left: the login
// is then counted like any other, as it is when token could not be a proof
// at all ("" for none).
func (s *Service) reserveDevice(ctx context.Context, token, userID string) (*reservation, error) {
	if !wellFormed(token) || s.cfg.Throttle.DeviceTokenTTL <= 0 {
		return nil, nil
	}
	if userID == "" {
		// An unknown email runs the same query, matching nothing, so that
		// its answer takes as long as a known email's.
		userID = uuid.Nil.String()
	}
	h := hashToken(token)
	cutoff, arg := s.dialect.NowMinus(s.cfg.Throttle.Window)
	expired := "window_start <= " + cutoff
	row := new(models.DeviceToken)
	q := s.db.NewUpdate().Model(row).
		Set("failures = CASE WHEN "+expired+" THEN 1 ELSE failures + 1 END", arg).
		Set("window_start = CASE WHEN "+expired+" THEN "+s.dialect.Now+" ELSE window_start END", arg).
		Where("token_hash = ? AND user_id = ?", h, userID).
		Where("expires_at > " + s.dialect.Now).
		Returning("window_start")
	if m := s.cfg.Throttle.MaxFailures; m > 0 {
		q = q.Where("("+expired+" OR failures < ?)", arg, m)
	}
	res, err := q.Exec(ctx)
	if err != nil {
		return nil, dbError(err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return nil, dbError(err) // nil, nil when no live proof had room
	}
	return &reservation{slots: []slot{{device: h, windowStart: row.WindowStart}}}, nil
}

// failDevice keeps a wrong password's failure on the device proof h and
// deletes the proof once it has no attempts left.
func (s *Service) failDevice(ctx context.Context, db bun.IDB, h []byte) error {
	m := s.cfg.Throttle.MaxFailures
	if m <= 0 {
		return nil
	}
	_, err := db.NewDelete().Model((*models.DeviceToken)(nil)).
		Where("token_hash = ? AND failures >= ?", h, m).
		Exec(ctx)
	return err
}

// issueDevice gives user's device a new proof, replacing the one it proved
// the password with (replace, when it did), and returns the token; "" when
// device proofs are off.
func (s *Service) issueDevice(ctx context.Context, db bun.IDB, userID string, replace *reservation) (string, error) {
	if replace != nil {
		for _, sl := range replace.slots {
			if sl.device == nil {
				continue
			}
			_, err := db.NewDelete().Model((*models.DeviceToken)(nil)).
				Where("token_hash = ? AND user_id = ?", sl.device, userID).Exec(ctx)
			if err != nil {
				return "", err
			}
		}
	}
	ttl := s.cfg.Throttle.DeviceTokenTTL
	if ttl <= 0 {
		return "", nil
	}
	token := newToken()
	h := hashToken(token)
	expires, arg := s.dialect.NowPlus(ttl)
	_, err := db.NewInsert().Model(&models.DeviceToken{TokenHash: h, UserID: userID}).
		Value("created_at", s.dialect.Now).
		Value("window_start", s.dialect.Now).
		Value("expires_at", expires, arg).
		Exec(ctx)
	if err != nil {
		return "", err
	}
	// A client that never sends its proof back gets a new one at every
	// login: keep the user's newest only, so they cannot pile up for
	// DeviceTokenTTL. signIn holds the user's row, so this cannot race.
	newest := db.NewSelect().Model((*models.DeviceToken)(nil)).Column("token_hash").
		Where("user_id = ? AND token_hash <> ?", userID, h).
		Order("created_at DESC", "token_hash").
		Limit(maxDeviceProofs - 1)
	_, err = db.NewDelete().Model((*models.DeviceToken)(nil)).
		Where("user_id = ? AND token_hash <> ?", userID, h).
		Where("token_hash NOT IN (?)", newest).
		Exec(ctx)
	if err != nil {
		return "", err
	}
	return token, nil
}

// maxDeviceProofs is how many device proofs one user keeps; a new one ends
// the oldest beyond it.
const maxDeviceProofs = 20

// deleteUserDevices deletes every device proof of user.
func (s *Service) deleteUserDevices(ctx context.Context, db bun.IDB, userID string) error {
	_, err := db.NewDelete().Model((*models.DeviceToken)(nil)).Where("user_id = ?", userID).Exec(ctx)
	return err
}

// deleteExpiredDevices removes expired device proofs, at most batch, and
// returns how many it removed.
func (s *Service) deleteExpiredDevices(ctx context.Context, db bun.IDB, batch int) (int, error) {
	expired := db.NewSelect().Model((*models.DeviceToken)(nil)).Column("token_hash").
		Where("expires_at <= " + s.dialect.Now).
		Limit(int64(batch)).Apply(s.dialect.ForUpdateSkipLocked)
	res, err := db.NewDelete().Model((*models.DeviceToken)(nil)).Where("token_hash IN (?)", expired).Exec(ctx)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
