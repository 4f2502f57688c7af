package main

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

// TestRunRedactsDatabaseSecrets starts the real program with a DATABASE_URL
// that carries a secret in each place a URL can, on a database that does not
// answer (run fails: its error, as main prints it, and every log line before
// it) and, on PostgreSQL, on one that does (run serves: every line until it
// stops). The secret appears nowhere.
func TestRunRedactsDatabaseSecrets(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-xyz"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	places := []struct {
		name, user, query string
		refused           bool // by the server, which names the parameter
	}{
		{"UserinfoPassword", "postgres:" + secret, "", false},
		{"PasswordParam", "postgres", "password=" + secret, false},
		{"EncodedPasswordParam", "postgres", "pass%77ord=" + secret, false},
		{"SSLPassword", "postgres", "sslpassword=" + secret, false},
		{"Passfile", "postgres", "passfile=/nonexistent/" + secret, false},
		{"RuntimeParam", "postgres", "app.credential=" + secret, false}, // passed on to the server as a setting
		{"UnknownParam", "postgres", "api_token=" + secret, true},
		{"UnparsableByPgx", "postgres", "connect_timeout=soon&sslpassword=" + secret + "&app.key=" + secret, true},
	}
	check := func(t *testing.T, what, text string) {
		t.Helper()
		if strings.Contains(text, secret) {
			t.Fatalf("the secret reached %s:\n%s", what, text)
		}
	}
	for _, pl := range places {
		t.Run(pl.name+"/Unreachable", func(t *testing.T) {
			t.Parallel()
			u := fmt.Sprintf("postgres://%s@%s/x?sslmode=disable&connect_timeout=2&%s", pl.user, dead, pl.query)
			env := map[string]string{"DATABASE_URL": u, "ADDR": "127.0.0.1:0"}
			var logs testkit.SyncBuffer
			err := run(t.Context(), nil, func(k string) string { return env[k] }, &logs, io.Discard)
			if err == nil {
				t.Fatal("run served on a database that does not answer")
			}
			if !strings.Contains(logs.String(), `"database":"postgres"`) {
				t.Fatalf("no start-up line:\n%s", logs.String())
			}
			check(t, "the log", logs.String())
			check(t, "run's error", err.Error())
		})
		t.Run(pl.name+"/Serving", func(t *testing.T) {
			t.Parallel()
			pgtest.PostgresOnly(t, "a PostgreSQL URL needs a PostgreSQL server to serve")
			u, err := url.Parse(pgtest.New(t)) // trust authentication: the password is not checked
			if err != nil {
				t.Fatal(err)
			}
			if name, pw, ok := strings.Cut(pl.user, ":"); ok {
				u.User = url.UserPassword(name, pw)
			}
			u.RawQuery += "&" + pl.query
			if pl.refused {
				env := map[string]string{"DATABASE_URL": u.String(), "ADDR": "127.0.0.1:0"}
				var logs testkit.SyncBuffer
				err := run(t.Context(), nil, func(k string) string { return env[k] }, &logs, io.Discard)
				if err == nil {
					t.Fatal("run served with a parameter the server refuses")
				}
				check(t, "the log", logs.String())
				check(t, "run's error", err.Error())
				return
			}
			srv := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": u.String(), "METRICS_ADDR": "127.0.0.1:0"})
			p := srv.SignUp(t, "redact@example.com")
			testkit.WantCode(t, srv.Post(t, "", testkit.LoginMutation, testkit.LoginVars("redact@example.com", "wrong-password")), "INVALID_CREDENTIALS")
			testkit.WantOK(t, srv.Post(t, p.AccessToken, testkit.LogoutMutation, nil))
			if err := srv.Stop(); err != nil {
				t.Fatalf("run returned %v", err)
			}
			if !strings.Contains(srv.Logs.String(), `"msg":"request"`) {
				t.Fatalf("no request lines:\n%s", srv.Logs)
			}
			check(t, "the log", srv.Logs.String())
		})
	}
}
