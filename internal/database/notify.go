package database

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
)

// Notifications between connections: on PostgreSQL, LISTEN/NOTIFY carries a
// short text from a committing transaction to every connection listening
// on its channel, in the order the transactions committed, whichever
// instance they run on. The domain keeps its instances' caches coherent and
// wakes work another instance queued with them.
//
// SQLite has nothing of the kind, and needs nothing: one process serves the
// file, so it wakes its own waiters in memory, and polls for the rare writer
// in another process (an operator's command). Dialect.CanListen tells which
// case applies; everything here answers ErrNoNotifications on SQLite.

// ErrNoNotifications is the answer of Listen, ListenPooled, Notify and
// NotifyEach on SQLite.
var ErrNoNotifications = errors.New("database: SQLite has no notifications between connections (PostgreSQL's LISTEN/NOTIFY); its one process wakes its own waiters")

// CanListen reports whether the backend delivers notifications between
// connections and processes: true on PostgreSQL, false on SQLite (see
// ErrNoNotifications).
func (d Dialect) CanListen() bool { return !d.sqlite }

// Notify sends payload on channel through db. When db is a transaction the
// notification leaves at its commit (and one identical to another of the
// same transaction is sent once); otherwise at once, in a transaction of
// its own. With async, that transaction commits without waiting for its
// write-ahead log to reach disk (synchronous_commit off): far cheaper for a
// stream of notifications that nothing durable depends on, which a crash of
// the database may lose. A payload stays under 8,000 bytes. Errors:
// ErrNoNotifications on SQLite; else the database's.
func (d Dialect) Notify(ctx context.Context, db bun.IDB, channel, payload string, async bool) error {
	if d.sqlite {
		return ErrNoNotifications
	}
	query := "SELECT pg_notify(?, ?)"
	if async {
		query = "SELECT set_config('synchronous_commit', 'off', true), pg_notify(?, ?)"
	}
	_, err := db.ExecContext(ctx, query, channel, payload)
	return err
}

// NotifyEach is Notify, not async, of one notification for each row of q,
// a query of one column whose values, as text, are the payloads: in one
// statement, however many rows. Errors: ErrNoNotifications on SQLite; else
// the database's.
func (d Dialect) NotifyEach(ctx context.Context, db bun.IDB, channel string, q *bun.SelectQuery) error {
	if d.sqlite {
		return ErrNoNotifications
	}
	_, err := db.NewSelect().ColumnExpr("pg_notify(?, n.payload::text)", channel).
		TableExpr("(?) AS n (payload)", q).Exec(ctx)
	return err
}

// Notification is one notification received: the channel it was sent on
// and its payload.
type Notification struct {
	Channel string
	Payload string
}

// Listener is a connection that receives the notifications sent on the
// channels it listens on, in the order their transactions committed,
// from the moment it listens. It is for one goroutine at a time.
type Listener struct {
	conn *pgx.Conn
	own  bool // opened by Listen: Close closes it
}

// Listen opens a connection of its own to the database at databaseURL,
// outside any pool, and listens on channels. Connecting gives up after 5 s.
// Errors: ErrNoNotifications for a SQLite URL; else why it could not
// connect or listen.
func Listen(ctx context.Context, databaseURL string, channels ...string) (*Listener, error) {
	src, err := Parse(databaseURL)
	if err != nil {
		return nil, err
	}
	if src.Backend != Postgres {
		return nil, ErrNoNotifications
	}
	connectCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.Connect(connectCtx, databaseURL)
	cancel()
	if err != nil {
		return nil, err
	}
	l := &Listener{conn: conn, own: true}
	if err := l.listen(ctx, channels); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// ListenPooled lends fn a Listener over one of db's pooled connections,
// listening on channels, for where no URL is at hand, and returns what fn
// returns. The connection is held while fn runs and then discarded, never
// returned to the pool listening. Errors: ErrNoNotifications on SQLite;
// fn's error; else why no connection could listen (fn is then not called).
func ListenPooled(ctx context.Context, db *bun.DB, fn func(*Listener) error, channels ...string) error {
	if DialectOf(db).sqlite {
		return ErrNoNotifications
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var ran bool
	var fnErr error
	err = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("not a pgx connection: %T", dc)
		}
		l := &Listener{conn: sc.Conn()}
		// driver.ErrBadConn has database/sql discard the connection, so
		// that every way out of here leaves none listening in the pool.
		if err := l.listen(ctx, channels); err != nil {
			return errors.Join(err, driver.ErrBadConn)
		}
		ran, fnErr = true, fn(l)
		return driver.ErrBadConn
	})
	if ran {
		return fnErr
	}
	return err
}

func (l *Listener) listen(ctx context.Context, channels []string) error {
	for _, ch := range channels {
		// Quoted, the name is taken as written, as pg_notify takes it.
		if _, err := l.conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return err
		}
	}
	return nil
}

// WaitForNotification returns the next notification, waiting for it until
// ctx ends. Errors: ctx's, when it ended first; else the connection's (cut,
// closed by the server): the listener is then spent, and every
// notification sent since is missed. A connection that stalls silently
// reports nothing by itself: the caller bounds its wait with ctx.
func (l *Listener) WaitForNotification(ctx context.Context) (Notification, error) {
	n, err := l.conn.WaitForNotification(ctx)
	if err != nil {
		return Notification{}, err
	}
	return Notification{Channel: n.Channel, Payload: n.Payload}, nil
}

// Close closes a listener from Listen, giving up on a polite goodbye after
// 1 s (the connection may be stalled). A listener lent by ListenPooled is
// discarded when fn returns; closing it does nothing.
func (l *Listener) Close() error {
	if !l.own {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return l.conn.Close(ctx)
}
