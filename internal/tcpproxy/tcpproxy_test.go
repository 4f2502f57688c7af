package tcpproxy

import (
	"bufio"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer answers every line with the same line and records what it got.
type echoServer struct {
	ln   net.Listener
	mu   sync.Mutex
	got  []string
	wg   sync.WaitGroup
	open map[net.Conn]struct{}
}

func newEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, open: map[net.Conn]struct{}{}}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.open[c] = struct{}{}
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					e.mu.Lock()
					e.got = append(e.got, strings.TrimSpace(line))
					e.mu.Unlock()
					if _, err := io.WriteString(c, line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e.mu.Lock()
		for c := range e.open {
			c.Close()
		}
		e.mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func (e *echoServer) received() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.got...)
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends line and reads the echo, giving up after 5 s.
func roundTrip(c net.Conn, line string) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(got), err
}

func mustEcho(t *testing.T, c net.Conn, line string) {
	t.Helper()
	got, err := roundTrip(c, line)
	if err != nil || got != line {
		t.Fatalf("echo of %q = %q, %v", line, got, err)
	}
}

func TestForwards(t *testing.T) {
	t.Parallel()
	e := newEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	for _, line := range []string{"one", "two", strings.Repeat("x", 100_000)} {
		mustEcho(t, c, line)
	}
	if st := p.Stats(); st.Accepted != 1 || st.Open != 1 || st.Chunks < 6 {
		t.Fatalf("stats %+v: want 1 accepted, 1 open, at least 6 chunks", st)
	}
}

func TestCutResetsOpenConnectionsOnly(t *testing.T) {
	t.Parallel()
	e := newEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	a, b := dial(t, p), dial(t, p)
	mustEcho(t, a, "before")
	mustEcho(t, b, "before")
	if n := p.Cut(); n != 2 {
		t.Fatalf("Cut cut %d connections, want 2", n)
	}
	for _, c := range []net.Conn{a, b} {
		if _, err := roundTrip(c, "after"); err == nil {
			t.Fatal("a cut connection still answers")
		}
	}
	mustEcho(t, dial(t, p), "new connection")
}

func TestRefuseAndRestore(t *testing.T) {
	t.Parallel()
	e := newEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	open := dial(t, p)
	mustEcho(t, open, "open")
	p.Refuse()
	// The reset may reach the client while it is still connecting, or
	// after: either way nothing gets through.
	if c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second); err == nil {
		_, err = roundTrip(c, "refused")
		c.Close()
		if err == nil {
			t.Fatal("a connection made while refusing was forwarded")
		}
	}
	mustEcho(t, open, "still open") // Refuse leaves open connections alone
	p.Restore()
	mustEcho(t, dial(t, p), "restored")
	for _, line := range e.received() {
		if line == "refused" {
			t.Fatal("the target received data sent while refusing")
		}
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	e := newEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	const d = 150 * time.Millisecond
	p.SetDelay(d)
	start := time.Now()
	mustEcho(t, c, "slow")
	// Held once on the way there and once on the way back.
	if took := time.Since(start); took < 2*d {
		t.Fatalf("round trip took %v with a %v delay each way", took, d)
	}

	// A chunk held under a long delay goes as soon as the delay is lifted.
	p.SetDelay(time.Hour)
	got := make(chan error, 1)
	go func() {
		_, err := roundTrip(c, "held")
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	p.Restore()
	if err := <-got; err != nil {
		t.Fatalf("held chunk not released by Restore: %v", err)
	}
}

func TestCutAfterCutsMidConversation(t *testing.T) {
	t.Parallel()
	e := newEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	c := dial(t, p)
	mustEcho(t, c, "warm")
	// One chunk passes (the request reaches the target), the next one (its
	// answer) triggers the cut.
	p.CutAfter(1)
	if _, err := roundTrip(c, "request"); err == nil {
		t.Fatal("the answer was delivered despite the armed cut")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(e.received(), "request") {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the target")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := p.Stats(); st.Cuts != 1 {
		t.Fatalf("cuts = %d, want 1", st.Cuts)
	}
	// Fired once: new connections work normally.
	mustEcho(t, dial(t, p), "after")
}

func TestCloseStopsEverything(t *testing.T) {
	t.Parallel()
	e := newEcho(t)
	p, err := Start(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	mustEcho(t, c, "hi")
	done := make(chan struct{})
	go func() {
		p.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if _, err := roundTrip(c, "closed"); err == nil {
		t.Fatal("connection survived Close")
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("proxy still accepts after Close")
	}
}

// TestStallDropsWhatTheServerSends stalls an open connection and a new one:
// the server still gets every line, no answer comes back and nothing is
// reset; after Restore a new line is answered again.
func TestStallDropsWhatTheServerSends(t *testing.T) {
	t.Parallel()
	e := newEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	old := dial(t, p)
	mustEcho(t, old, "before")

	p.Stall()
	fresh := dial(t, p)
	for _, c := range []net.Conn{old, fresh} {
		c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := io.WriteString(c, "stalled\n"); err != nil {
			t.Fatalf("write while stalled: %v", err)
		}
		_, err := c.Read(make([]byte, 64))
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("read while stalled = %v, want a timeout (nothing delivered, nothing reset)", err)
		}
	}
	waitUntil(t, func() bool { return len(e.received()) == 3 })
	if got := e.received(); !slices.Equal(got, []string{"before", "stalled", "stalled"}) {
		t.Fatalf("server got %q", got)
	}
	if st := p.Stats(); st.Dropped != 2 || st.Open != 2 || st.Cuts != 0 {
		t.Fatalf("stats %+v: want 2 dropped, 2 open, no cut", st)
	}

	p.Restore()
	mustEcho(t, fresh, "after")
	mustEcho(t, old, "after too")
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
