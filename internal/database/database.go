// Package database is everything that differs between the two databases the
// service runs on: PostgreSQL, for production and several instances, and an
// embedded SQLite file, for development with nothing installed. It opens
// either from a DATABASE_URL (this file) and gives the domain the few SQL
// fragments that are spelled differently on each (dialect.go). The schema of
// each lives in its own directory of package migrations.
package database

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	_ "modernc.org/sqlite" // registers the pure-Go (no cgo) "sqlite" database/sql driver
)

// Backend names a kind of database.
type Backend string

// The backends, as TEST_BACKEND and log lines name them.
const (
	Postgres Backend = "postgres"
	SQLite   Backend = "sqlite"
)

// DefaultSQLiteFile is where the data lives when DATABASE_URL is not set:
// this file in the working directory.
const DefaultSQLiteFile = "sessionauth.db"

// Source is a parsed DATABASE_URL.
type Source struct {
	Backend Backend
	// URL is the PostgreSQL URL as given.
	URL string
	// Path is the SQLite file, absolute.
	Path string
}

// String describes s for a log line: the PostgreSQL URL without its
// password, or the SQLite file's path.
func (s Source) String() string {
	if s.Backend == SQLite {
		return s.Path
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	return u.Redacted()
}

// Parse reads a DATABASE_URL:
//
//   - "" is the SQLite file DefaultSQLiteFile in the working directory;
//   - postgres://… or postgresql://… is PostgreSQL, passed to pgx as it is;
//   - sqlite:///absolute/path.db or sqlite:relative/path.db is a SQLite file
//     (a relative path is resolved against the working directory now), taken
//     literally: no %-escapes, no query parameters.
func Parse(raw string) (Source, error) {
	if raw == "" {
		return sqliteSource(DefaultSQLiteFile)
	}
	scheme, rest, _ := strings.Cut(raw, ":")
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		if _, err := url.Parse(raw); err != nil {
			return Source{}, fmt.Errorf("not a valid PostgreSQL URL: %w", errors.Unwrap(err))
		}
		return Source{Backend: Postgres, URL: raw}, nil
	case "sqlite":
		if after, ok := strings.CutPrefix(rest, "//"); ok {
			if !strings.HasPrefix(after, "/") {
				return Source{}, errors.New("sqlite://host/… is not supported: use sqlite:///absolute/path.db or sqlite:relative/path.db")
			}
			rest = after
		}
		if rest == "" || strings.ContainsAny(rest, "?#") {
			return Source{}, errors.New("want sqlite:///absolute/path.db or sqlite:relative/path.db (no query parameters)")
		}
		return sqliteSource(rest)
	}
	return Source{}, errors.New("want postgres://… (PostgreSQL) or sqlite:path (an embedded SQLite file), or nothing for ./" + DefaultSQLiteFile)
}

func sqliteSource(path string) (Source, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Source{}, err
	}
	if strings.ContainsRune(abs, '?') {
		// The driver would take what follows for its parameters.
		return Source{}, fmt.Errorf("the SQLite file's path %q contains a '?'", abs)
	}
	return Source{Backend: SQLite, Path: abs}, nil
}

// Open returns a pool over src; it does not connect yet.
func Open(src Source) (*bun.DB, error) {
	switch src.Backend {
	case Postgres:
		// A connection attempt gives up after 5 s unless the URL sets its
		// own connect_timeout, so an unreachable database fails work
		// instead of holding it.
		connCfg, err := pgx.ParseConfig(src.URL) // its errors never show the password
		if err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		if connCfg.ConnectTimeout == 0 {
			connCfg.ConnectTimeout = 5 * time.Second
		}
		if _, ok := connCfg.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
			// A transaction whose client vanished without a word (a
			// network partition, a killed host) would otherwise keep its
			// row locks until TCP keepalive notices, hours later by
			// default: the session it locked could not refresh meanwhile.
			// No request's transaction legitimately idles this long.
			connCfg.RuntimeParams["idle_in_transaction_session_timeout"] = "15s"
		}
		if !strings.Contains(src.URL, "default_query_exec_mode") {
			// bun writes every value into the SQL text, so no two queries
			// are alike and pgx's default (prepare each query and keep the
			// last 512 per connection) never hits: it costs an extra round
			// trip per query and holds dead statements here and in
			// PostgreSQL. Send each query unprepared, in one round trip.
			connCfg.DefaultQueryExecMode = pgx.QueryExecModeExec
		}
		sqldb := stdlib.OpenDB(*connCfg)
		sqldb.SetMaxOpenConns(20)
		sqldb.SetMaxIdleConns(20)
		sqldb.SetConnMaxIdleTime(5 * time.Minute)
		// Renew connections now and then, so that the pool follows the
		// database to a new address after a failover. (A connection that
		// broke meanwhile is found out by pgx, which pings a connection idle
		// for over a second before handing it out again.)
		sqldb.SetConnMaxLifetime(30 * time.Minute)
		return bun.NewDB(sqldb, pgdialect.New()), nil
	case SQLite:
		sqldb, err := sql.Open("sqlite", src.Path+sqliteParams)
		if err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		// One connection: the process's statements and transactions queue
		// in Go for it, so a transaction is never interleaved with another
		// and never has to wait on the file lock for one of its own.
		sqldb.SetMaxOpenConns(1)
		sqldb.SetMaxIdleConns(1)
		sqldb.SetConnMaxIdleTime(0)
		return bun.NewDB(sqldb, sqliteDialect{sqlitedialect.New()}), nil
	}
	return nil, fmt.Errorf("database: unknown backend %q", src.Backend)
}

// sqliteParams are modernc.org/sqlite's connection settings:
//
//   - _txlock=immediate: every transaction takes the write lock when it
//     begins, before it reads. That is what PostgreSQL's SELECT … FOR UPDATE
//     gives the domain: a refresh reads and rewrites its session with no other
//     writer in between, even from another process on the same file (the
//     revoke-sessions command, a second server by mistake).
//   - _busy_timeout: wait for such a writer rather than fail at once.
//   - _foreign_keys: SQLite leaves them off otherwise; ON DELETE CASCADE
//     needs them.
//   - WAL: readers and the writer do not block each other.
const sqliteParams = "?_txlock=immediate&_busy_timeout=10000&_foreign_keys=1&_journal_mode=WAL&_synchronous=NORMAL"
