package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	coderws "github.com/coder/websocket"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/example/sessionauth/auth"
)

// Subscriptions (API.md, "Subscriptions"): GET /graphql upgraded to a
// WebSocket speaking graphql-transport-ws, through gqlgen's Websocket
// transport. This file is the glue: who may open a connection (Origin), who
// it is (connection_init or the upgrade's Authorization), how long it may live
// (auth.WatchSession), the limits, and its close codes:
//
//	4401 UNAUTHENTICATED        the token is unknown, revoked or malformed
//	4401 TOKEN_EXPIRED          the token expired, or a refresh replaced it
//	4403 SESSION_ENDED          the session ended, on whichever instance
//	4503 SERVICE_UNAVAILABLE    the database cannot be read to check the session
//	4408 INIT_TIMEOUT           no connection_init within WEBSOCKET_INIT_TIMEOUT
//	4429 TOO_MANY_CONNECTIONS   the session already has WEBSOCKET_MAX_CONNECTIONS_PER_SESSION
//	4429 TOO_MANY_SUBSCRIPTIONS the connection already has WEBSOCKET_MAX_SUBSCRIPTIONS
//	1001 GOING_AWAY             the server is shutting down
//
// A connection is not a request: it gets neither the request deadline nor
// the body limit, and is logged and counted on its own (one line when it
// opens, one when it closes).

const (
	closeUnauthorized   = 4401
	closeForbidden      = 4403
	closeInitTimeout    = 4408
	closeTooMany        = 4429
	closeUnavailable    = 4503
	closeGoingAway      = 1001
	wsWriteTimeout      = 10 * time.Second
	wsCloseGrace        = 500 * time.Millisecond
	wsDrainTimeout      = 300 * time.Millisecond
	subprotocolTransWS  = "graphql-transport-ws"
	reasonGoingAway     = "GOING_AWAY"
	reasonClientClosed  = "client_closed"
	reasonLost          = "connection_lost"
	reasonTooManyConns  = "TOO_MANY_CONNECTIONS"
	reasonTooManySubs   = "TOO_MANY_SUBSCRIPTIONS"
	reasonInitTimeout   = "INIT_TIMEOUT"
	reasonUnavailable   = "SERVICE_UNAVAILABLE"
	gqlgenInitTimeout   = "connection initialisation timeout"
	websocketRouteLabel = "graphql_ws"
)

// isWebSocketUpgrade reports whether r asks for a WebSocket.
func isWebSocketUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// wsTransport is gqlgen's Websocket transport, taking only real WebSocket
// upgrades (gqlgen's own takes any request with an Upgrade header, which
// would steal a POST that carries `Upgrade: h2c`).
type wsTransport struct{ transport.Websocket }

func (t wsTransport) Supports(r *http.Request) bool { return isWebSocketUpgrade(r) }

// WebSocketLimits are the configured bounds of connections (Config).
type WebSocketLimits struct {
	InitTimeout              time.Duration
	PingInterval             time.Duration
	MaxSubscriptions         int
	MaxConnectionsPerSession int
}

// wsHub is every open connection of this instance: for the per-session
// limit, graceful shutdown and the gauge.
type wsHub struct {
	svc     *auth.Service
	limits  WebSocketLimits
	logger  *slog.Logger
	metrics *metrics

	mu        sync.Mutex
	conns     map[*wsConn]struct{}
	bySession map[string]int
	closing   bool
	pinging   bool // the pinger runs
	wg        sync.WaitGroup
}

func newWSHub(svc *auth.Service, limits WebSocketLimits, logger *slog.Logger, m *metrics) *wsHub {
	return &wsHub{svc: svc, limits: limits, logger: logger, metrics: m,
		conns: map[*wsConn]struct{}{}, bySession: map[string]int{}}
}

// wsConn is one connection's state, from the upgrade to its end.
type wsConn struct {
	hub    *wsHub
	opened time.Time
	reqID  string

	mu         sync.Mutex
	ws         *coderws.Conn
	code       int    // the close the server chose, 0 until it does
	reason     string // its reason
	sentCode   int    // what was written
	sentReason string
	peerClosed bool
	lost       bool               // the read failed before any close
	cancel     context.CancelFunc // ends the connection's context (gqlgen then closes)
	session    string
	user       string
	subs       int
	lastRead   atomic.Int64 // unix nanoseconds of the last message read
	deadline   *time.Timer
	draining   atomic.Bool // the session ended: completes are not sent
}

type wsConnKey struct{}

