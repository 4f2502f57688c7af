package testkit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Serve serves h on a loopback port until t ends and returns a client of
// it: an instance in process, for tests that need its insides.
func Serve(t testing.TB, h http.Handler) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Client{URL: srv.URL}
}

// RunFunc is the program's run: main calls it with os.Args, os.Getenv and
// the standard streams, and it serves until ctx ends.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// Program is the real program, run in process by its RunFunc or as a built
// binary, serving on a loopback port.
type Program struct {
	*Client        // of ADDR
	Addr    string // host:port of ADDR
	Metrics string // http://METRICS_ADDR, "" when off
	Logs    *Log   // its JSON log (and, for a binary, its stderr)

	stop func()
	done chan error
	once sync.Once
	err  error
}

// StartRun runs run as main would, with the environment env (ADDR defaults
// to a free port of 127.0.0.1) and waits until it serves. It is stopped, and
// must return nil, when the test ends.
func StartRun(t testing.TB, run RunFunc, env map[string]string) *Program {
	t.Helper()
	p := LaunchRun(t, run, env)
	if err := p.WaitListening(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// LaunchRun starts run without waiting for it to serve; see WaitListening.
// It is stopped, and must return nil, when the test ends.
func LaunchRun(t testing.TB, run RunFunc, env map[string]string) *Program {
	getenv := func(k string) string {
		if k == "ADDR" && env[k] == "" {
			return "127.0.0.1:0"
		}
		return env[k]
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Program{Client: NewClient(t, ""), Logs: new(Log), stop: cancel, done: make(chan error, 1)}
	go func() { p.done <- run(ctx, nil, getenv, p.Logs, io.Discard) }()
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("run returned %v", err)
		}
	})
	return p
}

// Build compiles the program of the package in dir into a temporary
// directory and returns its path; with the race detector when the tests
// have it (so the build reuses their compiled packages and the process is
// checked for races too).
func Build(t testing.TB, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "sessionauth")
	args := []string{"build", "-o", bin}
	if Race {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool, append(args, ".")...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// StartBinary runs bin in dir with exactly the environment env (ADDR
// defaults to a free port of 127.0.0.1) and waits until it serves. Stop
// sends it SIGTERM; it is killed when the test ends.
func StartBinary(t testing.TB, bin, dir string, env map[string]string) *Program {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = []string{"ADDR=127.0.0.1:0"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &Program{Client: NewClient(t, ""), Logs: new(Log), done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.Logs, p.Logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.stop = func() { cmd.Process.Signal(syscall.SIGTERM) }
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("the program exited with %v", err)
		}
		cmd.Process.Kill() // if it did not stop
	})
	if err := p.WaitListening(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// WaitListening waits for the program's "listening" log line, which names
// the addresses it bound: from then on it serves.
func (p *Program) WaitListening(within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, line := range jsonLines(p.Logs.headText()) {
			if line["msg"] != "listening" {
				continue
			}
			p.Addr, _ = line["addr"].(string)
			p.URL = "http://" + p.Addr
			if m, _ := line["metrics_addr"].(string); strings.Contains(m, ":") && !strings.Contains(m, " ") {
				p.Metrics = "http://" + m
			}
			return nil
		}
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("the program ended (%v) before it listened:\n%s", err, p.Logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("the program did not start listening within %v:\n%s", within, p.Logs)
}

// Stop ends the program as SIGTERM does and returns what run returned (or
// how the process exited); later calls return the same.
func (p *Program) Stop() error {
	p.once.Do(func() {
		p.stop()
		select {
		case p.err = <-p.done:
		case <-time.After(25 * time.Second):
			p.err = errors.New("the program did not stop within 25s")
		}
	})
	return p.err
}

// CheckLogs fails if the program logged a panic, an internal error or a
// data race.
func (p *Program) CheckLogs(t testing.TB) {
	t.Helper()
	for _, line := range p.Logs.badLines() {
		t.Errorf("the program logged: %s", line)
	}
}

// Log holds a program's JSON log in bounded memory, so that a long soak
// measures the program rather than its log: the first 256 KiB, the last
// lines, and the first lines that report a panic, an internal error or a
// data race. Goroutines may write to it at once.
type Log struct {
	mu    sync.Mutex
	head  bytes.Buffer
	tail  []string
	cut   bool // the head is full: tail holds what follows
	bad   []string
	whole int
}

const logHead = 256 << 10

func (l *Log) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := logHead - l.head.Len(); room > 0 {
		l.head.Write(b[:min(len(b), room)])
	}
	l.whole += len(b)
	l.cut = l.whole > logHead
	for line := range strings.Lines(string(b)) {
		if len(l.tail) == 32 {
			l.tail = l.tail[1:]
		}
		l.tail = append(l.tail, line)
		if (strings.Contains(line, "panic") || strings.Contains(line, `"msg":"internal error"`) || strings.Contains(line, "DATA RACE")) && len(l.bad) < 5 {
			l.bad = append(l.bad, line)
		}
	}
	return len(b), nil
}

// String returns the log; past 256 KiB, its head and its last lines.
func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.cut {
		return l.head.String()
	}
	return l.head.String() + "…\n" + strings.Join(l.tail, "")
}

// Lines decodes every complete line of the log's head, failing the test on
// one that is not JSON.
func (l *Log) Lines(t testing.TB) []map[string]any {
	t.Helper()
	return JSONLines(t, l.headText())
}

func (l *Log) headText() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.head.String()
}

// JSONLines decodes every complete line of text, failing the test on one
// that is not JSON.
func JSONLines(t testing.TB, text string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(text[:strings.LastIndexByte(text, '\n')+1]) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// jsonLines is JSONLines for a log that may hold other lines too (a
// binary's stderr): it leaves them out.
func jsonLines(text string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func (l *Log) badLines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.bad)
}

// SyncBuffer is a bytes.Buffer that a server's goroutines may log into
// while a test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines decodes every complete line of the buffer, failing the test on one
// that is not JSON.
func (b *SyncBuffer) Lines(t testing.TB) []map[string]any {
	t.Helper()
	return JSONLines(t, b.String())
}

// FreePort returns a loopback address that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
