package api

import (
	"context"
	"encoding/json"
	"errors"
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

func TestWebSocketAuthentication(t *testing.T) {
	s := newTestServer(t, nil)
	p := s.SignUp(t, "ws@example.com")

	t.Run("TokenInInitPayload", func(t *testing.T) {
		c := s.DialWS(t, nil)
		c.MustInit(testkit.AuthInit(p.AccessToken))
	})
	t.Run("KeyAnyCase", func(t *testing.T) {
		c := s.DialWS(t, nil)
		c.MustInit(map[string]any{"aUtHoRiZaTiOn": "Bearer " + p.AccessToken})
	})
	t.Run("TokenInUpgradeHeader", func(t *testing.T) {
		c := s.DialWS(t, testkit.Bearer(p.AccessToken))
		c.MustInit(nil)
	})
	t.Run("UnknownToken", func(t *testing.T) {
		c := s.DialWS(t, nil)
		c.Send(testkit.WSMessage{Type: "connection_init", Payload: json.RawMessage(`{"Authorization":"Bearer ` + strings.Repeat("x", 256) + `"}`)})
		c.WantClose(4401, "UNAUTHENTICATED", 5*time.Second)
	})
	t.Run("MalformedValue", func(t *testing.T) {
		c := s.DialWS(t, nil)
		c.Send(testkit.WSMessage{Type: "connection_init", Payload: json.RawMessage(`{"authorization": 42}`)})
		c.WantClose(4401, "UNAUTHENTICATED", 5*time.Second)
	})
	t.Run("RefreshTokenIsNotAccess", func(t *testing.T) {
		c := s.DialWS(t, nil)
		c.Send(testkit.WSMessage{Type: "connection_init", Payload: mustJSON(testkit.AuthInit(p.Refresh()))})
		c.WantClose(4401, "UNAUTHENTICATED", 5*time.Second)
	})
	t.Run("ExpiredToken", func(t *testing.T) {
		q := s.Login(t, "ws@example.com", testkit.Password)
		s.backdate(t, "access_expires_at", q.Session.ID, time.Second)
		c := s.DialWS(t, nil)
		c.Send(testkit.WSMessage{Type: "connection_init", Payload: mustJSON(testkit.AuthInit(q.AccessToken))})
		c.WantClose(4401, "TOKEN_EXPIRED", 5*time.Second)
	})
	t.Run("AnonymousReachesAuthenticatedField", func(t *testing.T) {
		c := s.DialWS(t, nil)
		c.MustInit(nil)
		c.Subscribe("1", testkit.SecurityEventsSubscription)
		m, err := c.Read(5 * time.Second)
		if err != nil || m.Type != "next" && m.Type != "error" {
			t.Fatalf("got %+v, %v; want the error of the subscription", m, err)
		}
		if !strings.Contains(string(m.Payload), `"UNAUTHENTICATED"`) {
			t.Fatalf("payload %s, want UNAUTHENTICATED", m.Payload)
		}
		// The connection stays open: a query still answers.
		c.Subscribe("2", `query { __typename }`)
		for {
			m, err := c.Read(5 * time.Second)
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
		_, resp, err := s.TryDialWS(t, h)
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
	c := s.DialWS(t, nil)
	c.WantClose(4408, "INIT_TIMEOUT", 5*time.Second)
}

func TestWebSocketLimits(t *testing.T) {
	s := newTestServer(t, func(c *config) {
		c.WebSocket.MaxConnectionsPerSession = 2
		c.WebSocket.MaxSubscriptions = 2
	})
	p := s.SignUp(t, "limits@example.com")
	a, b := s.DialWS(t, nil), s.DialWS(t, nil)
	a.MustInit(testkit.AuthInit(p.AccessToken))
	b.MustInit(testkit.AuthInit(p.AccessToken))
	third := s.DialWS(t, nil)
	third.Send(testkit.WSMessage{Type: "connection_init", Payload: mustJSON(testkit.AuthInit(p.AccessToken))})
	third.WantClose(4429, "TOO_MANY_CONNECTIONS", 5*time.Second)

	// One closes: room for another.
	b.Conn.Close(coderws.StatusNormalClosure, "")
	testkit.Eventually(t, "1 open WebSocket(s)", func() bool { return s.wsCount() == 1 })
	d := s.DialWS(t, nil)
	d.MustInit(testkit.AuthInit(p.AccessToken))

	a.Subscribe("1", testkit.SecurityEventsSubscription)
	a.Subscribe("2", testkit.SecurityEventsSubscription)
	a.Subscribe("3", testkit.SecurityEventsSubscription)
	a.WantClose(4429, "TOO_MANY_SUBSCRIPTIONS", 5*time.Second)
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
	open := func(t *testing.T, token string) *testkit.WS {
		c := s.DialWS(t, nil)
		c.MustInit(testkit.AuthInit(token))
		return c
	}
	t.Run("Logout", func(t *testing.T) {
		q := s.Login(t, "life@example.com", testkit.Password)
		c := open(t, q.AccessToken)
		testkit.WantOK(t, s.Post(t, q.AccessToken, testkit.LogoutMutation, nil))
		c.WantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
	t.Run("RevokeSession", func(t *testing.T) {
		q := s.Login(t, "life@example.com", testkit.Password)
		c := open(t, q.AccessToken)
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}))
		c.WantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
	t.Run("RevokeOtherSessions", func(t *testing.T) {
		q := s.Login(t, "life@example.com", testkit.Password)
		c := open(t, q.AccessToken)
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.RevokeOthersMutation, nil))
		c.WantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
	t.Run("Refresh", func(t *testing.T) {
		q := s.Login(t, "life@example.com", testkit.Password)
		c := open(t, q.AccessToken)
		s.Refresh(t, q.Refresh())
		c.WantClose(4401, "TOKEN_EXPIRED", time.Second+500*time.Millisecond)
	})
	t.Run("Replay", func(t *testing.T) {
		s := newTestServer(t, func(c *config) { c.Auth.ReuseWindow = 0 })
		q := s.SignUp(t, "replay@example.com")
		r := s.Refresh(t, q.Refresh())
		testkit.WantOK(t, s.Post(t, r.AccessToken, testkit.MeQuery, nil)) // the successor is used
		c := open2(t, s, r.AccessToken)
		testkit.WantCode(t, s.Post(t, q.Refresh(), testkit.RefreshMutation, nil), "REFRESH_TOKEN_REUSED")
		c.WantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
	t.Run("Expiry", func(t *testing.T) {
		s := newTestServer(t, func(c *config) { c.Auth.AccessTTL = 2 * time.Second })
		q := s.SignUp(t, "expiry@example.com")
		c := open2(t, s, q.AccessToken)
		c.WantClose(4401, "TOKEN_EXPIRED", 4*time.Second)
	})
	t.Run("SessionCap", func(t *testing.T) {
		s := newTestServer(t, func(c *config) { c.Auth.MaxSessionsPerUser = 1 })
		q := s.SignUp(t, "cap@example.com")
		c := open2(t, s, q.AccessToken)
		s.Login(t, "cap@example.com", testkit.Password) // ends the least recently used: q's
		c.WantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
	t.Run("ChangePassword", func(t *testing.T) {
		q := s.Login(t, "life@example.com", testkit.Password)
		c := open(t, q.AccessToken)
		testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "another horse battery"}))
		c.WantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
	})
}

func open2(t *testing.T, s *testServer, token string) *testkit.WS {
	t.Helper()
	c := s.DialWS(t, nil)
	c.MustInit(testkit.AuthInit(token))
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
	c.Subscribe("1", testkit.SecurityEventsSubscription)
	testkit.Eventually(t, "1 watched session(s)", func() bool { return b.svc.Watched() == 1 })
	testkit.WantOK(t, a.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}))
	got := c.WantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
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
	c.WantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
}

// TestWebSocketEventBeforeClose: a device whose session ends receives the
// event recorded with the ending before its connection closes, even when
// the change was made by SQL of its own (another process, the operator).
func TestWebSocketEventBeforeClose(t *testing.T) {
	s := newTestServer(t, nil)
	p := s.SignUp(t, "order@example.com")
	c := open2(t, s, p.AccessToken)
	c.Subscribe("1", testkit.SecurityEventsSubscription)
	testkit.Eventually(t, "1 watched session(s)", func() bool { return s.svc.Watched() == 1 })
	time.Sleep(200 * time.Millisecond) // the subscription is running
	ctx := testkit.Context(t)
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
	got := c.WantClose(4403, "SESSION_ENDED", time.Second+500*time.Millisecond)
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
	send := func(c *testkit.WS) {
		b, _ := json.Marshal(map[string]any{"query": playground.Document, "operationName": "SecurityEvents"})
		c.Send(testkit.WSMessage{ID: "1", Type: "subscribe", Payload: b})
	}
	anon := s.DialWS(t, nil)
	anon.MustInit(nil)
	send(anon)
	if m, err := anon.Read(5 * time.Second); err != nil || !strings.Contains(string(m.Payload), "UNAUTHENTICATED") {
		t.Fatalf("anonymous: %+v, %v; want UNAUTHENTICATED", m, err)
	}
	c := s.DialWS(t, nil)
	c.MustInit(map[string]any{"authorization": "Bearer " + p.AccessToken})
	send(c)
	testkit.Eventually(t, "1 watched session(s)", func() bool { return s.svc.Watched() == 1 })
	if m, err := c.Read(700 * time.Millisecond); err == nil {
		t.Fatalf("got %+v, want the subscription running quietly", m)
	}
}

// TestWebSocketPing: the server pings; a client that answers keeps its
// connection, one from which nothing comes for two intervals is cut.
func TestWebSocketPing(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.WebSocket.PingInterval = 100 * time.Millisecond })
	live := s.DialWS(t, nil)
	live.MustInit(nil)
	silent := s.DialWS(t, nil)
	silent.MustInit(nil)
	pings := make(chan struct{}, 100)
	go func() { // live answers pings (read does), for a second
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		for ctx.Err() == nil {
			_, b, err := live.Conn.Read(ctx)
			if err != nil {
				return
			}
			if strings.Contains(string(b), `"ping"`) {
				pings <- struct{}{}
				live.Conn.Write(ctx, coderws.MessageText, []byte(`{"type":"pong"}`))
			}
		}
	}()
	testkit.Eventually(t, "1 open WebSocket(s)", func() bool { return s.wsCount() == 1 })
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
	testkit.Eventually(t, "both caches on", func() bool { return a.svc.CacheLive() && b.svc.CacheLive() })
	p := a.SignUp(t, "stall-ws@example.com")
	q := a.Login(t, "stall-ws@example.com", testkit.Password)
	c := open2(t, b, q.AccessToken)
	alive := open2(t, b, p.AccessToken)
	testkit.Eventually(t, "2 watched session(s)", func() bool { return b.svc.Watched() == 2 })

	proxy.Stall()
	testkit.WantOK(t, a.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}))
	c.WantClose(4403, "SESSION_ENDED", 2500*time.Millisecond)
	if proxy.Stats().Dropped == 0 {
		t.Fatal("the proxy dropped nothing: the stall was not exercised")
	}
	// The other connection's session is live: re-reading keeps it open.
	if m, err := alive.Read(time.Second); err != nil && !strings.Contains(err.Error(), "deadline") && !errors.Is(err, context.DeadlineExceeded) {
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
	testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.SecurityEventsSubscription, nil), "BAD_USER_INPUT")
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the refusal took %v", took)
	}
}