func wsConnFrom(ctx context.Context) *wsConn {
	c, _ := ctx.Value(wsConnKey{}).(*wsConn)
	return c
}

// handler serves the upgrades: the Origin rule, then the GraphQL handler
// (which must carry wsTransport) with a connection's state in the context.
func (h *wsHub) handler(allowed []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && !sameOrigin(origin, r.Host) && !slices.Contains(allowed, origin) {
			writeError(w, http.StatusForbidden, auth.CodeForbidden, "this origin may not open a WebSocket; see ALLOWED_ORIGINS")
			return
		}
		h.mu.Lock()
		if h.closing {
			h.mu.Unlock()
			writeError(w, http.StatusServiceUnavailable, auth.CodeServiceUnavailable, "the server is shutting down")
			return
		}
		c := &wsConn{hub: h, opened: time.Now(), reqID: requestID(r.Context())}
		h.conns[c] = struct{}{}
		h.wg.Add(1)
		h.mu.Unlock()
		defer h.done(c)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), wsConnKey{}, c)))
	})
}

// sameOrigin reports whether origin is the API's own: the host the client
// asked for (a proxy in front keeps Host, as it must for TLS names).
func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}

// done forgets c once gqlgen has returned, and logs and counts its end.
func (h *wsHub) done(c *wsConn) {
	c.mu.Lock()
	ws, chosen, code, reason, peer, session, user := c.ws, c.code, c.sentCode, c.sentReason, c.peerClosed, c.session, c.user
	lost := c.lost
	c.mu.Unlock()
	h.mu.Lock()
	delete(h.conns, c)
	if session != "" {
		if h.bySession[session]--; h.bySession[session] <= 0 {
			delete(h.bySession, session)
		}
	}
	h.mu.Unlock()
	defer h.wg.Done()
	if ws == nil {
		return // never upgraded: the request line says why
	}
	var why string
	switch {
	case chosen != 0:
		why = reason
	case peer:
		why = reasonClientClosed
	case lost:
		why = reasonLost
	case code == 0:
		ws.CloseNow() // gqlgen gave up without a close frame (a malformed init)
		why = "closed"
	default:
		why = reason
	}
	h.metrics.wsOpen.Dec()
	h.metrics.wsCloses.WithLabelValues(closeLabel(why)).Inc()
	attrs := []any{"request_id", c.reqID, "code", code, "reason", why, "duration_ms", float64(time.Since(c.opened).Microseconds()) / 1000}
	if session != "" {
		attrs = append(attrs, "user_id", user, "session_id", session)
	}
	h.logger.Info("websocket closed", attrs...)
}

// closeLabel keeps the closes counter's label values to a fixed set.
func closeLabel(why string) string {
	switch why {
	case auth.CodeUnauthenticated, auth.CodeTokenExpired, auth.SessionEnded.String(), reasonUnavailable,
		reasonInitTimeout, reasonTooManyConns, reasonTooManySubs, reasonGoingAway, reasonClientClosed, reasonLost:
		return why
	}
	return "other"
}

// closeWith ends c with code and reason (the first reason given wins): it
// ends the connection's context, on which gqlgen closes the socket, and cuts
// the socket if that has not happened within wsCloseGrace (a client that
// does not read holds gqlgen's writer).
func (c *wsConn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.code != 0 {
		c.mu.Unlock()
		return
	}
	c.code, c.reason = code, reason
	cancel, ws := c.cancel, c.ws
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	} else if ws != nil { // still waiting for connection_init
		go ws.Close(coderws.StatusCode(code), reason)
		return
	}
	if ws != nil {
		// gqlgen closes under the lock its writes hold: a write blocked on
		// a client that does not read would hold the close until
		// wsWriteTimeout. Cut such a connection instead.
		time.AfterFunc(wsCloseGrace, func() {
			c.mu.Lock()
			sent := c.sentCode != 0
			c.mu.Unlock()
			if !sent {
				ws.CloseNow()
			}
		})
	}
}

// closeAll closes every connection with 1001 and waits until they are gone
// or ctx ends. New upgrades are refused from now on.
func (h *wsHub) closeAll(ctx context.Context) {
	h.mu.Lock()
	h.closing = true
	conns := make([]*wsConn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.closeWith(closeGoingAway, reasonGoingAway)
	}
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		for _, c := range conns {
			c.mu.Lock()
			ws := c.ws
			c.mu.Unlock()
			if ws != nil {
				ws.CloseNow()
			}
		}
	}
}

