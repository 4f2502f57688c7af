package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coderws "github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/playground"
	"github.com/example/sessionauth/internal/testkit"
)

// wsClient speaks graphql-transport-ws to a test server, as the graphql-ws
// library does.
type wsClient struct {
	t    *testing.T
	conn *coderws.Conn
}

type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// dialWS opens a WebSocket on s's /graphql with header (nil: none).
func dialWS(t *testing.T, s *testkit.Client, header http.Header) *wsClient {
	t.Helper()
	c, resp, err := tryDialWS(t, s, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	return c
}

func tryDialWS(t *testing.T, s *testkit.Client, header http.Header) (*wsClient, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := coderws.Dial(ctx, "ws"+strings.TrimPrefix(s.URL, "http")+"/graphql", &coderws.DialOptions{
		HTTPHeader: header, Subprotocols: []string{"graphql-transport-ws"},
	})
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { conn.CloseNow() })
	return &wsClient{t: t, conn: conn}, resp, nil
}

func (c *wsClient) send(m wsMessage) {
	c.t.Helper()
	b, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, coderws.MessageText, b); err != nil {
		c.t.Fatalf("send %s: %v", m.Type, err)
	}
}

// read returns the next message other than ping/pong, or the close error.
func (c *wsClient) read(timeout time.Duration) (wsMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		_, b, err := c.conn.Read(ctx)
		if err != nil {
			return wsMessage{}, err
		}
		var m wsMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return wsMessage{}, err
		}
		if m.Type == "ping" {
			c.send(wsMessage{Type: "pong"})
			continue
		}
		if m.Type == "pong" {
			continue
		}
		return m, nil
	}
}

// init sends connection_init with payload and returns the answer.
func (c *wsClient) init(payload map[string]any) (wsMessage, error) {
	c.t.Helper()
	b, _ := json.Marshal(payload)
	c.send(wsMessage{Type: "connection_init", Payload: b})
	return c.read(5 * time.Second)
}

// mustInit fails unless the connection is acknowledged.
func (c *wsClient) mustInit(payload map[string]any) {
	c.t.Helper()
	m, err := c.init(payload)
	if err != nil || m.Type != "connection_ack" {
		c.t.Fatalf("connection_init: got %+v, %v; want connection_ack", m, err)
	}
}

func (c *wsClient) subscribe(id, query string) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]any{"query": query})
	c.send(wsMessage{ID: id, Type: "subscribe", Payload: b})
}

// wantClose fails unless the server closes the connection with code and
// reason within timeout (messages before it are skipped and returned).
func (c *wsClient) wantClose(code int, reason string, timeout time.Duration) []wsMessage {
	c.t.Helper()
	var got []wsMessage
	deadline := time.Now().Add(timeout)
	for {
		m, err := c.read(time.Until(deadline))
		if err != nil {
			var ce coderws.CloseError
			if !errors.As(err, &ce) {
				c.t.Fatalf("want close %d %s, got %v (messages %+v)", code, reason, err, got)
			}
			if int(ce.Code) != code || ce.Reason != reason {
				c.t.Fatalf("closed with %d %q, want %d %q", ce.Code, ce.Reason, code, reason)
			}
			return got
		}
		got = append(got, m)
	}
}

func authInit(token string) map[string]any { return map[string]any{"Authorization": "Bearer " + token} }

const securityEventsSubscription = `subscription { securityEvents { id kind sessionId bySessionId } }`

