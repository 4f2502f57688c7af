package auth

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Validity is decided against one clock that every instance shares, the
// database's: these expressions are the only place that clock is named.
const sqlNow = "now()"

// sqlNowPlus returns an SQL expression for the database's now plus d, and its
// argument. Microseconds keep it exact: timestamptz has that resolution.
func sqlNowPlus(d time.Duration) (string, int64) {
	return sqlNow + " + ? * interval '1 microsecond'", d.Microseconds()
}

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
	if isUnavailable(err) {
		return &Error{Code: errUnavailable.Code, Message: errUnavailable.Message, Err: err}
	}
	return err
}

func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.Timeout(err) {
		return true
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57P0x: the server is shutting
		// down or not yet accepting; 53300: too many connections.
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P") || pgErr.Code == "53300"
	}
	return strings.Contains(err.Error(), "conn closed")
}

// isUniqueViolation reports whether err is a unique-constraint violation.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}