// startPinger starts the hub's pinger unless it runs or pings are off.
func (h *wsHub) startPinger() {
	if h.limits.PingInterval <= 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.pinging {
		h.pinging = true
		go h.pinger()
	}
}

// pinger sends graphql-transport-ws pings to every connection each
// PingInterval (coder/websocket's Write is safe beside gqlgen's), and cuts
// a connection from which nothing, not even a pong, came for two intervals:
// a peer that vanished without a close. It stops when no connection is left.
func (h *wsHub) pinger() {
	every := h.limits.PingInterval
	tick := time.NewTicker(every)
	defer tick.Stop()
	ping := []byte(`{"type":"ping"}`)
	for now := range tick.C {
		h.mu.Lock()
		conns := make([]*wsConn, 0, len(h.conns))
		for c := range h.conns {
			conns = append(conns, c)
		}
		if len(conns) == 0 {
			h.pinging = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		for _, c := range conns {
			c.mu.Lock()
			ws, initialised := c.ws, c.cancel != nil
			c.mu.Unlock()
			if ws == nil || !initialised {
				continue // the init timeout covers it
			}
			if now.Sub(time.Unix(0, c.lastRead.Load())) > 2*every {
				ws.CloseNow()
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			ws.Write(ctx, coderws.MessageText, ping)
			cancel()
		}
	}
}

// initFunc authenticates a connection from its connection_init (API.md:
// the payload's Authorization, any case, else the upgrade's header), applies
// the per-session limit and starts watching its session.
func (h *wsHub) initFunc(ctx context.Context, payload transport.InitPayload) (context.Context, *transport.InitPayload, error) {
	c := wsConnFrom(ctx)
	authz, _ := auth.InitAuthorization(payload)
	connCtx, id, err := h.svc.AuthenticateConnection(ctx, authz)
	if err != nil {
		code, reason := closeUnauthorized, auth.ErrorCode(err)
		if reason != auth.CodeUnauthenticated && reason != auth.CodeTokenExpired {
			code, reason = closeUnavailable, reasonUnavailable
		}
		return closeContext(ctx, code, reason), nil, err
	}
	if id != nil {
		h.mu.Lock()
		if max := h.limits.MaxConnectionsPerSession; max > 0 && h.bySession[id.Session.ID] >= max {
			h.mu.Unlock()
			return closeContext(ctx, closeTooMany, reasonTooManyConns), nil, errors.New("too many connections for this session")
		}
		h.bySession[id.Session.ID]++
		h.mu.Unlock()
	}
	connCtx, cancel := context.WithCancel(connCtx)
	c.mu.Lock()
	c.cancel = cancel
	if id != nil {
		c.session, c.user = id.Session.ID, id.Session.UserID
	}
	c.mu.Unlock()
	attrs := []any{"request_id", c.reqID}
	if id != nil {
		attrs = append(attrs, "user_id", id.Session.UserID, "session_id", id.Session.ID)
		h.svc.OnSessionEnd(connCtx, id, func(r auth.EndReason) {
			code := closeUnauthorized
			switch r {
			case auth.SessionEnded:
				code = closeForbidden
				// The device learns why: the event that ended its
				// session goes out before the close. Its streams end;
				// their "complete" is not sent (the subscription ends
				// with the close, as a client expects), and seeing it
				// written is how we know every event before it was.
				c.draining.Store(true)
				auth.DrainEvents(connCtx, wsDrainTimeout)
			case auth.Unverifiable:
				code = closeUnavailable
			}
			c.closeWith(code, r.String())
		})

	}
	h.logger.Info("websocket opened", attrs...)
	return connCtx, nil, nil
}

func closeContext(ctx context.Context, code int, reason string) context.Context {
	return transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, code), reason)
}

// limitSubscriptions is an operation middleware: a subscription outside a
// WebSocket is refused (over HTTP it would hold the request until its
// deadline and answer nothing), and a connection's subscription beyond
// WEBSOCKET_MAX_SUBSCRIPTIONS closes it with 4429.
func (h *wsHub) limitSubscriptions(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	c := wsConnFrom(ctx)
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation != ast.Subscription {
		return next(ctx)
	}
	if c == nil {
		resp := graphql.ErrorResponse(ctx, "subscriptions run over a WebSocket on GET /graphql (graphql-transport-ws)")
		for _, e := range resp.Errors {
			setCode(e, auth.CodeBadUserInput)
		}
		return graphql.OneShot(resp)
	}
	if h.limits.MaxSubscriptions <= 0 {
		return next(ctx)
	}
	c.mu.Lock()
	over := c.subs >= h.limits.MaxSubscriptions
	if !over {
		c.subs++
	}
	c.mu.Unlock()
	if over {
		c.closeWith(closeTooMany, reasonTooManySubs)
		return graphql.OneShot(graphql.ErrorResponse(ctx, "too many subscriptions on this connection"))
	}
	context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.subs--
		c.mu.Unlock()
	})
	return next(ctx)
}

