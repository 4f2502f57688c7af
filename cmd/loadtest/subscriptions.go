package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	coderws "github.com/coder/websocket"
)

// The subscription scenario (issue 13, BENCHMARKS.md), run instead of the
// HTTP scenarios when -ws-conns or -ws-revocations is set:
//
//   - memory: -ws-conns idle authenticated connections (graphql-transport-ws,
//     each running a securityEvents subscription) held open on -url, at most
//     -ws-per-session per session; reported as the growth of the server's
//     resident memory (-pid), Go heap and goroutines (-metrics-url) per
//     connection, sampled before opening and after -ws-idle with all open;
//   - revocation: -ws-revocations times, one session's connection open on
//     -url while revokeSession is sent to -seed-url (another instance on the
//     same database): the time from sending revokeSession to the 4403 close
//     on the connection, p50/p90/p99/max.

const wsSubscribe = `subscription { securityEvents { id kind } }`

type wsResult struct {
	Conns           int     `json:"conns"`
	Subscribed      bool    `json:"subscribed"`
	Sessions        int     `json:"sessions"`
	RSSBeforeMiB    float64 `json:"rss_before_mib,omitempty"`
	RSSAfterMiB     float64 `json:"rss_after_mib,omitempty"`
	RSSPerConnKiB   float64 `json:"rss_per_conn_kib,omitempty"`
	HeapPerConnKiB  float64 `json:"heap_per_conn_kib,omitempty"`
	GoroutinesPer   float64 `json:"goroutines_per_conn,omitempty"`
	OpenSeconds     float64 `json:"open_seconds,omitempty"`
	Revocations     int     `json:"revocations"`
	RevokeP50       string  `json:"revoke_to_close_p50,omitempty"`
	RevokeP90       string  `json:"revoke_to_close_p90,omitempty"`
	RevokeP99       string  `json:"revoke_to_close_p99,omitempty"`
	RevokeMax       string  `json:"revoke_to_close_max,omitempty"`
	WrongCloses     int     `json:"wrong_closes,omitempty"`
	RevokeFailures  int     `json:"revoke_failures,omitempty"`
	ServerSeparated bool    `json:"revoked_on_another_instance"`
}

func runSubscriptions(ctx context.Context, e *env, stdout io.Writer) error {
	o := e.opts
	res := wsResult{ServerSeparated: o.SeedURL != "" && o.SeedURL != o.URL}
	if o.WSConns > 0 {
		if err := wsMemory(ctx, e, &res); err != nil {
			return err
		}
	}
	if o.WSRevocations > 0 {
		if err := wsRevocations(ctx, e, &res); err != nil {
			return err
		}
	}
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	if res.Conns > 0 {
		fmt.Fprintf(stdout, "idle authenticated connections: %d over %d sessions (each running securityEvents: %v), opened in %.1fs\n", res.Conns, res.Sessions, res.Subscribed, res.OpenSeconds)
		if res.RSSPerConnKiB != 0 {
			fmt.Fprintf(stdout, "  server RSS %.1f MiB -> %.1f MiB: %.1f KiB per connection\n", res.RSSBeforeMiB, res.RSSAfterMiB, res.RSSPerConnKiB)
		}
		if res.HeapPerConnKiB != 0 {
			fmt.Fprintf(stdout, "  Go heap in use: %.1f KiB per connection; goroutines: %.2f per connection\n", res.HeapPerConnKiB, res.GoroutinesPer)
		}
	}
	if res.Revocations > 0 {
		fmt.Fprintf(stdout, "revokeSession -> 4403 close (%d revocations, on another instance: %v): p50 %s  p90 %s  p99 %s  max %s  (wrong closes %d, failed %d)\n",
			res.Revocations, res.ServerSeparated, res.RevokeP50, res.RevokeP90, res.RevokeP99, res.RevokeMax, res.WrongCloses, res.RevokeFailures)
	}
	return nil
}

func wsEndpoint(url string) string { return "ws" + strings.TrimPrefix(url, "http") }

