package database_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/tcpproxy"
)

// TestNotifications runs the notification seam on the backend the tests run
// on: delivered in commit order on PostgreSQL, refused plainly on SQLite.
func TestNotifications(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewURL(t)
	db := pgtest.Open(dbURL)
	t.Cleanup(func() { db.Close() })
	if !database.DialectOf(db).CanListen() {
		testNoNotifications(t, dbURL, db)
		return
	}
	for name, test := range map[string]func(*testing.T, string, *bun.DB){
		"InCommitOrder":     testCommitOrder,
		"Pooled":            testPooled,
		"CutConnection":     testCut,
		"StalledConnection": testStall,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, dbURL, db)
		})
	}
}

// TestSQLiteHasNoNotifications: on SQLite every entry point of the seam
// says there are no notifications, whatever TEST_BACKEND says.
func TestSQLiteHasNoNotifications(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "t.db")
	db := pgtest.Open("sqlite://" + path)
	t.Cleanup(func() { db.Close() })
	testNoNotifications(t, "sqlite://"+path, db)
}

func testNoNotifications(t *testing.T, dbURL string, db *bun.DB) {
	ctx := t.Context()
	d := database.DialectOf(db)
	if d.CanListen() {
		t.Fatal("CanListen on SQLite")
	}
	if l, err := database.Listen(ctx, dbURL, "ch"); !errors.Is(err, database.ErrNoNotifications) {
		t.Errorf("Listen = %v, %v; want ErrNoNotifications", l, err)
	}
	called := false
	err := database.ListenPooled(ctx, db, func(*database.Listener) error { called = true; return nil }, "ch")
	if !errors.Is(err, database.ErrNoNotifications) || called {
		t.Errorf("ListenPooled = %v (fn called: %v); want ErrNoNotifications", err, called)
	}
	if err := d.Notify(ctx, db, "ch", "x", false); !errors.Is(err, database.ErrNoNotifications) {
		t.Errorf("Notify = %v; want ErrNoNotifications", err)
	}
	q := db.NewSelect().ColumnExpr("'x'")
	if err := d.NotifyEach(ctx, db, "ch", q); !errors.Is(err, database.ErrNoNotifications) {
		t.Errorf("NotifyEach = %v; want ErrNoNotifications", err)
	}
}

