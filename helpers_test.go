package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// testServer is the real handler of newServer, over its own database.
type testServer struct {
	URL     string
	db      *bun.DB
	svc     *auth.Service
	handler *server
}

func testConfig(url string) config {
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil {
		panic(err)
	}
	if cfg.Database, err = database.Parse(url); err != nil {
		panic(err)
	}
	return cfg
}

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
	cfg := testConfig(url)
	if edit != nil {
		edit(&cfg)
	}
	db, err := database.Open(cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := auth.NewService(db, cfg.Auth, logger)
	if cfg.SessionCache && cfg.Database.Backend == database.Postgres {
		svc.EnableCache(t.Context(), cfg.Database.URL)
	}
	h := newServer(cfg, db, svc, logger)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		db.Close()
	})
	return &testServer{URL: srv.URL, db: db, svc: svc, handler: h}
}

type gqlError struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

type gqlResponse struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []gqlError                 `json:"errors"`
	Status int                        `json:"-"`
}

// code returns the extensions.code of the first error, or "" when none.
func (r gqlResponse) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// field decodes data.name into v.
func (r gqlResponse) field(t *testing.T, name string, v any) {
	t.Helper()
	raw, ok := r.Data[name]
	if !ok || string(raw) == "null" {
		t.Fatalf("no data.%s in response; errors: %+v", name, r.Errors)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("data.%s: %v", name, err)
	}
}

// post sends one GraphQL request with token as its bearer ("" for none).
func (s *testServer) post(t *testing.T, token, query string, vars map[string]any) gqlResponse {
	t.Helper()
	return s.postHeader(t, http.Header{"Authorization": bearer(token)}, query, vars)
}

func bearer(token string) []string {
	if token == "" {
		return nil
	}
	return []string{"Bearer " + token}
}

func (s *testServer) postHeader(t *testing.T, h http.Header, query string, vars map[string]any) gqlResponse {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out gqlResponse
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("status %d, body %q: %v", resp.StatusCode, raw, err)
	}
	out.Status = resp.StatusCode
	for _, e := range out.Errors {
		if _, ok := e.Extensions["code"]; !ok {
			t.Errorf("error without extensions.code: %+v", e)
		}
	}
	return out
}

type session struct {
	ID                    string    `json:"id"`
	DeviceName            *string   `json:"deviceName"`
	UserAgent             *string   `json:"userAgent"`
	IPAddress             *string   `json:"ipAddress"`
	CreatedAt             time.Time `json:"createdAt"`
	LastUsedAt            time.Time `json:"lastUsedAt"`
	AccessTokenExpiresAt  time.Time `json:"accessTokenExpiresAt"`
	RefreshTokenExpiresAt time.Time `json:"refreshTokenExpiresAt"`
	Current               bool      `json:"current"`
}

type user struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	CreatedAt time.Time `json:"createdAt"`
}

type payload struct {
	AccessToken           string    `json:"accessToken"`
	RefreshToken          *string   `json:"refreshToken"`
	AccessTokenExpiresAt  time.Time `json:"accessTokenExpiresAt"`
	RefreshTokenExpiresAt time.Time `json:"refreshTokenExpiresAt"`
	AccessTokenExpiresIn  int       `json:"accessTokenExpiresIn"`
	RefreshTokenExpiresIn int       `json:"refreshTokenExpiresIn"`
	User                  user      `json:"user"`
	Session               session   `json:"session"`
}

func (p payload) refresh() string {
	if p.RefreshToken == nil {
		return ""
	}
	return *p.RefreshToken
}

const sessionFields = `id deviceName userAgent ipAddress createdAt lastUsedAt accessTokenExpiresAt refreshTokenExpiresAt current`

const payloadFields = `accessToken refreshToken accessTokenExpiresAt refreshTokenExpiresAt accessTokenExpiresIn refreshTokenExpiresIn
	user { id email createdAt } session { ` + sessionFields + ` }`

