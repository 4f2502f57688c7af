// Package pgtest gives each test a fresh, migrated database of its own and
// removes it when the test ends, so tests run in parallel and leave nothing
// behind.
//
// The backend is PostgreSQL, the reference, unless TEST_BACKEND=sqlite: then
// each test gets an embedded SQLite file in a temporary directory instead.
// Either way a database is cloned from a template migrated once per test
// binary (CREATE DATABASE … TEMPLATE, or a copy of the file).
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/migrations"
)

// DefaultURL is the machine's local server (README.md); TEST_DATABASE_URL
// overrides it.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var (
	templateOnce sync.Once
	templateName string // a PostgreSQL database, or a SQLite file
	templateErr  error
)

// Backend returns the backend the tests run on, from TEST_BACKEND:
// database.Postgres (the default, also for "postgres") or database.SQLite
// (for "sqlite"). Any other value panics, so a typo cannot silently test
// the wrong thing.
func Backend() database.Backend {
	switch b := os.Getenv("TEST_BACKEND"); b {
	case "", string(database.Postgres):
		return database.Postgres
	case string(database.SQLite):
		return database.SQLite
	default:
		panic(fmt.Sprintf("pgtest: TEST_BACKEND=%q: want postgres or sqlite", b))
	}
}

// SQLite reports whether the tests run on SQLite.
func SQLite() bool { return Backend() == database.SQLite }

// PostgresOnly skips t on SQLite, saying why: for tests of what only exists
// on PostgreSQL (several processes on one database, its locks, its network).
func PostgresOnly(t testing.TB, why string) {
	t.Helper()
	if SQLite() {
		t.Skip("PostgreSQL only: " + why)
	}
}

// BaseURL returns the URL of the PostgreSQL server that tests create
// databases on.
func BaseURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// WithDatabase returns base with its database name replaced by name.
func WithDatabase(base, name string) string {
	u, err := url.Parse(base)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + name
	return u.String()
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Open opens a bun.DB over the database at url, as the server would.
func Open(url string) *bun.DB {
	src, err := database.Parse(url)
	if err != nil {
		panic(err)
	}
	db, err := database.Open(src)
	if err != nil {
		panic(err)
	}
	return db
}

// NewURL creates an empty database (no schema) and returns its URL; it is
// removed when t ends.
func NewURL(t testing.TB) string {
	t.Helper()
	if SQLite() {
		return sqliteURL(filepath.Join(t.TempDir(), "empty.db"))
	}
	return create(t, "")
}

// New creates a fresh, migrated database and returns its URL; it is removed
// when t ends.
func New(t testing.TB) string {
	t.Helper()
	templateOnce.Do(func() {
		if SQLite() {
			templateName, templateErr = makeSQLiteTemplate()
		} else {
			templateName, templateErr = makeTemplate()
		}
	})
	if templateErr != nil {
		t.Fatalf("pgtest: migrating the template database: %v", templateErr)
	}
	if SQLite() {
		path := filepath.Join(t.TempDir(), "test.db")
		if err := copyFile(path, templateName); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
		return sqliteURL(path)
	}
	return create(t, templateName)
}

func sqliteURL(path string) string { return "sqlite://" + path }

// makeSQLiteTemplate migrates a SQLite file in a directory of its own, which
// Main removes. Closing the pool checkpoints the WAL into the file, so the
// file alone is the whole database.
func makeSQLiteTemplate() (string, error) {
	dir, err := os.MkdirTemp("", "sessionauth_tmpl_")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "template.db")
	db := Open(sqliteURL(path))
	err = migrations.Apply(context.Background(), db)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return path, err
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func admin(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", BaseURL())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		t.Fatalf("pgtest: PostgreSQL at %s is not reachable (%v); start it with: "+
			"pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start "+
			"(or run the tests on SQLite with TEST_BACKEND=sqlite)", BaseURL(), err)
	}
	return db
}

func create(t testing.TB, template string) string {
	t.Helper()
	db := admin(t)
	defer db.Close()
	name := randomName("sessionauth_test_")
	stmt := "CREATE DATABASE " + name
	if template != "" {
		stmt += " TEMPLATE " + template
	}
	var err error
	// Concurrent clones of one template can briefly collide; retry.
	for range 20 {
		if _, err = db.Exec(stmt); err == nil || !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("pgtest: %s: %v", stmt, err)
	}
	t.Cleanup(func() { drop(name) })
	return WithDatabase(BaseURL(), name)
}

func drop(name string) {
	db, err := sql.Open("pgx", BaseURL())
	if err != nil {
		return
	}
	defer db.Close()
	db.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
}

func makeTemplate() (string, error) {
	db, err := sql.Open("pgx", BaseURL())
	if err != nil {
		return "", err
	}
	defer db.Close()
	name := randomName("sessionauth_tmpl_")
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		return "", fmt.Errorf("PostgreSQL at %s: %w (start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)", BaseURL(), err)
	}
	tmpl := Open(WithDatabase(BaseURL(), name))
	defer tmpl.Close()
	if err := migrations.Apply(context.Background(), tmpl); err != nil {
		return name, err
	}
	return name, nil
}

// Main runs the tests of a package and removes its template database after.
// Call it from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	switch {
	case templateName == "":
	case SQLite():
		os.RemoveAll(filepath.Dir(templateName))
	default:
		drop(templateName)
	}
	return code
}
