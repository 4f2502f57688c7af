// Package pgtest gives each test a fresh, migrated PostgreSQL database of its
// own, cloned from a template migrated once per test binary, and drops it
// when the test ends. Tests therefore run in parallel and leave nothing
// behind.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/example/sessionauth/migrations"
)

// DefaultURL is the machine's local server (README.md); TEST_DATABASE_URL
// overrides it.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// BaseURL returns the URL of the server that tests create databases on.
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

// Open opens a bun.DB over PostgreSQL at url.
func Open(url string) *bun.DB {
	sqldb, err := sql.Open("pgx", url)
	if err != nil {
		panic(err)
	}
	return bun.NewDB(sqldb, pgdialect.New())
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
			"pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start", BaseURL(), err)
	}
	return db
}

// NewURL creates an empty database (no schema) and returns its URL; it is
// dropped when t ends.
func NewURL(t testing.TB) string {
	t.Helper()
	return create(t, "")
}

// New creates a fresh, migrated database and returns its URL; it is dropped
// when t ends.
func New(t testing.TB) string {
	t.Helper()
	templateOnce.Do(func() { templateName, templateErr = makeTemplate() })
	if templateErr != nil {
		t.Fatalf("pgtest: migrating the template database: %v", templateErr)
	}
	return create(t, templateName)
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

// Main runs the tests of a package and drops its template database after.
// Call it from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if templateName != "" {
		drop(templateName)
	}
	return code
}
