// Package models holds the bun models of the database tables. It has no
// queries: those live in the auth package.
package models

import (
	"time"

	"github.com/uptrace/bun"
)

// User is an account.
type User struct {
	bun.BaseModel `bun:"table:users"`

	ID string `bun:"id,pk"`
	// Email is the address as the user typed it (trimmed, NFC); EmailKey is its
	// comparison key (see auth/email.go), unique, used for every comparison.
	Email        string    `bun:"email,notnull"`
	EmailKey     string    `bun:"email_key,notnull,unique"`
	PasswordHash string    `bun:"password_hash,notnull"`
	CreatedAt    time.Time `bun:"created_at,notnull"`
}

// Session is one signed-in device. Its ID and CreatedAt never change; its
// token hashes and expiries change on every refresh.
type Session struct {
	bun.BaseModel `bun:"table:sessions"`

	ID         string    `bun:"id,pk"`
	UserID     string    `bun:"user_id,notnull"`
	DeviceName *string   `bun:"device_name"`
	UserAgent  *string   `bun:"user_agent"`
	IPAddress  *string   `bun:"ip_address"`
	CreatedAt  time.Time `bun:"created_at,notnull"`
	LastUsedAt time.Time `bun:"last_used_at,notnull"`

	// SHA-256 of the current tokens; the tokens themselves are never stored.
	AccessHash       []byte    `bun:"access_hash,notnull"`
	AccessExpiresAt  time.Time `bun:"access_expires_at,notnull"`
	RefreshHash      []byte    `bun:"refresh_hash,notnull"`
	RefreshExpiresAt time.Time `bun:"refresh_expires_at,notnull"`

	// The refresh token that the current pair replaced, kept so that a
	// retried refresh gets the same pair back. PrevSealed is the current pair
	// encrypted under a key derived from that previous refresh token, kept
	// only while a retry may ask for it (until the pair is used and the reuse
	// window has passed, see auth/token.go); the hash stays, for replays.
	PrevRefreshHash []byte     `bun:"prev_refresh_hash"`
	PrevRotatedAt   *time.Time `bun:"prev_rotated_at"`
	PrevSealed      []byte     `bun:"prev_sealed"`
	// SuccessorUsed is set once the current pair has been used (an access
	// token authenticated a request, or the refresh token was refreshed).
	SuccessorUsed bool `bun:"successor_used,notnull"`

	RevokedAt *time.Time `bun:"revoked_at"`

	// AuthenticatedAt is when the password was last proven on this
	// session: its sign-in, or a re-authentication.
	AuthenticatedAt time.Time `bun:"authenticated_at,notnull"`

	// ExpiryRecorded is set by housekeeping when it records SESSION_EXPIRED
	// for a session whose refresh token expired while it was live.
	ExpiryRecorded bool `bun:"expiry_recorded,notnull"`
}

// RetiredRefreshToken records a refresh token that was rotated away more than
// one generation ago. Presenting it again is a replay.
type RetiredRefreshToken struct {
	bun.BaseModel `bun:"table:retired_refresh_tokens"`

	TokenHash []byte    `bun:"token_hash,pk"`
	SessionID string    `bun:"session_id,notnull"`
	RetiredAt time.Time `bun:"retired_at,notnull"`
	// RotatedAt and Sealed are what the session row held as
	// PrevRotatedAt and PrevSealed for this token; Sealed only until the
	// reuse window of that rotation has passed, then nil.
	RotatedAt *time.Time `bun:"rotated_at"`
	Sealed    []byte     `bun:"sealed"`
}

// LoginThrottle counts failed password checks for one key (an email, a
// client address) in a fixed window that starts at the first attempt
// counted. The table signup_throttle has the same shape and counts sign-up
// attempts per client address.
type LoginThrottle struct {
	bun.BaseModel `bun:"table:login_throttle"`

	Key      string `bun:"key,pk"`
	Failures int    `bun:"failures,notnull"`
	// Pending counts attempts counted in the window whose password is
	// still being checked; Failures + Pending never exceeds the limit.
	Pending     int       `bun:"pending,notnull"`
	WindowStart time.Time `bun:"window_start,notnull"`
}

// DeviceToken is a device's proof that it signed in to the user's account
// with the password before: only the SHA-256 of the token the device holds.
// It exempts the device's logins from the per-email and per-address
// lockouts and counts its own failures, in a fixed window like
// LoginThrottle's.
type DeviceToken struct {
	bun.BaseModel `bun:"table:device_tokens"`

	TokenHash   []byte    `bun:"token_hash,pk"`
	UserID      string    `bun:"user_id,notnull"`
	CreatedAt   time.Time `bun:"created_at,notnull"`
	ExpiresAt   time.Time `bun:"expires_at,notnull"`
	Failures    int       `bun:"failures,notnull"`
	WindowStart time.Time `bun:"window_start,notnull"`
}

// SecurityEvent is something that happened to an account, recorded in the
// same transaction as the change. It is deleted with the account.
type SecurityEvent struct {
	bun.BaseModel `bun:"table:security_events"`

	ID     string    `bun:"id,pk"`
	UserID string    `bun:"user_id,notnull"`
	Kind   string    `bun:"kind,notnull"`
	At     time.Time `bun:"at,notnull"`
	// SessionID is the session the event concerns, BySessionID the
	// caller's session that caused it; neither is a foreign key, since an
	// event outlives its sessions.
	SessionID   *string `bun:"session_id"`
	DeviceName  *string `bun:"device_name"`
	IPAddress   *string `bun:"ip_address"`
	UserAgent   *string `bun:"user_agent"`
	BySessionID *string `bun:"by_session_id"`
}

// SecurityEventOutbox is one event waiting for one handler: inserted with
// the event, deleted once the handler has taken it. It holds ids only and
// is not tied to the user, so it survives the account's deletion.
type SecurityEventOutbox struct {
	bun.BaseModel `bun:"table:security_event_outbox"`

	ID          int64     `bun:"id,pk,autoincrement"`
	Handler     string    `bun:"handler,notnull"`
	EventID     string    `bun:"event_id,notnull"`
	UserID      string    `bun:"user_id,notnull"`
	Kind        string    `bun:"kind,notnull"`
	At          time.Time `bun:"at,notnull"`
	SessionID   *string   `bun:"session_id"`
	BySessionID *string   `bun:"by_session_id"`
	Attempts    int       `bun:"attempts,notnull"`
	// AvailableAt is when the row may next be claimed: at once, at the end
	// of a claim's lease, or after a failed attempt's backoff.
	AvailableAt time.Time `bun:"available_at,notnull"`
	Claim       *string   `bun:"claim"`
}
