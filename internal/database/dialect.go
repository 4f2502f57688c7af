package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect holds the SQL that is spelled differently on each backend, and
// what one backend can do and the other cannot (notifications, notify.go;
// prepared statements, QueryPrepared). Queries use it instead of naming
// now(), intervals or row locks themselves, so they read the same on both.
//
// The clock: validity is decided against the database's clock, Now, never
// the server's. On PostgreSQL that is now(), which every instance shares and
// which stays fixed for a whole transaction. On SQLite it is the clock of
// the machine holding the file, read by SQLite, fixed within one statement
// only: a transaction that needs one instant throughout reads Now once and
// passes the value on.
//
// Row locks: on PostgreSQL, ForUpdate locks the rows read. SQLite has no row
// locks and needs none: every transaction holds the whole database's write
// lock from its BEGIN (see sqliteParams), which serialises at least as much.
type Dialect struct {
	// Now is an SQL expression for the database's clock, with no
	// placeholders.
	Now    string
	sqlite bool
}

// DialectOf returns the dialect of db's backend.
func DialectOf(db bun.IDB) Dialect {
	if db.Dialect().Name() == dialect.SQLite {
		return Dialect{Now: sqliteClock("'now'"), sqlite: true}
	}
	return Dialect{Now: "now()"}
}

// NowPlus returns an SQL expression for the database's now plus d, with one
// placeholder, and its argument. PostgreSQL keeps microseconds (the
// resolution of timestamptz); SQLite milliseconds, the resolution of its
// clock.
func (d Dialect) NowPlus(dur time.Duration) (string, any) {
	if d.sqlite {
		return sqliteClock("'now', ?"), fmt.Sprintf("%+.3f seconds", dur.Seconds())
	}
	return "now() + ? * interval '1 microsecond'", dur.Microseconds()
}

// NowMinus is NowPlus(-dur).
func (d Dialect) NowMinus(dur time.Duration) (string, any) { return d.NowPlus(-dur) }

// SecondsSince returns an SQL expression for the seconds from the time in
// column (a trusted identifier) until the database's now, fractional.
func (d Dialect) SecondsSince(column string) string {
	if d.sqlite {
		return "((julianday('now') - julianday(" + column + ")) * 86400.0)"
	}
	return "extract(epoch FROM now() - " + column + ")"
}

// For locks the rows q reads with lock, a PostgreSQL row-lock strength
// ("UPDATE", "NO KEY UPDATE", "SHARE", "KEY SHARE"), until the transaction
// ends; on SQLite it returns q as it is (see Dialect).
func (d Dialect) For(q *bun.SelectQuery, lock string) *bun.SelectQuery {
	if d.sqlite {
		return q
	}
	return q.For(lock)
}

// ForUpdate locks the rows q reads until the transaction ends (see Dialect).
// Use it with SelectQuery.Apply.
func (d Dialect) ForUpdate(q *bun.SelectQuery) *bun.SelectQuery { return d.For(q, "UPDATE") }

// ForUpdateOf is ForUpdate for a query that joins other tables: it locks
// only the rows of the table with the given alias.
func (d Dialect) ForUpdateOf(alias string) func(*bun.SelectQuery) *bun.SelectQuery {
	return func(q *bun.SelectQuery) *bun.SelectQuery {
		if d.sqlite {
			return q
		}
		return q.For("UPDATE OF ?", bun.Ident(alias))
	}
}

// ForUpdateSkipLocked is ForUpdate, passing over rows another transaction
// has locked, for work that any instance may take.
func (d Dialect) ForUpdateSkipLocked(q *bun.SelectQuery) *bun.SelectQuery {
	if d.sqlite {
		return q
	}
	return q.For("UPDATE SKIP LOCKED")
}

// Offset skips the first n rows of q, which has no limit of its own: SQLite
// accepts OFFSET only after a LIMIT.
func (d Dialect) Offset(q *bun.SelectQuery, n int64) *bun.SelectQuery {
	if d.sqlite {
		q = q.Limit(math.MaxInt64) // no limit
	}
	return q.Offset(n)
}

