// Package tcpproxy is a TCP proxy that a test puts between a program and a
// server (PostgreSQL) to inject network faults: cut every connection, refuse
// new ones, delay traffic, stall it silently, and restore. It exists so that fault tests never
// have to stop a server other tests share.
package tcpproxy

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Proxy forwards every connection made to Addr to its target, as told.
// All methods are safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop and every pipe goroutine

	mu       sync.Mutex
	links    map[*link]struct{}
	refusing bool
	stalled  bool
	dropped  int
	delay    time.Duration
	changed  chan struct{} // closed and replaced whenever delay changes
	cutAfter int           // chunks left before an armed cut; <0 when none is armed
	closed   bool
	accepted int
	cuts     int
	chunks   int
}

// link is one client connection and its upstream.
type link struct {
	client, upstream net.Conn
	once             sync.Once
	done             chan struct{}
}

// Start listens on a free port of 127.0.0.1 and forwards to target
// (host:port). It fails only when it cannot listen.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, links: map[*link]struct{}{}, changed: make(chan struct{}), cutAfter: -1}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address (host:port) for clients to dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut resets every open connection, both halves, as a network failure would:
// the client sees a reset or EOF mid-conversation, and the server sees its
// peer gone (PostgreSQL rolls back what the connection had not committed).
// New connections are still forwarded. It returns how many it cut.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	links := p.takeLinks()
	p.cuts++
	p.mu.Unlock()
	for _, l := range links {
		l.close(true)
	}
	return len(links)
}

// CutAfter arms a Cut that fires once n more chunks (one read's worth of
// bytes, in either direction) have been forwarded, so that a test can cut a
// conversation at a chosen point of a request rather than at a chosen time.
// n = 0 cuts before the next chunk is delivered. A later call replaces the
// armed one; Restore disarms it.
func (p *Proxy) CutAfter(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutAfter = max(n, 0)
}

// Refuse makes the proxy reset every new connection as soon as it is
// accepted (the client sees a reset or EOF before the server answers).
// Connections already open are left as they are; call Cut too for a full
// outage.
func (p *Proxy) Refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusing = true
}

// SetDelay holds every chunk for d before passing it on, in both directions
// and on every connection, open or new. A chunk already held is released as
// soon as the new delay allows. Data still flows in order.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = max(d, 0)
	close(p.changed)
	p.changed = make(chan struct{})
}

// Stall silently drops everything the server sends, on every connection,
// open or new, until Restore: the client's connection stays open and its
// writes still reach the server, but no answer and no notification comes
// back, as behind a wedged middlebox or a partition that TCP has not
// noticed. Nothing is reset. What was dropped is lost, so a conversation
// that resumes after Restore is likely to be garbled.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = true
}

// Restore forwards normally again: new connections are accepted, nothing
// is delayed or stalled, and no cut is armed. Connections already cut stay
// cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.refusing = false
	p.stalled = false
	p.cutAfter = -1
	p.mu.Unlock()
	p.SetDelay(0)
}

// Stats counts what a proxy has done so far.
type Stats struct {
	Accepted int // connections accepted, refused ones included
	Open     int // connections being forwarded now
	Cuts     int // times Cut ran (by hand or armed by CutAfter)
	Chunks   int // chunks read from either side, delivered or not yet
	Dropped  int // chunks from the server dropped by Stall
}

// Stats returns the proxy's counts.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Accepted: p.accepted, Open: len(p.links), Cuts: p.cuts, Chunks: p.chunks, Dropped: p.dropped}
}

// Close stops listening, resets every connection and waits until all of
// the proxy's goroutines have returned.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	links := p.takeLinks()
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.close(true)
	}
	p.wg.Wait()
	return err
}

// takeLinks empties the set of open links and returns them; p.mu is held.
func (p *Proxy) takeLinks() []*link {
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	clear(p.links)
	return links
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of file descriptors
			continue
		}
		p.mu.Lock()
		p.accepted++
		refuse := p.refusing || p.closed
		p.mu.Unlock()
		if refuse {
			reset(c)
			continue
		}
		p.wg.Add(1)
		go p.open(c)
	}
}

// open dials the target for client c and starts forwarding both ways.
func (p *Proxy) open(c net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		reset(c)
		return
	}
	l := &link{client: c, upstream: up, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed || p.refusing {
		p.mu.Unlock()
		l.close(true)
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()
	p.wg.Add(2)
	go p.pipe(l, up, c)
	go p.pipe(l, c, up)
}

// pipe copies src to dst chunk by chunk, holding each chunk for the current
// delay and counting it towards an armed cut. When either side ends, the
// whole link ends.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	defer p.wg.Done()
	defer p.drop(l)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.chunks++
			p.mu.Unlock()
			if !p.hold(l, time.Now()) {
				return
			}
			if p.countChunk() {
				p.Cut()
				return
			}
			if src != l.upstream || !p.drops() {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// hold waits until the chunk read at readAt may be passed on under the
// current delay; false when the link ended meanwhile.
func (p *Proxy) hold(l *link, readAt time.Time) bool {
	for {
		p.mu.Lock()
		delay, changed := p.delay, p.changed
		p.mu.Unlock()
		wait := time.Until(readAt.Add(delay))
		if wait <= 0 {
			select {
			case <-l.done:
				return false
			default:
				return true
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-changed:
			t.Stop()
		case <-l.done:
			t.Stop()
			return false
		}
	}
}

// countChunk counts one chunk against an armed cut and reports whether the
// cut is due now (the chunk is then not delivered).
func (p *Proxy) countChunk() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.cutAfter < 0:
		return false
	case p.cutAfter == 0:
		p.cutAfter = -1
		return true
	default:
		p.cutAfter--
		return false
	}
}

// drops reports whether a chunk from the server is to be dropped, and
// counts it.
func (p *Proxy) drops() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.dropped++
	}
	return p.stalled
}

// drop ends l (gracefully, when one side simply closed) and forgets it.
func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
	l.close(false)
}

func (l *link) close(abort bool) {
	l.once.Do(func() {
		close(l.done)
		if abort {
			reset(l.client)
			reset(l.upstream)
			return
		}
		l.client.Close()
		l.upstream.Close()
	})
}

// reset closes c with an RST rather than a FIN, as a broken network path or
// a crashed peer would look.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