const (
	signUpMutation = `mutation($email: String!, $password: String!, $device: String) {
		signUp(input: {email: $email, password: $password, deviceName: $device}) { ` + payloadFields + ` } }`
	loginMutation = `mutation($email: String!, $password: String!, $device: String) {
		login(input: {email: $email, password: $password, deviceName: $device}) { ` + payloadFields + ` } }`
	refreshMutation     = `mutation { refresh { ` + payloadFields + ` } }`
	logoutMutation      = `mutation { logout }`
	meQuery             = `{ me { id email createdAt } }`
	mySessionsQuery     = `{ mySessions { ` + sessionFields + ` } }`
	revokeMutation      = `mutation($id: ID!) { revokeSession(id: $id) }`
	revokeOthersMutaion = `mutation { revokeOtherSessions }`
	changePassword      = `mutation($cur: String!, $new: String!) { changePassword(currentPassword: $cur, newPassword: $new) }`
)

const testPassword = "correct horse battery"

// signUp registers a new user and returns the payload.
func (s *testServer) signUp(t *testing.T, email string) payload {
	t.Helper()
	r := s.post(t, "", signUpMutation, map[string]any{"email": email, "password": testPassword, "device": "test device"})
	var p payload
	r.field(t, "signUp", &p)
	return p
}

func (s *testServer) login(t *testing.T, email string) payload {
	t.Helper()
	r := s.post(t, "", loginMutation, map[string]any{"email": email, "password": testPassword})
	var p payload
	r.field(t, "login", &p)
	return p
}

func (s *testServer) refresh(t *testing.T, refreshToken string) payload {
	t.Helper()
	r := s.post(t, refreshToken, refreshMutation, nil)
	var p payload
	r.field(t, "refresh", &p)
	return p
}

// wantCode fails unless r carries the error code want.
func wantCode(t *testing.T, r gqlResponse, want string) {
	t.Helper()
	if got := r.code(); got != want {
		t.Fatalf("code = %q, want %q (errors %+v)", got, want, r.Errors)
	}
}

// wantOK fails if r carries any error.
func wantOK(t *testing.T, r gqlResponse) {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("unexpected errors: %+v", r.Errors)
	}
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
	if _, err := q.Exec(ctxT(t)); err != nil {
		t.Fatalf("backdating %s: %v", column, err)
	}
	s.svc.SyncInvalidations(ctxT(t))
}

// dumpDatabase returns every row of every table as text: on PostgreSQL as
// it renders them itself (bytea as hex); on SQLite each value, with blobs
// both raw and in hex.
func dumpDatabase(t *testing.T, db *bun.DB) string {
	t.Helper()
	listTables := "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
	if pgtest.SQLite() {
		listTables = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
	}
	var tables []string
	if err := db.NewRaw(listTables).Scan(ctxT(t), &tables); err != nil || len(tables) < 3 {
		t.Fatalf("tables %v: %v", tables, err)
	}
	var dump strings.Builder
	for _, table := range tables {
		if !pgtest.SQLite() {
			var rows []string
			if err := db.NewRaw(fmt.Sprintf("SELECT t::text FROM %q t", table)).Scan(ctxT(t), &rows); err != nil && err != sql.ErrNoRows {
				t.Fatal(err)
			}
			dump.WriteString(strings.Join(rows, "\n"))
			continue
		}
		rows, err := db.QueryContext(ctxT(t), fmt.Sprintf("SELECT * FROM %q", table))
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			values := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range values {
				ptrs[i] = &values[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range values {
				if b, ok := v.([]byte); ok {
					fmt.Fprintf(&dump, "%s|%x|", b, b)
				} else {
					fmt.Fprintf(&dump, "%v|", v)
				}
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return dump.String()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// exec runs SQL against the test database and waits until the server's
// session cache has seen the change, as a request after it would.
func (s *testServer) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := s.db.ExecContext(ctxT(t), query, args...); err != nil {
		t.Fatal(err)
	}
	s.svc.SyncInvalidations(ctxT(t))
}

// syncBuffer is a bytes.Buffer safe for a server's goroutines to log into.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