// wsOpen dials url, initialises with token and subscribes; it returns the
// connection once acknowledged.
func wsOpen(ctx context.Context, url, token string) (*coderws.Conn, error) {
	return wsOpenSub(ctx, url, token, true)
}

func wsOpenSub(ctx context.Context, url, token string, subscribe bool) (*coderws.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, _, err := coderws.Dial(dctx, wsEndpoint(url), &coderws.DialOptions{Subprotocols: []string{"graphql-transport-ws"}})
	if err != nil {
		return nil, err
	}
	send := func(v any) error {
		b, _ := json.Marshal(v)
		return c.Write(dctx, coderws.MessageText, b)
	}
	if err := send(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}}); err != nil {
		c.CloseNow()
		return nil, err
	}
	for {
		_, b, err := c.Read(dctx)
		if err != nil {
			c.CloseNow()
			return nil, err
		}
		if bytes.Contains(b, []byte(`"connection_ack"`)) {
			break
		}
	}
	if !subscribe {
		return c, nil
	}
	if err := send(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": wsSubscribe}}); err != nil {
		c.CloseNow()
		return nil, err
	}
	return c, nil
}

// wsHold reads (and answers pings on) c until it closes, then reports its
// close status.
func wsHold(ctx context.Context, c *coderws.Conn) error {
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(`"type":"ping"`)) {
			c.Write(ctx, coderws.MessageText, []byte(`{"type":"pong"}`))
		}
	}
}

func wsMemory(ctx context.Context, e *env, res *wsResult) error {
	o := e.opts
	per := max(o.WSPerSession, 1)
	sessions := (o.WSConns + per - 1) / per
	users, err := e.seedUsers(ctx, "w", 0, sessions)
	if err != nil {
		return err
	}
	sleep(ctx, 2*time.Second) // let the sign-ups' hashing memory go
	before := wsSample(o)
	started := time.Now()
	conns := make([]*coderws.Conn, o.WSConns)
	var failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	holdCtx, stopHold := context.WithCancel(ctx)
	defer stopHold()
	for i := range conns {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := wsOpenSub(ctx, o.URL, users[i/per].Access, o.WSSubscribe)
			if err != nil {
				if failed.Add(1) == 1 {
					e.logf("opening connection %d: %v", i, err)
				}
				return
			}
			conns[i] = c
			go wsHold(holdCtx, c)
		}()
		if (i+1)%1000 == 0 {
			e.logf("%d connections opening", i+1)
		}
	}
	wg.Wait()
	res.OpenSeconds = time.Since(started).Seconds()
	n := 0
	for _, c := range conns {
		if c != nil {
			n++
		}
	}
	res.Conns, res.Sessions, res.Subscribed = n, sessions, o.WSSubscribe
	e.logf("%d connections open (%d failed); idle %s", n, failed.Load(), o.WSIdle)
	sleep(ctx, o.WSIdle)
	after := wsSample(o)
	if before.rss > 0 && after.rss > 0 && n > 0 {
		res.RSSBeforeMiB, res.RSSAfterMiB = float64(before.rss)/(1<<20), float64(after.rss)/(1<<20)
		res.RSSPerConnKiB = float64(after.rss-before.rss) / 1024 / float64(n)
	}
	if before.heap > 0 && after.heap > 0 && n > 0 {
		res.HeapPerConnKiB = (after.heap - before.heap) / 1024 / float64(n)
		res.GoroutinesPer = (after.goroutines - before.goroutines) / float64(n)
	}
	stopHold()
	for _, c := range conns {
		if c != nil {
			c.CloseNow()
		}
	}
	return nil
}

type wsSampleT struct {
	rss              int64
	heap, goroutines float64
}

