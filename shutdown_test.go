package main

// Reliability (issue 5), graceful stop: a request in flight when the
// program is told to stop completes, in process (run) and as a process
// receiving SIGTERM.

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/tcpproxy"
	"github.com/example/sessionauth/internal/testkit"
)

// TestGracefulShutdown stops the program (as SIGTERM does) while a request
// is in flight on a slow database: new connections are refused at once, the
// request still completes and its work is committed, and run returns nil.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	viaProxy, direct, proxy := testkit.ProxiedDatabase(t)
	prog := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": viaProxy})
	c := prog.WithPatience()
	p := c.SignUp(t, "shutdown@example.com")

	proxy.SetDelay(150 * time.Millisecond) // a refresh now takes a couple of seconds
	type answer struct {
		r   testkit.Response
		err error
	}
	inFlight := make(chan answer, 1)
	chunks := proxy.Stats().Chunks
	go func() {
		r, err := c.Call(p.Refresh(), testkit.RefreshMutation, nil)
		inFlight <- answer{r, err}
	}()
	waitForDatabaseTraffic(t, proxy, chunks) // the request is in its handler
	stopped := make(chan error, 1)
	go func() { stopped <- prog.Stop() }()

	refusedWhileInFlight := false
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", prog.Addr, time.Second)
		if err != nil {
			refusedWhileInFlight = len(inFlight) == 0
			break
		}
		conn.Close()
		time.Sleep(5 * time.Millisecond)
	}
	if !refusedWhileInFlight {
		t.Error("new connections were still accepted, or only refused after the in-flight request ended")
	}
	a := <-inFlight
	if a.err != nil {
		t.Fatalf("in-flight request: %v", a.err)
	}
	n, err := testkit.PayloadOf(a.r, "refresh")
	if err != nil {
		t.Fatalf("in-flight request did not complete: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("run returned %v", err)
	}
	if !strings.Contains(prog.Logs.String(), `"msg":"stopped"`) {
		t.Error(`run did not log "stopped"`)
	}
	prog.CheckLogs(t)

	// The answer the client got is what the database holds.
	after := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": direct})
	testkit.WantOK(t, after.Post(t, n.AccessToken, testkit.MeQuery, nil))
}

// waitForDatabaseTraffic waits until the proxy has carried more than after
// chunks: a request has started talking to the database.
func waitForDatabaseTraffic(t *testing.T, proxy *tcpproxy.Proxy, after int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); proxy.Stats().Chunks <= after; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the database")
		}
	}
}

// TestSIGTERM builds the program and sends the running process a real
// SIGTERM while a request is in flight: the request completes, and the
// process exits 0.
func TestSIGTERM(t *testing.T) {
	t.Parallel()
	viaProxy, _, proxy := testkit.ProxiedDatabase(t)
	prog := testkit.StartBinary(t, testkit.Build(t, "."), "", map[string]string{"DATABASE_URL": viaProxy, "GORACE": "halt_on_error=1"})
	c := prog.WithPatience()
	p := c.SignUp(t, "sigterm@example.com")

	proxy.SetDelay(150 * time.Millisecond)
	inFlight := make(chan error, 1)
	chunks := proxy.Stats().Chunks
	go func() {
		r, err := c.Call(p.Refresh(), testkit.RefreshMutation, nil)
		if err == nil {
			_, err = testkit.PayloadOf(r, "refresh")
		}
		inFlight <- err
	}()
	waitForDatabaseTraffic(t, proxy, chunks)
	stopped := make(chan error, 1)
	go func() { stopped <- prog.Stop() }() // SIGTERM
	if err := <-inFlight; err != nil {
		t.Errorf("the request in flight at SIGTERM: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("the program exited with %v; output:\n%s", err, prog.Logs)
	}
	if _, err := net.DialTimeout("tcp", prog.Addr, time.Second); err == nil {
		t.Error("the address still accepts connections after exit")
	}
	if out := prog.Logs.String(); !strings.Contains(out, `"msg":"stopped"`) || strings.Contains(out, "DATA RACE") {
		t.Errorf("want a clean stop in the output:\n%s", out)
	}
}

// TestStopSaysGoodbye: an instance stopped on purpose says goodbye to the
// others, so they keep their session caches; only an instance that falls
// silent without one (a crash) makes them drop theirs (see
// auth/coherence.go, "says goodbye").
func TestStopSaysGoodbye(t *testing.T) {
	pgtest.PostgresOnly(t, "the session cache and its heartbeats exist on PostgreSQL only")
	t.Parallel()
	url := pgtest.New(t)
	stays := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": url})
	goes := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": url})
	time.Sleep(time.Second) // each hears the other's heartbeats, every 250 ms
	if err := goes.Stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	if !strings.Contains(goes.Logs.String(), "said goodbye") {
		t.Fatalf("the stopped instance did not say goodbye:\n%s", goes.Logs.String())
	}
	time.Sleep(3 * time.Second) // past the 2 s after which silence counts as a death
	if out := stays.Logs.String(); strings.Contains(out, "session cache dropped") {
		t.Fatalf("the other instance dropped its cache although the stopped one said goodbye:\n%s", out)
	}
}
