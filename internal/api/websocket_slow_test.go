package api

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/transport"

	"github.com/example/sessionauth/graph"
	"github.com/example/sessionauth/internal/testkit"
	"github.com/example/sessionauth/resolvers"
)

// slowWSServer serves s's service over New's WebSocket glue (wsHub,
// wsTransport, initFunc, limitSubscriptions), with a field middleware that
// blocks, ignoring its context, in the field named by block until the test
// ends: a resolver that does not yield, the worst a product team's
// subscription can do. New has no hook for a resolver of the test's,
// hence this second handler over the same Service: the revocations go
// through s's real handler and reach the watch in-process.
func slowWSServer(t *testing.T, s *testServer, block *atomic.Value, entered chan<- string) *testServer {
	t.Helper()
	cfg := DefaultConfig()
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	gql := handler.New(graph.NewExecutableSchema((&resolvers.Resolver{Auth: s.svc}).Config()))
	ws := newWSHub(s.svc, cfg.WebSocket, logger, newMetrics())
	gql.AddTransport(wsTransport{transport.Websocket{
		Implementation: wsImplementation{ws}, InitFunc: ws.initFunc, InitTimeout: cfg.WebSocket.InitTimeout,
	}})
	gql.AroundOperations(ws.limitSubscriptions)
	gate := make(chan struct{})
	gql.AroundFields(func(ctx context.Context, next graphql.Resolver) (any, error) {
		if name, _ := block.Load().(string); name != "" && graphql.GetFieldContext(ctx).Field.Name == name {
			select {
			case entered <- name:
			default:
			}
			<-gate
		}
		return next(ctx)
	})
	srv := httptest.NewServer(ws.handler(nil, s.svc.Middleware(gql)))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(gate) }) // runs first: the blocked resolvers return
	return &testServer{Client: &testkit.Client{URL: srv.URL}, db: s.db, svc: s.svc, handler: &Server{ws: ws}}
}

// TestWebSocketSlowHandler: a connection whose session is revoked while one
// of its handlers is blocked is still closed with 4403 SESSION_ENDED at once
// (API.md: within one second). The handler blocks until the test ends, so a
// close that waited for it would not come at all; the deadline is generous
// and the delay is logged, not asserted.
func TestWebSocketSlowHandler(t *testing.T) {
	s := newTestServer(t, nil)
	p := s.SignUp(t, "slow@example.com")
	var block atomic.Value
	entered := make(chan string, 1)
	slow := slowWSServer(t, s, &block, entered)

	for _, tc := range []struct {
		name, field string
		event       bool // an event must come for the handler to run
	}{
		// The subscription's resolver itself never returns its stream.
		{"Resolver", "securityEvents", false},
		// The stream runs; resolving a field of an event it delivered
		// blocks, so the drain's wait for that stream cannot end.
		{"EventField", "kind", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := s.Login(t, "slow@example.com", testkit.Password)
			block.Store(tc.field)
			c := open2(t, slow, q.AccessToken)
			c.Subscribe("1", testkit.SecurityEventsSubscription)
			if tc.event {
				testkit.Eventually(t, "1 watched session(s)", func() bool { return s.svc.Watched() == 1 })
				time.Sleep(200 * time.Millisecond)               // the stream has begun
				s.Login(t, "slow@example.com", testkit.Password) // SIGNED_IN, for the stream
			}
			select {
			case <-entered:
			case <-time.After(5 * time.Second):
				t.Fatalf("the handler never reached %s", tc.field)
			}
			testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.RevokeMutation, map[string]any{"id": q.Session.ID}))
			revoked := time.Now()
			c.WantClose(4403, "SESSION_ENDED", 5*time.Second)
			t.Logf("closed %v after the revocation returned (API.md: within 1s)", time.Since(revoked))
			testkit.Eventually(t, "0 open WebSocket(s)", func() bool { return slow.wsCount() == 0 })
		})
	}
}