// wsSample reads the server's VmRSS (-pid) and its heap in use and
// goroutines (-metrics-url), after asking nothing of it: the Go collector
// reports the last GC's view, so the figures are sampled twice a second
// apart and the larger kept.
func wsSample(o options) wsSampleT {
	var s wsSampleT
	if o.PID > 0 {
		kib, _ := readVmRSS(o.PID)
		s.rss = kib << 10
	}
	if o.MetricsURL != "" {
		resp, err := http.Get(o.MetricsURL)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for line := range strings.Lines(string(b)) {
				f := strings.Fields(line)
				if len(f) != 2 {
					continue
				}
				v, _ := strconv.ParseFloat(f[1], 64)
				switch f[0] {
				case "go_memstats_heap_inuse_bytes":
					s.heap = v
				case "go_goroutines":
					s.goroutines = v
				}
			}
		}
	}
	return s
}

const loginSessionQuery = `mutation($in: LoginInput!) { login(input: $in) { accessToken session { id } } }`

func wsRevocations(ctx context.Context, e *env, res *wsResult) error {
	o := e.opts
	revoker, err := e.seedUsers(ctx, "r", 0, 1)
	if err != nil {
		return err
	}
	u := revoker[0]
	// The sessions to revoke, made first (logins hash a password: keep
	// that out of the measurement).
	type victim struct{ access, id string }
	victims := make([]victim, o.WSRevocations)
	e.logf("logging in %d sessions to revoke", len(victims))
	err = parallel(len(victims), func(i int) error {
		var buf bytes.Buffer
		body := credentialsBody(loginSessionQuery, u.email, e.password())
		// Concurrent logins of one account can meet a deadlock in the
		// server (an INTERNAL answer): retry, this is seeding.
		for attempt := 1; ; attempt++ {
			buf.Reset()
			err := e.seedAPI.call(ctx, body, "", []byte(`"accessToken"`), &buf)
			if err == nil {
				break
			}
			if attempt == 3 {
				return err
			}
			e.logf("login for revocation %d: %v; retrying", i, err)
		}
		var doc struct {
			Data struct {
				Login struct {
					AccessToken string `json:"accessToken"`
					Session     struct {
						ID string `json:"id"`
					} `json:"session"`
				} `json:"login"`
			} `json:"data"`
		}
		if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
			return err
		}
		victims[i] = victim{doc.Data.Login.AccessToken, doc.Data.Login.Session.ID}
		return nil
	})
	if err != nil {
		return err
	}
	var lat []time.Duration
	for i, v := range victims {
		if ctx.Err() != nil {
			break
		}
		c, err := wsOpen(ctx, o.URL, v.access)
		if err != nil {
			res.RevokeFailures++
			continue
		}
		closed := make(chan error, 1)
		go func() { closed <- wsHold(ctx, c) }()
		body, _ := json.Marshal(map[string]any{"query": `mutation($id: ID!) { revokeSession(id: $id) }`, "variables": map[string]any{"id": v.id}})
		var buf bytes.Buffer
		start := time.Now()
		if err := e.seedAPI.call(ctx, body, "Bearer "+u.Access, []byte(`"revokeSession":true`), &buf); err != nil {
			res.RevokeFailures++
			c.CloseNow()
			continue
		}
		var end error
		select {
		case end = <-closed:
		case <-time.After(10 * time.Second):
			end = errors.New("no close within 10s")
		}
		d := time.Since(start)
		var ce coderws.CloseError
		if !errors.As(end, &ce) || ce.Code != 4403 || ce.Reason != "SESSION_ENDED" {
			res.WrongCloses++
			if res.WrongCloses == 1 {
				e.logf("revocation %d: closed with %v", i, end)
			}
		}
		c.CloseNow()
		lat = append(lat, d)
		if (i+1)%100 == 0 {
			e.logf("%d revocations", i+1)
		}
	}
	slices.Sort(lat)
	res.Revocations = len(lat)
	if len(lat) > 0 {
		res.RevokeP50 = fmtDur(percentile(lat, 50))
		res.RevokeP90 = fmtDur(percentile(lat, 90))
		res.RevokeP99 = fmtDur(percentile(lat, 99))
		res.RevokeMax = fmtDur(lat[len(lat)-1])
	}
	return nil
}
