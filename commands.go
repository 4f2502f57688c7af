package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/migrations"
)

// runCommand runs an operator's command given after the program name, with
// the same configuration as the server. It reports whether args named one.
func runCommand(ctx context.Context, args []string, cfg config, stdout, stderr io.Writer) (bool, error) {
	if len(args) == 0 {
		return false, nil
	}
	switch args[0] {
	case "revoke-sessions":
		return true, revokeSessionsCommand(ctx, args[1:], cfg, stdout, stderr)
	default:
		return true, fmt.Errorf("unknown command %q (known: revoke-sessions)", args[0])
	}
}

// revokeSessionsCommand ends every session of one user at once: for a stolen
// laptop or a compromised account, without waiting for tokens to expire.
func revokeSessionsCommand(ctx context.Context, args []string, cfg config, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("revoke-sessions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	email := fs.String("email", "", "the email of the user whose sessions to end (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *email == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("revoke-sessions: --email is required")
	}
	db, err := database.Open(cfg.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := migrations.Apply(ctx, db); err != nil {
		return fmt.Errorf("database %s: %w", cfg.Database, err)
	}
	svc := auth.NewService(db, cfg.Auth, slog.New(slog.NewJSONHandler(stderr, nil)))
	// It records SESSION_REVOKED for each session it ends: register here
	// the same event handlers (svc.OnEvent) as run does, so that they get
	// those events too; the server's instances deliver them.
	n, err := svc.RevokeUserSessions(ctx, *email)
	if err != nil {
		return fmt.Errorf("revoke-sessions: %w", err)
	}
	fmt.Fprintf(stdout, "revoked %d live session(s) of %s\n", n, *email)
	return nil
}
