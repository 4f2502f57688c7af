package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/database"
)

// TestEmbeddedDefault is a frontend developer's first minute: the real
// program, built as `go run .` builds it, started with nothing configured in
// an empty directory. It must serve on an embedded SQLite file there, say so
// in its first log line, walk a client's life, and keep the data across a
// restart.
func TestEmbeddedDefault(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "sessionauth")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()

	srv := startBinary(t, bin, dir)
	first := srv.firstLogLine(t)
	wantFile := filepath.Join(dir, database.DefaultSQLiteFile)
	if first["level"] != "WARN" || !strings.Contains(first["msg"].(string), "development mode") ||
		first["database"] != "sqlite" || !samePath(t, first["path"].(string), wantFile) {
		t.Fatalf("first log line = %v, want a WARN saying development mode with path %s", first, wantFile)
	}
	if !filepath.IsAbs(first["path"].(string)) {
		t.Fatalf("the data file's path %q is not absolute", first["path"])
	}

	client := &testServer{URL: srv.base}
	p := client.signUp(t, "first-minute@example.com")
	wantOK(t, client.post(t, p.AccessToken, meQuery, nil))
	n := client.refresh(t, p.refresh())
	if n.Session.ID != p.Session.ID || n.AccessToken == p.AccessToken {
		t.Fatalf("refresh did not rotate the session's pair: %+v", n.Session)
	}
	wantCode(t, client.post(t, p.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	wantOK(t, client.post(t, n.AccessToken, meQuery, nil))
	wantOK(t, client.post(t, n.AccessToken, logoutMutation, nil))
	wantCode(t, client.post(t, n.AccessToken, meQuery, nil), "UNAUTHENTICATED")
	srv.stop(t)

	if fi, err := os.Stat(wantFile); err != nil || fi.Size() == 0 {
		t.Fatalf("no data in %s: %v", wantFile, err)
	}
	// The account is still there after a restart.
	again := startBinary(t, bin, dir)
	wantOK(t, (&testServer{URL: again.base}).post(t, "", loginMutation, loginVars("first-minute@example.com", testPassword)))
	again.stop(t)
}

type binaryServer struct {
	base string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// startBinary runs bin in dir on a free port, with the test's environment
// less DATABASE_URL, and waits until it serves.
func startBinary(t *testing.T, bin, dir string) *binaryServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(bin)
	cmd.Dir = dir
	var env []string
	for _, kv := range cmd.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "ADDR=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "ADDR="+addr)
	s := &binaryServer{base: "http://" + addr, cmd: cmd, out: new(syncBuffer), done: make(chan error, 1)}
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case err := <-s.done:
			t.Fatalf("the server exited (%v):\n%s", err, s.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not come up: %v\n%s", err, s.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// firstLogLine decodes the first line the server wrote.
func (s *binaryServer) firstLogLine(t *testing.T) map[string]any {
	t.Helper()
	line, _, _ := strings.Cut(s.out.String(), "\n")
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

// stop ends the server as an operator would and waits for a clean exit.
func (s *binaryServer) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("the server exited with %v:\n%s", err, s.out)
		}
	case <-ctx.Done():
		t.Fatalf("the server did not stop:\n%s", s.out)
	}
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
			srv := startRun(t, map[string]string{"DATABASE_URL": "sqlite://" + path})
			(&testServer{URL: srv.base}).signUp(t, "private@example.com") // writes, through the WAL
			for _, p := range database.SQLiteFiles(path) {
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
				}
			}
			if err := srv.stop(t); err != nil {
				t.Fatal(err)
			}
			warned := strings.Count(srv.logs.String(), "made it private (0600)")
			if want := map[bool]int{false: 0, true: 2}[existing]; warned != want {
				t.Fatalf("%d warnings about a readable file, want %d:\n%s", warned, want, srv.logs)
			}
		})
	}
}
