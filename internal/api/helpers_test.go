package api

import (
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// testServer is the real handler (New) over a domain service and its own
// database; tests reach it through its client and inspect its insides.
type testServer struct {
	*testkit.Client
	db      *bun.DB
	svc     *auth.Service
	handler *Server
}

// config is what a test may set: the transport's Config, and whether the
// service keeps its session cache (on PostgreSQL), as SESSION_CACHE does.
type config struct {
	Config
	SessionCache bool
}

// testConfig is the configuration of an empty environment.
func testConfig() config { return config{Config: DefaultConfig(), SessionCache: true} }

// newTestServer starts the handler over a fresh database; edit adjusts the
// configuration.
func newTestServer(t *testing.T, edit func(*config)) *testServer {
	t.Helper()
	return newTestServerOn(t, pgtest.New(t), edit)
}

// newTestServerOn starts another instance over the database at url.
func newTestServerOn(t *testing.T, url string, edit func(*config)) *testServer {
	t.Helper()
	return newLoggedTestServer(t, url, edit, io.Discard)
}

// newLoggedTestServer is newTestServerOn with its JSON log written to logs.
func newLoggedTestServer(t *testing.T, url string, edit func(*config), logs io.Writer) *testServer {
	t.Helper()
	db, svc, h := newHandler(t, url, edit, logs)
	return &testServer{Client: testkit.Serve(t, h), db: db, svc: svc, handler: h}
}

// newHandler builds, as run does, the domain service over the database at
// url (with its session cache on PostgreSQL unless edit turns it off) and
// the handler New makes over both; they close when tb ends.
func newHandler(tb testing.TB, url string, edit func(*config), logs io.Writer) (*bun.DB, *auth.Service, *Server) {
	tb.Helper()
	cfg := testConfig()
	if edit != nil {
		edit(&cfg)
	}
	src, err := database.Parse(url)
	if err != nil {
		tb.Fatal(err)
	}
	db, err := database.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() }) // after the server's, which closes first
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := auth.NewService(db, cfg.Auth, logger)
	if cfg.SessionCache && src.Backend == database.Postgres {
		svc.EnableCache(tb.Context(), src.URL)
	}
	return db, svc, New(cfg.Config, db, svc, logger)
}

// backdate sets column of the session id (of every session when id is "")
// to the database's now minus ago: the server reads that clock, so tests
// move time by moving the data, without sleeping.
func (s *testServer) backdate(t *testing.T, column, id string, ago time.Duration) {
	t.Helper()
	then, arg := database.DialectOf(s.db).NowMinus(ago)
	q := s.db.NewUpdate().Table("sessions").Set(column+" = "+then, arg)
	if id == "" {
		q = q.Where("true")
	} else {
		q = q.Where("id = ?", id)
	}
	if _, err := q.Exec(testkit.Context(t)); err != nil {
		t.Fatalf("backdating %s: %v", column, err)
	}
	s.svc.SyncInvalidations(testkit.Context(t))
}

// dumpDatabase returns every row of every table as text: on PostgreSQL as
// it renders them itself (bytea as hex); on SQLite each value, with blobs
// both raw and in hex.
func dumpDatabase(t *testing.T, db *bun.DB) string {
	t.Helper()
	tables := testkit.Tables(t, db)
	if len(tables) < 3 {
		t.Fatalf("tables %v", tables)
	}
	var dump strings.Builder
	for _, table := range tables {
		if !pgtest.SQLite() {
			var rows []string
			if err := db.NewRaw(fmt.Sprintf("SELECT t::text FROM %q t", table)).Scan(testkit.Context(t), &rows); err != nil && err != sql.ErrNoRows {
				t.Fatal(err)
			}
			dump.WriteString(strings.Join(rows, "\n"))
			continue
		}
		_, rows := testkit.Rows(t, db, table)
		for _, values := range rows {
			for _, v := range values {
				if b, ok := v.([]byte); ok {
					fmt.Fprintf(&dump, "%s|%x|", b, b)
				} else {
					fmt.Fprintf(&dump, "%v|", v)
				}
			}
		}
	}
	return dump.String()
}

// exec runs SQL against the test database and waits until the server's
// session cache has seen the change, as a request after it would.
func (s *testServer) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := s.db.ExecContext(testkit.Context(t), query, args...); err != nil {
		t.Fatal(err)
	}
	s.svc.SyncInvalidations(testkit.Context(t))
}