func TestWebSocketAuthentication(t *testing.T) {
	s := newTestServer(t, nil)
	p := s.SignUp(t, "ws@example.com")

	t.Run("TokenInInitPayload", func(t *testing.T) {
		c := dialWS(t, s.Client, nil)
		c.mustInit(authInit(p.AccessToken))
	})
	t.Run("KeyAnyCase", func(t *testing.T) {
		c := dialWS(t, s.Client, nil)
		c.mustInit(map[string]any{"aUtHoRiZaTiOn": "Bearer " + p.AccessToken})
	})
	t.Run("TokenInUpgradeHeader", func(t *testing.T) {
		c := dialWS(t, s.Client, testkit.Bearer(p.AccessToken))
		c.mustInit(nil)
	})
	t.Run("UnknownToken", func(t *testing.T) {
		c := dialWS(t, s.Client, nil)
		c.send(wsMessage{Type: "connection_init", Payload: json.RawMessage(`{"Authorization":"Bearer ` + strings.Repeat("x", 256) + `"}`)})
		c.wantClose(4401, "UNAUTHENTICATED", 5*time.Second)
	})
	t.Run("MalformedValue", func(t *testing.T) {
		c := dialWS(t, s.Client, nil)
		c.send(wsMessage{Type: "connection_init", Payload: json.RawMessage(`{"authorization": 42}`)})
		c.wantClose(4401, "UNAUTHENTICATED", 5*time.Second)
	})
	t.Run("RefreshTokenIsNotAccess", func(t *testing.T) {
		c := dialWS(t, s.Client, nil)
		c.send(wsMessage{Type: "connection_init", Payload: mustJSON(authInit(p.Refresh()))})
		c.wantClose(4401, "UNAUTHENTICATED", 5*time.Second)
	})
	t.Run("ExpiredToken", func(t *testing.T) {
		q := s.Login(t, "ws@example.com", testkit.Password)
		s.backdate(t, "access_expires_at", q.Session.ID, time.Second)
		c := dialWS(t, s.Client, nil)
		c.send(wsMessage{Type: "connection_init", Payload: mustJSON(authInit(q.AccessToken))})
		c.wantClose(4401, "TOKEN_EXPIRED", 5*time.Second)
	})
	t.Run("AnonymousReachesAuthenticatedField", func(t *testing.T) {
		c := dialWS(t, s.Client, nil)
		c.mustInit(nil)
		c.subscribe("1", securityEventsSubscription)
		m, err := c.read(5 * time.Second)
		if err != nil || m.Type != "next" && m.Type != "error" {
			t.Fatalf("got %+v, %v; want the error of the subscription", m, err)
		}
		if !strings.Contains(string(m.Payload), `"UNAUTHENTICATED"`) {
			t.Fatalf("payload %s, want UNAUTHENTICATED", m.Payload)
		}
		// The connection stays open: a query still answers.
		c.subscribe("2", `query { __typename }`)
		for {
			m, err := c.read(5 * time.Second)
			if err != nil {
				t.Fatalf("connection closed after an anonymous refusal: %v", err)
			}
			if m.ID == "2" && m.Type == "next" {
				break
			}
		}
	})
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestWebSocketOrigin(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.Auth.AllowedOrigins = []string{"https://app.example.com"} })
	host := strings.TrimPrefix(s.URL, "http://")
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"https://app.example.com", true},
		{"http://" + host, true},
		{"https://evil.example.com", false},
		{"null", false},
	} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		_, resp, err := tryDialWS(t, s.Client, h)
		if tc.ok != (err == nil) {
			t.Errorf("Origin %q: dial error %v, want ok=%v", tc.origin, err, tc.ok)
		}
		if !tc.ok && (resp == nil || resp.StatusCode != http.StatusForbidden) {
			t.Errorf("Origin %q: want 403, got %v", tc.origin, resp)
		}
	}
}

func TestWebSocketInitTimeout(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.WebSocket.InitTimeout = 200 * time.Millisecond })
	c := dialWS(t, s.Client, nil)
	c.wantClose(4408, "INIT_TIMEOUT", 5*time.Second)
}