// wsImplementation accepts with coder/websocket (the Origin is checked by
// wsHub.handler) and wraps each connection so that a close the server
// chooses carries its code and reason.
type wsImplementation struct{ hub *wsHub }

func (i wsImplementation) Accept(w http.ResponseWriter, r *http.Request, opts transport.WebsocketAcceptOptions) (transport.WebsocketConn, error) {
	c := wsConnFrom(r.Context())
	if c == nil {
		return nil, errors.New("websocket: no connection state (route not through wsHub.handler)")
	}
	ws, err := coderws.Accept(w, r, &coderws.AcceptOptions{
		Subprotocols:       []string{subprotocolTransWS},
		InsecureSkipVerify: true, // the Origin rule is API.md's, applied before
	})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(maxBodyBytes)
	c.lastRead.Store(time.Now().UnixNano())
	c.mu.Lock()
	c.ws = ws
	c.mu.Unlock()
	i.hub.metrics.wsOpen.Inc()
	i.hub.startPinger()
	return &wsSocket{c: c, ws: ws}, nil
}

// wsSocket is gqlgen's view of one connection.
type wsSocket struct {
	c  *wsConn
	ws *coderws.Conn
}

func (s *wsSocket) Subprotocol() string { return s.ws.Subprotocol() }

func (s *wsSocket) NextReader() (int, io.Reader, error) {
	typ, data, err := s.ws.Read(context.Background())
	s.c.lastRead.Store(time.Now().UnixNano())
	if err != nil {
		s.c.mu.Lock()
		if s.c.code == 0 && s.c.sentCode == 0 {
			s.c.lost = true // the peer went without a close frame (or we cut it)
		}
		s.c.mu.Unlock()
		if st := coderws.CloseStatus(err); st != -1 {
			s.c.mu.Lock()
			s.c.peerClosed = true
			s.c.mu.Unlock()
			if st == coderws.StatusNormalClosure || st == coderws.StatusNoStatusRcvd || st == coderws.StatusGoingAway {
				return int(typ), nil, transport.ErrWebsocketClosed
			}
		}
		return int(typ), nil, err
	}
	return int(typ), strings.NewReader(string(data)), nil
}

// WriteJSON writes one message, giving up after wsWriteTimeout (which closes
// the socket): a client that does not read must not hold the connection's
// writer, and with it every close, forever.
func (s *wsSocket) WriteJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if s.c.draining.Load() {
		var m struct{ Type string }
		if json.Unmarshal(b, &m) == nil && m.Type == "complete" {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), wsWriteTimeout)
	defer cancel()
	return s.ws.Write(ctx, coderws.MessageText, b)
}

// WriteClose writes the close frame: the one the server chose, if it did,
// else gqlgen's (its init timeout becomes graphql-ws's 4408). It does not
// wait for the peer's answer.
func (s *wsSocket) WriteClose(code int, reason string) error {
	s.c.mu.Lock()
	if s.c.code != 0 {
		code, reason = s.c.code, s.c.reason
	} else if code == transport.WebsocketCloseProtocolError && reason == gqlgenInitTimeout {
		code, reason = closeInitTimeout, reasonInitTimeout
	}
	s.c.sentCode, s.c.sentReason = code, reason
	s.c.mu.Unlock()
	go s.ws.Close(coderws.StatusCode(code), reason)
	return nil
}

func (s *wsSocket) Close() error { return nil } // WriteClose's handshake owns the end

// SetReadDeadline cuts the connection at t unless it is moved (gqlgen's
// ping: a peer that answers no ping within two intervals is gone).
func (s *wsSocket) SetReadDeadline(t time.Time) error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.c.deadline != nil {
		s.c.deadline.Stop()
		s.c.deadline = nil
	}
	if !t.IsZero() {
		s.c.deadline = time.AfterFunc(time.Until(t), func() { s.ws.CloseNow() })
	}
	return nil
}

var (
	_ transport.WebsocketConn          = (*wsSocket)(nil)
	_ transport.WebsocketReadDeadliner = (*wsSocket)(nil)
)
