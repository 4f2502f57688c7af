// Command sessionauth serves the session-auth GraphQL API (see README.md).
package main

//go:generate go tool gqlgen generate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/migrations"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sessionauth:", err)
		os.Exit(1)
	}
}

// shutdownTimeout bounds how long in-flight requests may take to finish once
// the server is told to stop.
const shutdownTimeout = 15 * time.Second

// run starts the server and blocks until ctx ends, then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	if len(args) > 1 {
		if ran, err := runCommand(ctx, args[1:], cfg, stdout, stderr); ran {
			return err
		}
	}
	logger := slog.New(slog.NewJSONHandler(stdout, nil))

	db, err := openDB(cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := migrations.Apply(ctx, db); err != nil {
		return err
	}

	// Background work (housekeeping, the cache listener) runs until the
	// server has stopped, not merely been told to stop: requests still in
	// flight use the cache listener. It ends before the pool closes, however
	// run returns.
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	svc := auth.NewService(db, cfg.Auth, logger)
	housekeeping := make(chan struct{})
	go func() {
		defer close(housekeeping)
		svc.RunHousekeeping(bg, time.Minute)
	}()
	if cfg.SessionCache {
		svc.EnableCache(bg, cfg.DatabaseURL)
	}
	srv := &http.Server{
		Addr:              cfg.Addr,
		Handler:           newServer(cfg, db, svc, logger),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      requestTimeout + 20*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String())

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	// Stop accepting (the listener closes at once), let in-flight requests
	// finish, then stop the background work; the deferred db.Close ends the
	// pool only after all of that.
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close() // the deadline passed: cut what is still running
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	stopBackground()
	<-housekeeping
	logger.Info("stopped")
	return nil
}

// openDB opens a pool over PostgreSQL through pgx's database/sql adapter.
// A connection attempt gives up after 5 s unless the URL sets its own
// connect_timeout, so an unreachable database fails work instead of holding
// it (requests are bounded by run's per-request deadline as well).
func openDB(url string) (*bun.DB, error) {
	connCfg, err := pgx.ParseConfig(url) // its errors never show the password
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if connCfg.ConnectTimeout == 0 {
		connCfg.ConnectTimeout = 5 * time.Second
	}
	if _, ok := connCfg.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		// A transaction whose client vanished without a word (a network
		// partition, a killed host) would otherwise keep its row locks
		// until TCP keepalive notices, hours later by default: the session
		// it locked could not refresh meanwhile. No request's transaction
		// legitimately idles this long (they have requestTimeout in all).
		connCfg.RuntimeParams["idle_in_transaction_session_timeout"] = "15s"
	}
	if !strings.Contains(url, "default_query_exec_mode") {
		// bun writes every value into the SQL text, so no two queries are
		// alike and pgx's default (prepare each query and keep the last 512
		// per connection) never hits: it costs an extra round trip per
		// query and holds dead statements here and in PostgreSQL. Send each
		// query unprepared, in one round trip.
		connCfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	sqldb := stdlib.OpenDB(*connCfg)
	sqldb.SetMaxOpenConns(20)
	sqldb.SetMaxIdleConns(20)
	sqldb.SetConnMaxIdleTime(5 * time.Minute)
	// Renew connections now and then, so that the pool follows the database
	// to a new address after a failover instead of keeping its old ones.
	// (A connection that broke meanwhile is found out by pgx, which pings a
	// connection idle for over a second before handing it out again.)
	sqldb.SetConnMaxLifetime(30 * time.Minute)
	return bun.NewDB(sqldb, pgdialect.New()), nil
}