func TestWebSocketLimits(t *testing.T) {
	s := newTestServer(t, func(c *config) {
		c.WebSocket.MaxConnectionsPerSession = 2
		c.WebSocket.MaxSubscriptions = 2
	})
	p := s.SignUp(t, "limits@example.com")
	a, b := dialWS(t, s.Client, nil), dialWS(t, s.Client, nil)
	a.mustInit(authInit(p.AccessToken))
	b.mustInit(authInit(p.AccessToken))
	third := dialWS(t, s.Client, nil)
	third.send(wsMessage{Type: "connection_init", Payload: mustJSON(authInit(p.AccessToken))})
	third.wantClose(4429, "TOO_MANY_CONNECTIONS", 5*time.Second)

	// One closes: room for another.
	b.conn.Close(coderws.StatusNormalClosure, "")
	eventually(t, func() bool { return s.wsCount() == 1 })
	d := dialWS(t, s.Client, nil)
	d.mustInit(authInit(p.AccessToken))

	a.subscribe("1", securityEventsSubscription)
	a.subscribe("2", securityEventsSubscription)
	a.subscribe("3", securityEventsSubscription)
	a.wantClose(4429, "TOO_MANY_SUBSCRIPTIONS", 5*time.Second)
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *testServer) wsCount() int {
	h := s.handler.ws
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// TestWebSocketLifetime: every way a connection's token stops
// authenticating closes it with API.md's code and reason.
func TestWebSocketLifetime(t *testing.T) {
	s := newTestServer(t, nil)
	p := s.SignUp(t, "life@example.com")
	open := func(t *testing.T, token string) *wsClient {
		c := dialWS(t, s.Client, nil)
		c.mustInit(authInit(token))
		return c
	}
	t.Run("Logout", func(t *testing.T) {
		q := s.Login(t, "life@example.com", testkit.Password)
		c := open(t, q.AccessToken)
		testkit.WantOK(t, s.Post(t, q.AccessToken, testkit.LogoutMutation, nil))
		c.wantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
	t.Run("RevokeSession", func(t *testing.T) {
		q := s.Login(t, "life@example.com", testkit.Password)
		c := open(t, q.AccessToken)
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}))
		c.wantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
	t.Run("RevokeOtherSessions", func(t *testing.T) {
		q := s.Login(t, "life@example.com", testkit.Password)
		c := open(t, q.AccessToken)
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.RevokeOthersMutation, nil))
		c.wantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
	t.Run("Refresh", func(t *testing.T) {
		q := s.Login(t, "life@example.com", testkit.Password)
		c := open(t, q.AccessToken)
		s.Refresh(t, q.Refresh())
		c.wantClose(4401, "TOKEN_EXPIRED", time.Second+500*time.Millisecond)
	})
	t.Run("Replay", func(t *testing.T) {
		s := newTestServer(t, func(c *config) { c.Auth.ReuseWindow = 0 })
		q := s.SignUp(t, "replay@example.com")
		r := s.Refresh(t, q.Refresh())
		testkit.WantOK(t, s.Post(t, r.AccessToken, testkit.MeQuery, nil)) // the successor is used
		c := open2(t, s, r.AccessToken)
		testkit.WantCode(t, s.Post(t, q.Refresh(), testkit.RefreshMutation, nil), "REFRESH_TOKEN_REUSED")
		c.wantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
	t.Run("Expiry", func(t *testing.T) {
		s := newTestServer(t, func(c *config) { c.Auth.AccessTTL = 2 * time.Second })
		q := s.SignUp(t, "expiry@example.com")
		c := open2(t, s, q.AccessToken)
		c.wantClose(4401, "TOKEN_EXPIRED", 4*time.Second)
	})
	t.Run("SessionCap", func(t *testing.T) {
		s := newTestServer(t, func(c *config) { c.Auth.MaxSessionsPerUser = 1 })
		q := s.SignUp(t, "cap@example.com")
		c := open2(t, s, q.AccessToken)
		s.Login(t, "cap@example.com", testkit.Password) // ends the least recently used: q's
		c.wantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
	t.Run("ChangePassword", func(t *testing.T) {
		q := s.Login(t, "life@example.com", testkit.Password)
		c := open(t, q.AccessToken)
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "another horse battery"}))
		c.wantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
}

func open2(t *testing.T, s *testServer, token string) *wsClient {
	t.Helper()
	c := dialWS(t, s.Client, nil)
	c.mustInit(authInit(token))
	return c
}

// TestWebSocketAcrossInstances: a revocation on one instance closes the
// connection held by another within a second.
func TestWebSocketAcrossInstances(t *testing.T) {
	pgtest.PostgresOnly(t, "one process on SQLite: instances share nothing but the file; see TestWebSocketLifetime")
	url := pgtest.New(t)
	a := newTestServerOn(t, url, nil)
	b := newTestServerOn(t, url, nil)
	p := a.SignUp(t, "two@example.com")
	q := a.Login(t, "two@example.com", testkit.Password)
	c := open2(t, b, q.AccessToken)
	c.subscribe("1", securityEventsSubscription)
	eventually(t, func() bool { return b.svc.Watched() == 1 })
	testkit.WantOK(t, a.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}))
	got := c.wantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	// The revocation recorded its event on a; b's device receives it
	// before its close.
	if len(got) == 0 || got[len(got)-1].Type != "next" || !strings.Contains(string(got[len(got)-1].Payload), "SESSION_REVOKED") {
		t.Fatalf("before the close: %+v; want the SESSION_REVOKED event last", got)
	}
}

// TestWebSocketDeleteMyAccount: deleting the account ends its sessions'
// connections with 4403.
func TestWebSocketDeleteMyAccount(t *testing.T) {
	s := newTestServer(t, nil)
	p := s.SignUp(t, "gone@example.com")
	q := s.Login(t, "gone@example.com", testkit.Password)
	c := open2(t, s, q.AccessToken)
	testkit.WantOK(t, s.Post(t, p.AccessToken, `mutation($p: String!) { deleteMyAccount(password: $p) }`, map[string]any{"p": testkit.Password}))
	c.wantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
}

// TestWebSocketEventBeforeClose: a device whose session ends receives the
// event recorded with the ending before its connection closes, even when
// the change was made by SQL of its own (another process, the operator).
func TestWebSocketEventBeforeClose(t *testing.T) {
	s := newTestServer(t, nil)
	p := s.SignUp(t, "order@example.com")
	c := open2(t, s, p.AccessToken)
	c.subscribe("1", securityEventsSubscription)
	eventually(t, func() bool { return s.svc.Watched() == 1 })
	time.Sleep(200 * time.Millisecond) // the subscription is running
	ctx := ctxT(t)
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		now := database.DialectOf(s.db).Now
		if _, err := tx.NewUpdate().Table("sessions").Set("revoked_at = "+now).Where("id = ?", p.Session.ID).Exec(ctx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO security_events (id, user_id, kind, at, session_id) VALUES (?, ?, 'SESSION_REVOKED', "+now+", ?)",
			uuid.Must(uuid.NewV7()).String(), p.User.ID, p.Session.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s.svc.SyncInvalidations(ctx)
	got := c.wantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	var kinds []string
	for _, m := range got {
		kinds = append(kinds, m.Type+":"+string(m.Payload))
	}
	if len(got) == 0 || got[0].Type != "next" || !strings.Contains(string(got[0].Payload), "SESSION_REVOKED") {
		t.Fatalf("before the close: %v; want the SESSION_REVOKED event", kinds)
	}
	for _, m := range got {
		if m.Type == "complete" {
			t.Fatalf("the subscription completed before the close: %v; it ends with the 4403", kinds)
		}
	}
}

// TestWebSocketShutdownAndObservability runs the real program: a connection
// outlives the 10 s request deadline's reach (it is not a request), is logged
// when it opens and closes, counted in the metrics, and closed with 1001 by a
// graceful stop, which then completes.
func TestWebSocketShutdownAndObservability(t *testing.T) {
	url := pgtest.NewURL(t)
	srv := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": url, "METRICS_ADDR": "127.0.0.1:0"})
	p := srv.SignUp(t, "shut@example.com")
	c := dialWS(t, srv.Client, nil)
	c.mustInit(authInit(p.AccessToken))
	c.subscribe("1", securityEventsSubscription)
	anon := dialWS(t, srv.Client, nil)
	anon.mustInit(nil)

	metrics := func() string {
		resp, err := http.Get(srv.Metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if m := metrics(); !strings.Contains(m, "sessionauth_websocket_connections 2") {
		t.Fatalf("gauge of open connections missing or wrong:\n%s", grepLines(m, "websocket"))
	}
	// A third, closed by its client, is counted by reason.
	third := dialWS(t, srv.Client, nil)
	third.mustInit(authInit(p.AccessToken))
	third.conn.Close(coderws.StatusNormalClosure, "")
	eventually(t, func() bool {
		m := metrics()
		return strings.Contains(m, `sessionauth_websocket_closes_total{reason="client_closed"} 1`) &&
			strings.Contains(m, "sessionauth_websocket_connections 2")
	})
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Stop() }()
	c.wantClose(1001, "GOING_AWAY", 5*time.Second)
	anon.wantClose(1001, "GOING_AWAY", 5*time.Second)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("graceful stop did not finish")
	}
	var opened, closed int
	for _, line := range srv.Logs.Lines(t) {
		switch line["msg"] {
		case "websocket opened":
			opened++
		case "websocket closed":
			closed++
			if line["reason"] == "client_closed" {
				continue
			}
			if line["reason"] != "GOING_AWAY" || line["code"] != float64(1001) || line["duration_ms"] == nil {
				t.Errorf("close line %v, want GOING_AWAY 1001 with a duration", line)
			}
			if line["session_id"] != nil && line["session_id"] != p.Session.ID {
				t.Errorf("close line names session %v, want %s", line["session_id"], p.Session.ID)
			}
		}
	}
	if opened != 3 || closed != 3 {
		t.Fatalf("%d opened and %d closed lines, want 3 each:\n%s", opened, closed, srv.Logs)
	}
	if strings.Contains(srv.Logs.String(), p.AccessToken) {
		t.Fatal("the access token reached the log")
	}
}

func grepLines(s, word string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, word) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}

// TestSubscriptionsWithGraphQLWS drives the server with a real client, the
// graphql-ws library (internal/playground/web/ws-client-test.mjs, run by
// Node's test runner): lazy connectionParams returning the current token,
// refresh and reconnect after 4401, stop after 4403. It needs node and
// npm ci --prefix internal/playground/web (bash test.sh does it).
func TestSubscriptionsWithGraphQLWS(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: install Node.js 20 or later with npm, then bash test.sh")
	}
	if _, err := os.Stat(filepath.Join(playgroundWeb, "node_modules", "graphql-ws", "package.json")); err != nil {
		t.Fatal("graphql-ws is not installed: npm ci --prefix " + playgroundWeb + " (bash test.sh does it)")
	}
	s := newTestServer(t, func(c *config) { c.Auth.AccessTTL = 3 * time.Second })
	s.SignUp(t, "node@example.com")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "ws-client-test.mjs")
	cmd.Dir = playgroundWeb
	cmd.Env = append(os.Environ(), "SESSIONAUTH_URL="+s.URL, "SESSIONAUTH_EMAIL=node@example.com", "SESSIONAUTH_PASSWORD="+testkit.Password)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test ws-client-test.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestPlaygroundSubscription: the playground document's SecurityEvents
// operation subscribes over the WebSocket as GraphiQL sends it (the whole
// document and an operation name).
func TestPlaygroundSubscription(t *testing.T) {
	s := newTestServer(t, nil)
	p := s.SignUp(t, "pg@example.com")
	send := func(c *wsClient) {
		b, _ := json.Marshal(map[string]any{"query": playground.Document, "operationName": "SecurityEvents"})
		c.send(wsMessage{ID: "1", Type: "subscribe", Payload: b})
	}
	anon := dialWS(t, s.Client, nil)
	anon.mustInit(nil)
	send(anon)
	if m, err := anon.read(5 * time.Second); err != nil || !strings.Contains(string(m.Payload), "UNAUTHENTICATED") {
		t.Fatalf("anonymous: %+v, %v; want UNAUTHENTICATED", m, err)
	}
	c := dialWS(t, s.Client, nil)
	c.mustInit(map[string]any{"authorization": "Bearer " + p.AccessToken})
	send(c)
	eventually(t, func() bool { return s.svc.Watched() == 1 })
	if m, err := c.read(700 * time.Millisecond); err == nil {
		t.Fatalf("got %+v, want the subscription running quietly", m)
	}
}

// TestWebSocketPing: the server pings; a client that answers keeps its
// connection, one from which nothing comes for two intervals is cut.
func TestWebSocketPing(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.WebSocket.PingInterval = 100 * time.Millisecond })
	live := dialWS(t, s.Client, nil)
	live.mustInit(nil)
	silent := dialWS(t, s.Client, nil)
	silent.mustInit(nil)
	pings := make(chan struct{}, 100)
	go func() { // live answers pings (read does), for a second
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		for ctx.Err() == nil {
			_, b, err := live.conn.Read(ctx)
			if err != nil {
				return
			}
			if strings.Contains(string(b), `"ping"`) {
				pings <- struct{}{}
				live.conn.Write(ctx, coderws.MessageText, []byte(`{"type":"pong"}`))
			}
		}
	}()
	eventually(t, func() bool { return s.wsCount() == 1 })
	time.Sleep(500 * time.Millisecond)
	if n := s.wsCount(); n != 1 {
		t.Fatalf("%d connections, want the answering one only", n)
	}
	if len(pings) < 3 {
		t.Fatalf("%d pings in about a second, want one per 100ms", len(pings))
	}
}

