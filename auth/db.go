package auth

import (
	"errors"

	"github.com/example/sessionauth/internal/database"
)

// What differs between PostgreSQL and SQLite comes from package database,
// never spelt here: the SQL (the database's clock, interval arithmetic, row
// locks, a prepared lookup) from s.dialect, a database.Dialect, and the
// notifications between instances (database.Listen, s.dialect.Notify),
// which only PostgreSQL has (s.dialect.CanListen). Validity is decided
// against the database's clock, s.dialect.Now, which every instance shares.

// errUnavailable is what clients see when the database cannot be reached.
var errUnavailable = &Error{Code: CodeServiceUnavailable, Message: "the service is temporarily unavailable; retry shortly"}

// dbError classifies a database error: connection failures and timeouts
// become SERVICE_UNAVAILABLE (the client may retry; nothing was half-written
// because every multi-row change runs in one transaction), anything else
// stays internal and is logged by the error presenter.
func dbError(err error) error {
	var e *Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	if database.IsUnavailable(err) {
		return &Error{Code: errUnavailable.Code, Message: errUnavailable.Message, Err: err}
	}
	return err
}

// isUniqueViolation reports whether err is a unique-constraint violation.
func isUniqueViolation(err error) bool { return database.IsUniqueViolation(err) }
