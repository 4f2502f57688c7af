// Package database is everything that differs between the two databases the
// service runs on: PostgreSQL, for production and several instances, and an
// embedded SQLite file, for development with nothing installed. It opens
// either from a DATABASE_URL (this file), gives the domain the few SQL
// fragments that are spelled differently on each (dialect.go), and the
// notifications between instances that only PostgreSQL has (notify.go). The
// domain imports no driver and spells no backend's own SQL. The schema of
// each lives in its own directory of package migrations.
package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
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

// String describes s for a log line or an error: the SQLite file's path, or
// the PostgreSQL URL with every value that could be a secret replaced by
// "xxxxx": the userinfo password, and the value of every query parameter but
// the few known to be harmless (see shownParams), so that a password given
// as ?password=…, ?sslpassword=… or under a name pgx passes on to the server
// never reaches a log. The fragment is dropped.
func (s Source) String() string {
	if s.Backend == SQLite {
		return s.Path
	}
	return redactURL(s.URL)
}

const redacted = "xxxxx"

// shownParams are the PostgreSQL URL parameters whose values are shown in
// logs: settings, never credentials. Any other parameter, known to pgx or
// not, has its value hidden, so a new or misspelt secret stays hidden too.
// sslkey, sslcert and passfile name files, not secrets, but a name that says
// key or pass is hidden all the same: the rule is simpler to trust.
var shownParams = map[string]bool{
	"sslmode": true, "sslrootcert": true, "sslsni": true, "sslnegotiation": true,
	"connect_timeout": true, "application_name": true, "target_session_attrs": true,
	"default_query_exec_mode": true, "statement_cache_capacity": true, "description_cache_capacity": true,
	"min_read_buffer_size": true, "search_path": true, "timezone": true, "krbsrvname": true,
	"idle_in_transaction_session_timeout": true, "statement_timeout": true, "lock_timeout": true,
	"gssencmode": true, "channel_binding": true, "load_balance_hosts": true,
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "postgres://(unparsable URL)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redacted)
	}
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			// A pair that does not parse is not shown, whatever it is.
			u.RawQuery = redacted
			return u.String()
		}
		for k, vs := range q {
			if !shownParams[strings.ToLower(k)] {
				for i := range vs {
					vs[i] = redacted
				}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
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
		u, err := url.Parse(raw)
		if err != nil {
			var esc url.EscapeError
			if errors.As(err, &esc) {
				return Source{}, errors.New("not a valid PostgreSQL URL: a %-escape is invalid") // it may be in the password
			}
			return Source{}, fmt.Errorf("not a valid PostgreSQL URL: %w", errors.Unwrap(err))
		}
		if u.Opaque != "" {
			// postgres:user:pw@host: pgx would not read it as a URL, and
			// nothing could tell which part of it is a password.
			return Source{}, errors.New("not a valid PostgreSQL URL: want postgres://user@host/database")
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
		connCfg, err := pgx.ParseConfig(src.URL)
		if err != nil {
			// pgx's message repeats the URL, hiding only what it knows to
			// be a password: keep its reason, show our redaction.
			reason := err.Error()
			if i := strings.LastIndex(reason, "`: "); i >= 0 {
				reason = reason[i+3:]
			}
			return nil, fmt.Errorf("database %s: %s", src, reason)
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
		probe, err := sql.Open("sqlite", "") // connects to nothing: only to find the driver
		if err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
		drv := probe.Driver()
		probe.Close()
		sqldb := sql.OpenDB(privateSQLite{path: src.Path, dsn: src.Path + sqliteParams, drv: drv})
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

// privateSQLite opens connections to a SQLite file that it first creates,
// when missing, readable and writable by its owner only (0600): the file
// holds password hashes and session data, and SQLite itself would create it
// 0644, readable by every user of the machine. SQLite gives the -wal and
// -shm files it creates next to it the database file's mode, so they are
// 0600 too. Creating it at every connection, not once at Open, also covers a
// directory that appears after the server started.
type privateSQLite struct {
	path string
	dsn  string
	drv  driver.Driver
}

func (c privateSQLite) Connect(context.Context) (driver.Conn, error) {
	// O_EXCL: an existing file keeps its mode (see TightenSQLite). When
	// this fails otherwise (no such directory, no permission), SQLite's own
	// open below fails the same way, with the error the domain classifies.
	if f, err := os.OpenFile(c.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err == nil {
		f.Close()
	}
	return c.drv.Open(c.dsn)
}

func (c privateSQLite) Driver() driver.Driver { return c.drv }

// SQLiteFiles are the files of the SQLite database at path: the file itself
// and the write-ahead log and shared-memory index SQLite keeps beside it.
func SQLiteFiles(path string) []string {
	return []string{path, path + "-wal", path + "-shm"}
}

// Exposed is a SQLite file that other users of the machine could read, and
// what was done about it.
type Exposed struct {
	Path string
	Mode fs.FileMode // its permissions as found
	Err  error       // nil when narrowed to 0600; else why not
}

// TightenSQLite narrows the permissions of the existing files of the SQLite
// database at path (see SQLiteFiles) that group or others may access to
// 0600, and returns each such file. Files created 0644 by an earlier version
// stay readable by every user of the machine otherwise; a file it may not
// change (someone else's) is returned with the error, for a warning.
func TightenSQLite(path string) []Exposed {
	var out []Exposed
	for _, p := range SQLiteFiles(path) {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o077 == 0 {
			continue // missing files are created 0600 (see privateSQLite)
		}
		out = append(out, Exposed{Path: p, Mode: fi.Mode().Perm(), Err: os.Chmod(p, 0o600)})
	}
	return out
}
