package testkit

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	coderws "github.com/coder/websocket"
)

// WS speaks graphql-transport-ws to a server's /graphql, as the graphql-ws
// library does.
type WS struct {
	t    testing.TB
	Conn *coderws.Conn
}

// WSMessage is one message of graphql-transport-ws.
type WSMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// DialWS opens a WebSocket on /graphql with header (nil: none), failing the
// test when it cannot; it closes when t ends.
func (c *Client) DialWS(t testing.TB, header http.Header) *WS {
	t.Helper()
	ws, resp, err := c.TryDialWS(t, header)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	return ws
}

// TryDialWS is DialWS returning the failure, with the refusal's response.
func (c *Client) TryDialWS(t testing.TB, header http.Header) (*WS, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := coderws.Dial(ctx, "ws"+strings.TrimPrefix(c.URL, "http")+"/graphql", &coderws.DialOptions{
		HTTPHeader: header, Subprotocols: []string{"graphql-transport-ws"},
	})
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { conn.CloseNow() })
	return &WS{t: t, Conn: conn}, resp, nil
}

// Send writes m.
func (c *WS) Send(m WSMessage) {
	c.t.Helper()
	b, _ := json.Marshal(m)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Conn.Write(ctx, coderws.MessageText, b); err != nil {
		c.t.Fatalf("send %s: %v", m.Type, err)
	}
}

// Read returns the next message other than ping/pong (a ping is answered),
// or the close error.
func (c *WS) Read(timeout time.Duration) (WSMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		_, b, err := c.Conn.Read(ctx)
		if err != nil {
			return WSMessage{}, err
		}
		var m WSMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return WSMessage{}, err
		}
		if m.Type == "ping" {
			c.Send(WSMessage{Type: "pong"})
			continue
		}
		if m.Type == "pong" {
			continue
		}
		return m, nil
	}
}

// Init sends connection_init with payload and returns the answer.
func (c *WS) Init(payload map[string]any) (WSMessage, error) {
	c.t.Helper()
	b, _ := json.Marshal(payload)
	c.Send(WSMessage{Type: "connection_init", Payload: b})
	return c.Read(5 * time.Second)
}

// MustInit fails unless the connection is acknowledged.
func (c *WS) MustInit(payload map[string]any) {
	c.t.Helper()
	m, err := c.Init(payload)
	if err != nil || m.Type != "connection_ack" {
		c.t.Fatalf("connection_init: got %+v, %v; want connection_ack", m, err)
	}
}

// Subscribe starts the subscription query as id.
func (c *WS) Subscribe(id, query string) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]any{"query": query})
	c.Send(WSMessage{ID: id, Type: "subscribe", Payload: b})
}

// WantClose fails unless the server closes the connection with code and
// reason within timeout (messages before it are skipped and returned).
func (c *WS) WantClose(code int, reason string, timeout time.Duration) []WSMessage {
	c.t.Helper()
	var got []WSMessage
	deadline := time.Now().Add(timeout)
	for {
		m, err := c.Read(time.Until(deadline))
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

// AuthInit is the connection_init payload that authenticates with token.
func AuthInit(token string) map[string]any { return map[string]any{"Authorization": "Bearer " + token} }

// SecurityEventsSubscription subscribes to the caller's security events.
const SecurityEventsSubscription = `subscription { securityEvents { id kind sessionId bySessionId } }`

// Eventually waits until cond holds, failing the test after 30 s: for
// what another goroutine or process does in its own time.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Context is a context that ends with the test, or 30 s from now.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
