// Command sessionauth serves the session-auth GraphQL API (see README.md).
package main

//go:generate go tool gqlgen generate

import (
	"cmp"
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
	"github.com/example/sessionauth/graph"
	"github.com/example/sessionauth/internal/api"
	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/migrations"
	"github.com/example/sessionauth/resolvers"
)

// gcPercent is the collector's target unless GOGC sets one: the heap may
// grow 75% over what is live between collections, not Go's default 100%.
// With 10,000 cached sessions that keeps the process under 50 MiB resident
// (52.5 MiB at 100%), for about as much collector CPU as the measurement
// can tell apart (BENCHMARKS.md, "Issue 10").
const gcPercent = 75

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
	if err := resolvers.CheckSchema(graph.NewExecutableSchema(graph.Config{}).Schema()); err != nil {
		return fmt.Errorf("schema.graphqls: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(stdout, nil))
	if cfg.SoftMemoryLimit {
		// The budget that password hashing is sized to (auth.hashSlots).
		debug.SetMemoryLimit(auth.SoftMemoryLimit(cfg.Auth.MemoryBudget))
	}
	if cfg.GCPercent {
		debug.SetGCPercent(gcPercent)
	}

	logDatabase(logger, cfg.Database)
	if cfg.Database.Backend == database.SQLite {
		tightenSQLite(logger, cfg.Database.Path)
	}
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
	// Security events go to their handlers from every instance at once
	// (auth/outbox.go). Product handlers are registered here with
	// svc.OnEvent, before the first request, and likewise in every command
	// that records events (docs/EXTENDING.md, "Acting on security events");
	// the built-in one logs.
	cacheOn := cfg.SessionCache && cfg.Database.Backend == database.Postgres
	if cacheOn {
		// One SQLite process needs no cache: its lookups are local reads.
		// Before the deliverers start: its listener wakes them too.
		svc.EnableCache(bg, cfg.Database.URL)
	}
	delivering := make(chan struct{})
	go func() {
		defer close(delivering)
		svc.DeliverEvents(bg)
	}()
	defer func() { // before the pool closes, however run returns
		stopBackground()
		<-delivering
	}()
	h := api.New(cfg.Config, db, svc, logger)
	srv := &http.Server{
		Addr:              cfg.Addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      api.RequestTimeout + 20*time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("ADDR=%s: %w", cfg.Addr, err)
	}
	servers := []*http.Server{srv}
	listeners := []net.Listener{ln}
	if cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("METRICS_ADDR=%s: cannot serve metrics: %w", cfg.MetricsAddr, err)
		}
		servers = append(servers, &http.Server{
			Handler:           h.Metrics(),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       5 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          srv.ErrorLog,
		})
		listeners = append(listeners, mln)
		logger.Info("listening", "addr", ln.Addr().String(), "metrics_addr", mln.Addr().String())
	} else {
		logger.Info("listening", "addr", ln.Addr().String(), "metrics_addr", "off: set METRICS_ADDR to serve /metrics")
	}

	serveErr := make(chan error, len(servers))
	for i, s := range servers {
		go func() { serveErr <- s.Serve(listeners[i]) }()
	}
	pending := len(servers)
	var failed error
	select {
	case failed = <-serveErr: // a listener failed: stop the other too
		pending--
	case <-ctx.Done():
	}
	// Stop accepting (the listeners close at once), let in-flight requests
	// finish, then stop the background work; the deferred db.Close ends the
	// pool only after all of that.
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	var shutdownErr error
	// Hijacked connections are not Shutdown's: close the WebSockets with
	// 1001 while it waits for the requests.
	closedWS := make(chan struct{})
	go func() {
		defer close(closedWS)
		h.CloseWebSockets(shutdownCtx)
	}()
	for _, s := range servers {
		if err := s.Shutdown(shutdownCtx); err != nil {
			s.Close() // the deadline passed: cut what is still running
			shutdownErr = cmp.Or(shutdownErr, fmt.Errorf("shutdown: %w", err))
		}
	}
	<-closedWS
	for ; pending > 0; pending-- {
		if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
			failed = cmp.Or(failed, err)
		}
	}
	if cacheOn {
		leaveCache(ctx, svc, logger)
	}
	stopBackground()
	<-housekeeping
	if err := cmp.Or(failed, shutdownErr); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// leaveTimeout bounds the goodbye: the changes still in flight (none once
// the requests have drained) and one heartbeat's commit.
const leaveTimeout = 2 * time.Second

// leaveCache says goodbye to the other instances, once no request runs, so
// that they keep their session caches when this one's heartbeats stop (a
// rolling deploy would otherwise empty every cache once per instance).
func leaveCache(ctx context.Context, svc *auth.Service, logger *slog.Logger) {
	leaveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaveTimeout)
	defer cancel()
	if svc.LeaveCache(leaveCtx) {
		logger.Info("session cache: said goodbye to the other instances")
		return
	}
	logger.Warn("session cache: the goodbye did not commit; the other instances will drop their caches once this one's heartbeats stop", "timeout", leaveTimeout)
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

// tightenSQLite makes the SQLite files that an earlier version created
// readable by everyone (0644) private to their owner (0600), and says so: they
// hold password hashes and session data. New files are created 0600.
func tightenSQLite(logger *slog.Logger, path string) {
	for _, f := range database.TightenSQLite(path) {
		if f.Err != nil {
			logger.Warn("the SQLite file is readable by other users of this machine and could not be made private; chmod 600 it",
				"path", f.Path, "mode", f.Mode.String(), "err", f.Err)
			continue
		}
		logger.Warn("the SQLite file was readable by other users of this machine: made it private (0600)",
			"path", f.Path, "was", f.Mode.String())
	}
}
