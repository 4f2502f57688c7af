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
	"runtime/debug"
	"syscall"
	"time"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/database"
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
	if cfg.SoftMemoryLimit {
		// The budget that password hashing is sized to (auth.hashSlots).
		debug.SetMemoryLimit(auth.SoftMemoryLimit(cfg.Auth.MemoryBudget))
	}

	logDatabase(logger, cfg.Database)
	db, err := database.Open(cfg.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := migrations.Apply(ctx, db); err != nil {
		return fmt.Errorf("database %s: %w", cfg.Database, err)
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
	if cfg.SessionCache && cfg.Database.Backend == database.Postgres {
		// One SQLite process needs no cache: its lookups are local reads.
		svc.EnableCache(bg, cfg.Database.URL)
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

// logDatabase says first thing where the data lives; for the embedded SQLite
// file, as a warning that this is a development mode.
func logDatabase(logger *slog.Logger, src database.Source) {
	if src.Backend == database.SQLite {
		logger.Warn("development mode: the data lives in an embedded SQLite file, for one process on one machine; "+
			"set DATABASE_URL=postgres://… to run on PostgreSQL in production",
			"database", "sqlite", "path", src.Path)
		return
	}
	logger.Info("database", "database", "postgres", "url", src.String())
}
