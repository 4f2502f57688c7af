package api

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

// Housekeeping (auth.Service.Housekeep) is tested on rows made old with SQL:
// sessions revoked or expired more than a day ago go, with their retired
// refresh tokens; login counters whose window has closed go; everything
// younger stays.

// sessionAge is how a seeded session looks, in SQL relative to now().
type sessionAge struct {
	refreshExpires string // interval added to now()
	revokedAgo     string // interval subtracted from now(); "" for not revoked
}

var (
	liveSession     = sessionAge{refreshExpires: "7 days"}
	revokedLongAgo  = sessionAge{refreshExpires: "7 days", revokedAgo: "25 hours"}
	expiredLongAgo  = sessionAge{refreshExpires: "-25 hours"}
	revokedRecently = sessionAge{refreshExpires: "7 days", revokedAgo: "1 hour"}
	expiredRecently = sessionAge{refreshExpires: "-1 hour"}
)

// seedUser inserts a user (who cannot log in) and returns its id.
func seedUser(t *testing.T, db bun.IDB, email string) string {
	t.Helper()
	var id string
	err := db.NewRaw(`INSERT INTO users (id, email, email_key, password_hash, created_at)
		VALUES (gen_random_uuid(), ?, ?, 'not a hash', now()) RETURNING id`, email, email).Scan(context.Background(), &id)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// seedSessions inserts n sessions of userID aged as age, each with retired
// refresh tokens in its history.
func seedSessions(t *testing.T, db bun.IDB, userID string, n int, age sessionAge, retired int) {
	t.Helper()
	revoked := "NULL"
	args := []any{userID, age.refreshExpires}
	if age.revokedAgo != "" {
		revoked = "now() - ?::interval"
		args = append(args, age.revokedAgo)
	}
	args = append(args, n, retired)
	_, err := db.NewRaw(`WITH s AS (
			INSERT INTO sessions (id, user_id, created_at, last_used_at, access_hash, access_expires_at,
				refresh_hash, refresh_expires_at, revoked_at)
			SELECT gen_random_uuid(), ?, now() - interval '30 days', now() - interval '2 days',
				sha256(gen_random_uuid()::text::bytea), now() - interval '2 days',
				sha256(gen_random_uuid()::text::bytea), now() + ?::interval, `+revoked+`
			FROM generate_series(1, ?)
			RETURNING id)
		INSERT INTO retired_refresh_tokens (token_hash, session_id, retired_at)
		SELECT sha256(gen_random_uuid()::text::bytea), s.id, now() - interval '2 days'
		FROM s, generate_series(1, ?)`, args...).Exec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
}

// seedThrottles inserts n login counters whose window opened ago.
func seedThrottles(t *testing.T, db bun.IDB, prefix string, n int, ago time.Duration) {
	t.Helper()
	_, err := db.NewRaw(`INSERT INTO login_throttle (key, failures, window_start)
		SELECT ? || g, 3, now() - ? * interval '1 microsecond' FROM generate_series(1, ?) g`,
		prefix, ago.Microseconds(), n).Exec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
}

func countRows(t *testing.T, db bun.IDB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.NewRaw(query, args...).Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// deleteLog records how many rows each DELETE statement removed, by table.
type deleteLog struct {
	mu   sync.Mutex
	rows map[string][]int64
}

func (d *deleteLog) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context { return ctx }

func (d *deleteLog) AfterQuery(_ context.Context, e *bun.QueryEvent) {
	if e.Err != nil || e.Result == nil || e.Operation() != "DELETE" {
		return
	}
	table, _, _ := strings.Cut(strings.TrimPrefix(e.Query, "DELETE FROM "), " ")
	n, _ := e.Result.RowsAffected()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rows[strings.Trim(table, `"`)] = append(d.rows[strings.Trim(table, `"`)], n)
}

// housekeeper returns a Service of its own over url, as another instance
// would have, whose DELETE statements are recorded in log when it is not nil.
func housekeeper(t *testing.T, url string, log *deleteLog) *auth.Service {
	t.Helper()
	db := testkit.OpenDirect(t, url)
	if log != nil {
		db = db.WithQueryHook(log)
	}
	return auth.NewService(db, testConfig().Auth, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func TestHousekeepingDeletesWhatEnded(t *testing.T) {
	t.Parallel()
	pgtest.PostgresOnly(t, "its seeding SQL is PostgreSQL's (generate_series, gen_random_uuid)")
	url := pgtest.New(t)
	s := newTestServerOn(t, url, nil)
	c := s.WithPatience()
	db := s.db

	// Two real sessions with a history of rotated refresh tokens: one ended
	// long ago, one still in use.
	ended := c.SignUp(t, "ended@example.com")
	for range 3 {
		ended = c.Refresh(t, ended.Refresh())
	}
	testkit.WantOK(t, c.Post(t, ended.AccessToken, testkit.LogoutMutation, nil))
	s.exec(t, "UPDATE sessions SET revoked_at = now() - interval '25 hours' WHERE id = ?", ended.Session.ID)
	live := c.SignUp(t, "live@example.com")
	for range 3 {
		live = c.Refresh(t, live.Refresh())
	}
	endedHistory := countRows(t, db, "SELECT count(*) FROM retired_refresh_tokens WHERE session_id = ?", ended.Session.ID)
	liveHistory := countRows(t, db, "SELECT count(*) FROM retired_refresh_tokens WHERE session_id = ?", live.Session.ID)
	if endedHistory == 0 || liveHistory == 0 {
		t.Fatalf("retired tokens: %d and %d, want some for both sessions", endedHistory, liveHistory)
	}

	// Bulk, more than two batches of each kind.
	user := seedUser(t, db, "bulk@example.com")
	seedSessions(t, db, user, 1200, revokedLongAgo, 2)
	seedSessions(t, db, user, 1300, expiredLongAgo, 1)
	seedSessions(t, db, user, 30, revokedRecently, 1)
	seedSessions(t, db, user, 30, expiredRecently, 1)
	seedSessions(t, db, user, 40, liveSession, 1)
	window := testConfig().Auth.Throttle.Window
	seedThrottles(t, db, "email:old", 2100, window+time.Minute)
	seedThrottles(t, db, "email:new", 25, window-time.Minute)

	log := &deleteLog{rows: map[string][]int64{}}
	n, err := housekeeper(t, url, log).Housekeep(testkit.Context(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := 1200 + 1300 + 1 + 2100; n != want {
		t.Errorf("Housekeep deleted %d rows, want %d", n, want)
	}
	for table, batches := range log.rows {
		for _, rows := range batches {
			if rows > 1000 {
				t.Errorf("one DELETE on %s removed %d rows: batches must be bounded", table, rows)
			}
		}
	}
	if got := len(log.rows["sessions"]); got < 3 {
		t.Errorf("%d DELETEs on sessions for 2,501 rows, want batches of at most 1,000", got)
	}
	if got := len(log.rows["login_throttle"]); got < 3 {
		t.Errorf("%d DELETEs on login_throttle for 2,100 rows, want batches of at most 1,000", got)
	}

	for _, check := range []struct {
		what  string
		query string
		want  int
	}{
		{"sessions left", "SELECT count(*) FROM sessions", 30 + 30 + 40 + 1},
		{"recent and live bulk sessions", "SELECT count(*) FROM sessions WHERE user_id = '" + user + "'", 100},
		{"retired tokens left", "SELECT count(*) FROM retired_refresh_tokens", 100 + liveHistory},
		{"retired tokens of the ended session", "SELECT count(*) FROM retired_refresh_tokens WHERE session_id = '" + ended.Session.ID + "'", 0},
		{"orphaned retired tokens", "SELECT count(*) FROM retired_refresh_tokens r LEFT JOIN sessions s ON s.id = r.session_id WHERE s.id IS NULL", 0},
		{"login counters left", "SELECT count(*) FROM login_throttle", 25},
		{"users left", "SELECT count(*) FROM users", 3},
	} {
		if got := countRows(t, db, check.query); got != check.want {
			t.Errorf("%s: %d, want %d", check.what, got, check.want)
		}
	}

	// The live session still works, history and all: its replaced refresh
	// token is still recognised.
	testkit.WantOK(t, c.Post(t, live.AccessToken, testkit.MeQuery, nil))
	next := c.Refresh(t, live.Refresh())
	testkit.WantOK(t, c.Post(t, next.AccessToken, testkit.MeQuery, nil))

	if n, err := housekeeper(t, url, nil).Housekeep(testkit.Context(t)); err != nil || n != 0 {
		t.Errorf("a second run deleted %d rows (%v), want 0", n, err)
	}
}

// TestHousekeepingOnEveryInstanceAtOnce runs housekeeping from several
// instances at the same moment on the same rows, while a client keeps
// refreshing: no instance errors or deadlocks, each row is deleted once,
// and the client never notices.
func TestHousekeepingOnEveryInstanceAtOnce(t *testing.T) {
	t.Parallel()
	pgtest.PostgresOnly(t, "instances share a database only on PostgreSQL")
	url := pgtest.New(t)
	s := newTestServerOn(t, url, nil)
	c := s.WithPatience()
	db := s.db
	user := seedUser(t, db, "bulk@example.com")
	seedSessions(t, db, user, 3000, revokedLongAgo, 2)
	seedSessions(t, db, user, 3000, expiredLongAgo, 1)
	seedSessions(t, db, user, 50, liveSession, 1)
	window := testConfig().Auth.Throttle.Window
	seedThrottles(t, db, "ip:old", 4000, window+time.Minute)
	seedThrottles(t, db, "ip:new", 20, 0)
	p := c.SignUp(t, "busy@example.com")

	instances := []*auth.Service{
		housekeeper(t, url, nil), housekeeper(t, url, nil), housekeeper(t, url, nil),
	}
	counts := make([]int, len(instances))
	errs := make([]error, len(instances))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, svc := range instances {
		wg.Go(func() {
			<-start
			counts[i], errs[i] = svc.Housekeep(testkit.Context(t))
		})
	}
	// A client keeps refreshing its session meanwhile.
	stop := make(chan struct{})
	refreshed := make(chan error, 1)
	var refreshes int
	go func() {
		token := p.Refresh()
		for {
			select {
			case <-stop:
				refreshed <- nil
				return
			default:
			}
			r, err := c.Call(token, testkit.RefreshMutation, nil)
			if err == nil {
				var n testkit.Payload
				n, err = testkit.PayloadOf(r, "refresh")
				token = n.Refresh()
			}
			if err != nil {
				refreshed <- err
				return
			}
			refreshes++
		}
	}()
	began := time.Now()
	close(start)
	wg.Wait()
	tookHK := time.Since(began)
	close(stop)
	if err := <-refreshed; err != nil {
		t.Errorf("a client refreshing during housekeeping (after %d refreshes): %v", refreshes, err)
	}
	t.Logf("the client refreshed %d times during the %v of housekeeping", refreshes, tookHK.Round(time.Millisecond))

	total := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
		total += counts[i]
	}
	if want := 3000 + 3000 + 4000; total != want {
		t.Errorf("the instances deleted %v rows, %d in all; want %d in all", counts, total, want)
	}
	if got := countRows(t, db, "SELECT count(*) FROM sessions WHERE user_id = ?", user); got != 50 {
		t.Errorf("%d bulk sessions left, want the 50 live ones", got)
	}
	if got := countRows(t, db, "SELECT count(*) FROM login_throttle"); got != 20 {
		t.Errorf("%d login counters left, want the 20 current ones", got)
	}
	if got := countRows(t, db, "SELECT count(*) FROM retired_refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE s.user_id = ?", user); got != 50 {
		t.Errorf("%d retired tokens of bulk sessions left, want the live sessions' 50", got)
	}
}

// TestHousekeepingForgetsExpiredRetiredTokens: a live session keeps rotating,
// but a retired refresh token older than REFRESH_TOKEN_TTL has expired for
// certain and goes; younger ones stay for replay detection.
func TestHousekeepingForgetsExpiredRetiredTokens(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.RefreshTTL = time.Hour })
	p := s.SignUp(t, "rotating@example.com")
	n1 := s.Refresh(t, p.Refresh())
	n2 := s.Refresh(t, n1.Refresh())
	n3 := s.Refresh(t, n2.Refresh()) // p and n1 are retired now
	count := func() int64 {
		n, err := s.db.NewSelect().Table("retired_refresh_tokens").Count(testkit.Context(t))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := count(); got != 2 {
		t.Fatalf("%d retired tokens, want 2", got)
	}
	then, arg := database.DialectOf(s.db).NowMinus(2 * time.Hour)
	if _, err := s.db.NewUpdate().Table("retired_refresh_tokens").Set("retired_at = "+then, arg).
		Where("retired_at = (SELECT min(retired_at) FROM retired_refresh_tokens)").Exec(testkit.Context(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.svc.Housekeep(testkit.Context(t)); err != nil {
		t.Fatal(err)
	}
	if got := count(); got != 1 {
		t.Fatalf("%d retired tokens after housekeeping, want 1", got)
	}
	testkit.WantOK(t, s.Post(t, n3.AccessToken, testkit.MeQuery, nil))
}
