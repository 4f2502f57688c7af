package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/testkit"
)

// TestEmbeddedDefault is a frontend developer's first minute: the real
// program, built as `go run .` builds it, started with nothing configured in
// an empty directory. It must serve on an embedded SQLite file there, say so
// in its first log line, walk a client's life, and keep the data across a
// restart.
func TestEmbeddedDefault(t *testing.T) {
	t.Parallel()
	bin := testkit.Build(t, ".")
	dir := t.TempDir()

	srv := testkit.StartBinary(t, bin, dir, nil)
	first := firstLogLine(t, srv.Logs.String())
	wantFile := filepath.Join(dir, database.DefaultSQLiteFile)
	if first["level"] != "WARN" || !strings.Contains(first["msg"].(string), "development mode") ||
		first["database"] != "sqlite" || !samePath(t, first["path"].(string), wantFile) {
		t.Fatalf("first log line = %v, want a WARN saying development mode with path %s", first, wantFile)
	}
	if !filepath.IsAbs(first["path"].(string)) {
		t.Fatalf("the data file's path %q is not absolute", first["path"])
	}

	p := srv.SignUp(t, "first-minute@example.com")
	testkit.WantOK(t, srv.Post(t, p.AccessToken, testkit.MeQuery, nil))
	n := srv.Refresh(t, p.Refresh())
	if n.Session.ID != p.Session.ID || n.AccessToken == p.AccessToken {
		t.Fatalf("refresh did not rotate the session's pair: %+v", n.Session)
	}
	testkit.WantCode(t, srv.Post(t, p.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	testkit.WantOK(t, srv.Post(t, n.AccessToken, testkit.MeQuery, nil))
	testkit.WantOK(t, srv.Post(t, n.AccessToken, testkit.LogoutMutation, nil))
	testkit.WantCode(t, srv.Post(t, n.AccessToken, testkit.MeQuery, nil), "UNAUTHENTICATED")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}

	if fi, err := os.Stat(wantFile); err != nil || fi.Size() == 0 {
		t.Fatalf("no data in %s: %v", wantFile, err)
	}
	// The account is still there after a restart.
	again := testkit.StartBinary(t, bin, dir, nil)
	testkit.WantOK(t, again.Post(t, "", testkit.LoginMutation, testkit.LoginVars("first-minute@example.com", testkit.Password)))
}

// firstLogLine decodes the first line of logs.
func firstLogLine(t *testing.T, logs string) map[string]any {
	t.Helper()
	line, _, _ := strings.Cut(logs, "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("first log line %q: %v", line, err)
	}
	for _, k := range []string{"msg", "path"} {
		if _, ok := m[k].(string); !ok {
			t.Fatalf("first log line has no %s: %s", k, line)
		}
	}
	return m
}

// samePath reports whether a and b name one file, symbolic links resolved.
func samePath(t *testing.T, a, b string) bool {
	t.Helper()
	ra, errA := filepath.EvalSymlinks(filepath.Dir(a))
	rb, errB := filepath.EvalSymlinks(filepath.Dir(b))
	return errA == nil && errB == nil && ra == rb && filepath.Base(a) == filepath.Base(b)
}

// TestRunKeepsSQLiteFilePrivate: the SQLite file run creates, and the -wal
// and -shm files beside it, are readable by their owner only (they hold
// password hashes); one an earlier version left readable by everyone is
// made private at start, with a warning.
func TestRunKeepsSQLiteFilePrivate(t *testing.T) {
	t.Parallel()
	for _, existing := range []bool{false, true} {
		t.Run(map[bool]string{false: "Created", true: "Existing0644"}[existing], func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "dev.db")
			if existing {
				for _, p := range database.SQLiteFiles(path)[:2] {
					if err := os.WriteFile(p, nil, 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.Chmod(p, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			srv := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": "sqlite://" + path})
			srv.SignUp(t, "private@example.com") // writes, through the WAL
			for _, p := range database.SQLiteFiles(path) {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
				}
			}
			if err := srv.Stop(); err != nil {
				t.Fatal(err)
			}
			warned := strings.Count(srv.Logs.String(), "made it private (0600)")
			if want := map[bool]int{false: 0, true: 2}[existing]; warned != want {
				t.Fatalf("%d warnings about a readable file, want %d:\n%s", warned, want, srv.Logs)
			}
		})
	}
}