// Placeholder returns the placeholder of the nth argument (from 1) of a
// query run with QueryPrepared, to write into its text with bun.Safe: bun
// leaves it be, and the driver binds the argument.
func (d Dialect) Placeholder(n int) bun.Safe {
	if d.sqlite {
		return bun.Safe("?" + strconv.Itoa(n))
	}
	return bun.Safe("$" + strconv.Itoa(n))
}

// QueryPrepared runs query on db's pool as it is, its arguments written with
// Placeholder, for a hot query whose text never changes: bun would write the
// values into the text, so that each run is a new statement for the
// database to parse and plan. On PostgreSQL it runs as a statement prepared
// once per pooled connection and reused, whatever the pool's default mode.
func (d Dialect) QueryPrepared(ctx context.Context, db *bun.DB, query string, args ...any) (*sql.Rows, error) {
	if !d.sqlite {
		args = append([]any{pgx.QueryExecModeCacheStatement}, args...)
	}
	return db.DB.QueryContext(ctx, query, args...)
}

// WritesInWith reports whether a WITH may hold an INSERT, UPDATE or
// DELETE (PostgreSQL), so that two writes can share one statement and one
// round trip; SQLite's WITH takes only a SELECT.
func (d Dialect) WritesInWith() bool { return !d.sqlite }

// After returns u preceded by ins in one statement where the backend
// allows it (a data-modifying WITH, which runs exactly once whether or not
// u refers to it, see WritesInWith), so that the pair costs one round
// trip; otherwise it executes ins and returns u unchanged. Errors: ins's,
// when executed.
func (d Dialect) After(ctx context.Context, ins *bun.InsertQuery, u *bun.UpdateQuery) (*bun.UpdateQuery, error) {
	if d.WritesInWith() {
		return u.With("_before", ins), nil
	}
	_, err := ins.Exec(ctx)
	return u, err
}

// QueryPreparedTx is QueryPrepared inside tx.
func (d Dialect) QueryPreparedTx(ctx context.Context, tx bun.Tx, query string, args ...any) (*sql.Rows, error) {
	if !d.sqlite {
		args = append([]any{pgx.QueryExecModeCacheStatement}, args...)
	}
	return tx.Tx.QueryContext(ctx, query, args...)
}

// IsUniqueViolation reports whether err is a unique-constraint violation.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		return liteErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || liteErr.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// IsUnavailable reports whether err means the database cannot serve now but
// may shortly: it is unreachable, shutting down, out of connections, or (on
// SQLite) its file cannot be opened or stayed locked past the busy timeout.
// A client may retry such a request.
func IsUnavailable(err error) bool {
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
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		switch liteErr.Code() & 0xff { // the primary result code
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL:
			return true
		}
		return false
	}
	return strings.Contains(err.Error(), "conn closed")
}

// SQLite keeps times as text in one fixed-width UTC layout, so that SQL
// compares them correctly as strings: every time bun writes (sqliteDialect)
// and every time SQLite's clock produces (sqliteClock) has exactly this form,
// e.g. "2026-11-23 12:00:05.123000+00:00". bun's own layout drops trailing
// zeros of the fraction, which would make "…05.1+00:00" and "…05.100+00:00"
// differ. The "+00:00" suffix is what bun and SQLite's date functions read
// back as UTC.
const sqliteTimeLayout = "2006-01-02 15:04:05.000000+00:00"

// sqliteClock returns SQLite's strftime over args (a time value and
// modifiers) in sqliteTimeLayout; %f is seconds with milliseconds.
func sqliteClock(args string) string {
	return "strftime('%Y-%m-%d %H:%M:%f000+00:00', " + args + ")"
}

// sqliteDialect is bun's SQLite dialect writing times in sqliteTimeLayout.
type sqliteDialect struct{ *sqlitedialect.Dialect }

func (sqliteDialect) AppendTime(b []byte, t time.Time) []byte {
	b = append(b, '\'')
	b = t.UTC().AppendFormat(b, sqliteTimeLayout)
	return append(b, '\'')
}