// TestWebSocketStalledListener: an instance whose invalidation stream
// stalls (open, delivering nothing) cannot hear of a revocation; once its
// lease lapses it re-reads its watched sessions from the database, so the
// revoked session's connection still closes with 4403, within the session
// cache's bound (the 1 s lease) plus a read.
func TestWebSocketStalledListener(t *testing.T) {
	pgtest.PostgresOnly(t, "the invalidation stream is PostgreSQL's; SQLite re-reads every 500 ms (TestWebSocketLifetime)")
	viaProxy, direct, proxy := testkit.ProxiedDatabase(t)
	var logs testkit.SyncBuffer
	a := newTestServerOn(t, direct, nil)
	b := cachingViaProxy(t, direct, viaProxy, &logs, nil)
	waitFor(t, "both caches on", func() bool { return a.svc.CacheLive() && b.svc.CacheLive() })
	p := a.SignUp(t, "stall-ws@example.com")
	q := a.Login(t, "stall-ws@example.com", testkit.Password)
	c := open2(t, b, q.AccessToken)
	alive := open2(t, b, p.AccessToken)
	eventually(t, func() bool { return b.svc.Watched() == 2 })

	proxy.Stall()
	testkit.WantOK(t, a.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}))
	c.wantClose(4403, "SESSION_ENDED", 2500*time.Millisecond)
	if proxy.Stats().Dropped == 0 {
		t.Fatal("the proxy dropped nothing: the stall was not exercised")
	}
	// The other connection's session is live: re-reading keeps it open.
	if m, err := alive.read(time.Second); err != nil && !strings.Contains(err.Error(), "deadline") && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the live session's connection: %+v, %v", m, err)
	}
}

// TestSubscriptionOverHTTPRefused: a subscription document over POST or
// GET answers BAD_USER_INPUT at once instead of holding the request until
// its deadline.
func TestSubscriptionOverHTTPRefused(t *testing.T) {
	s := newTestServer(t, nil)
	p := s.SignUp(t, "http-sub@example.com")
	start := time.Now()
	testkit.WantCode(t, s.Post(t, p.AccessToken, securityEventsSubscription, nil), "BAD_USER_INPUT")
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the refusal took %v", took)
	}
}