// testCommitOrder: a listener receives, on the channels it listens on and
// no other, what committed, in commit order, whichever way it was sent.
func testCommitOrder(t *testing.T, dbURL string, db *bun.DB) {
	ctx := t.Context()
	d := database.DialectOf(db)
	l, err := database.Listen(ctx, dbURL, "order_a", "order_Mixed")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	notify := func(db bun.IDB, ch, payload string, async bool) {
		t.Helper()
		if err := d.Notify(ctx, db, ch, payload, async); err != nil {
			t.Fatal(err)
		}
	}
	notify(db, "order_a", "1", false)
	notify(db, "order_Mixed", "2", true) // a name taken as written, async
	notify(db, "order_other", "unheard", false)
	// One transaction: at its commit, an identical repeat sent once.
	err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		notify(tx, "order_a", "3", false)
		notify(tx, "order_a", "3", false)
		notify(tx, "order_Mixed", "4", true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Rolled back: never sent.
	rollback := errors.New("roll back")
	err = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		notify(tx, "order_a", "rolled back", false)
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	// Sent first, committed last: commit order wins.
	first, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback()
	notify(first, "order_a", "6", false)
	second := db.NewSelect().ColumnExpr("v.n").TableExpr("(VALUES (5)) AS v (n)")
	if err := d.NotifyEach(ctx, db, "order_a", second); err != nil {
		t.Fatal(err)
	}
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	each := db.NewSelect().ColumnExpr("v.n").TableExpr("(VALUES (7), (8)) AS v (n)")
	if err := d.NotifyEach(ctx, db, "order_Mixed", each); err != nil {
		t.Fatal(err)
	}
	want := []database.Notification{
		{"order_a", "1"}, {"order_Mixed", "2"}, {"order_a", "3"}, {"order_Mixed", "4"},
		{"order_a", "5"}, {"order_a", "6"}, {"order_Mixed", "7"}, {"order_Mixed", "8"},
	}
	var got []database.Notification
	for range want {
		n, err := l.WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("received %v, want %v", got, want)
	}
}

// testPooled: a pooled listener receives what others send, and its
// connection never goes back to the pool listening.
func testPooled(t *testing.T, dbURL string, sender *bun.DB) {
	ctx := t.Context()
	db := pgtest.Open(dbURL)
	defer db.Close()
	db.SetMaxOpenConns(1) // the listener's connection is the pool's only one
	done := errors.New("done")
	var got database.Notification
	err := database.ListenPooled(ctx, db, func(l *database.Listener) error {
		if err := database.DialectOf(sender).Notify(ctx, sender, "pooled", "hello", false); err != nil {
			return err
		}
		n, err := l.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		got = n
		return done
	}, "pooled")
	if !errors.Is(err, done) {
		t.Fatalf("ListenPooled = %v, want fn's error", err)
	}
	if got != (database.Notification{Channel: "pooled", Payload: "hello"}) {
		t.Fatalf("received %v", got)
	}
	var listening []string
	if err := db.NewRaw("SELECT pg_listening_channels()").Scan(ctx, &listening); err != nil {
		t.Fatal(err)
	}
	if len(listening) != 0 {
		t.Fatalf("the pool's connection listens on %v after ListenPooled returned", listening)
	}
}

// testCut: a listener whose connection is cut reports an error rather than
// waiting for ever.
func testCut(t *testing.T, dbURL string, db *bun.DB) {
	ctx := t.Context()
	viaProxy, proxy := proxied(t, dbURL)
	l, err := database.Listen(ctx, viaProxy, "cut")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := database.DialectOf(db).Notify(ctx, db, "cut", "before", false); err != nil {
		t.Fatal(err)
	}
	if n, err := l.WaitForNotification(ctx); err != nil || n.Payload != "before" {
		t.Fatalf("before the cut: %v, %v", n, err)
	}
	if proxy.Cut() != 1 {
		t.Fatal("the proxy cut no connection: the listener's is not through it")
	}
	n, err := l.WaitForNotification(ctx)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("after the cut: %v, %v; want the connection's error", n, err)
	}
}

// testStall: a listener whose connection stalls silently reports nothing by
// itself, and the error of the context that bounds its wait when that ends;
// then it closes.
func testStall(t *testing.T, dbURL string, db *bun.DB) {
	ctx := t.Context()
	viaProxy, proxy := proxied(t, dbURL)
	l, err := database.Listen(ctx, viaProxy, "stall")
	if err != nil {
		t.Fatal(err)
	}
	proxy.Stall()
	stalled := errors.New("stalled")
	waitCtx, stop := context.WithCancelCause(ctx)
	type result struct {
		n   database.Notification
		err error
	}
	back := make(chan result, 1)
	go func() {
		n, err := l.WaitForNotification(waitCtx)
		back <- result{n, err}
	}()
	if err := database.DialectOf(db).Notify(ctx, db, "stall", "lost", false); err != nil {
		t.Fatal(err)
	}
	for proxy.Stats().Dropped == 0 { // the notification reached the proxy and went no further
		select {
		case r := <-back:
			t.Fatalf("a stalled listener returned %v, %v", r.n, r.err)
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	stop(stalled) // as a watchdog does
	r := <-back
	if r.err == nil || !errors.Is(context.Cause(waitCtx), stalled) {
		t.Fatalf("after the wait's context ended: %v, %v", r.n, r.err)
	}
	l.Close() // returns, though its goodbye cannot be answered through a stall
}

// proxied returns dbURL through a TCP proxy of its own, which closes when t
// ends.
func proxied(t *testing.T, dbURL string) (string, *tcpproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil || u.Hostname() == "" {
		t.Fatalf("TEST_DATABASE_URL must be a postgres://host:port/… URL for the fault tests, got %q", pgtest.BaseURL())
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	proxy, err := tcpproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	u.Host = proxy.Addr()
	return u.String(), proxy
}
