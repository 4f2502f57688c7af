package api

import (
	"context"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/example/sessionauth/auth"
)

// metrics are served at /metrics in the Prometheus text format, on a listener
// of their own (METRICS_ADDR), never the API's: they tell anyone who can read
// them how many logins fail and when, and the API is public. Every label
// value comes from a fixed set (our schema's fields, API.md's codes), never
// from the client, so the series cannot multiply.
type metrics struct {
	registry *prometheus.Registry
	// costly counts the calls of each @costly mutation by result, by the
	// mutation's name (schema.graphqls names each counter).
	costly      map[string]*prometheus.CounterVec
	revocations *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	wsOpen      prometheus.Gauge
	wsCloses    *prometheus.CounterVec
}

func newMetrics() *metrics { return newMetricsCounting(schemaCostly()) }

func newMetricsCounting(costly []costlyMutation) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		costly:   map[string]*prometheus.CounterVec{},
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionauth_sessions_revoked_total", Help: "Sessions ended, by how: logout, revoke_session, revoke_others, replay.",
		}, []string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sessionauth_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		wsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessionauth_websocket_connections", Help: "WebSocket (subscription) connections open now.",
		}),
		wsCloses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionauth_websocket_closes_total", Help: "WebSocket connections closed, by reason: SESSION_ENDED, TOKEN_EXPIRED, UNAUTHENTICATED, SERVICE_UNAVAILABLE, INIT_TIMEOUT, TOO_MANY_CONNECTIONS, TOO_MANY_SUBSCRIPTIONS, GOING_AWAY, client_closed, connection_lost (no close frame), other.",
		}, []string{"reason"}),
	}
	for _, c := range costly {
		m.costly[c.name] = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: c.metric,
			Help: "Calls of " + c.name + " by result: ok, failed (wrong credentials), limited (throttled), invalid (bad input), " +
				"refused (email taken, forbidden), reused, expired, unauthenticated, error.",
		}, []string{"result"})
		m.registry.MustRegister(m.costly[c.name])
	}
	m.registry.MustRegister(m.revocations, m.duration, m.wsOpen, m.wsCloses,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// handler serves GET /metrics and nothing else.
func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	return mux
}

// instrument times the requests of one route.
func (m *metrics) instrument(route string, next http.Handler) http.Handler {
	observer := m.duration.WithLabelValues(route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		next.ServeHTTP(w, r)
		observer.Observe(time.Since(start).Seconds())
	})
}

// mutationFieldHooks runs countField and noteSubject around the fields of
// mutations, and of nothing else: the only fields either acts on are
// mutations' (their outcomes, and the AuthPayload of signUp, login and
// refresh). Registered with AroundFields, gqlgen would wrap every field of
// every query and subscription in both, two closures and two calls a field
// (six for { me { id email } }), and queries are most of the traffic. Field
// middlewares registered with AroundFields still run everywhere, inside
// these.
type mutationFieldHooks struct{ m *metrics }

func (mutationFieldHooks) ExtensionName() string { return "MutationFieldHooks" }

func (mutationFieldHooks) Validate(graphql.ExecutableSchema) error { return nil }

func (h mutationFieldHooks) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil || oc.Operation.Operation != ast.Mutation {
		return nil
	}
	inner := oc.ResolverMiddleware
	oc.ResolverMiddleware = func(ctx context.Context, next graphql.Resolver) (any, error) {
		return h.m.countField(ctx, func(ctx context.Context) (any, error) {
			return noteSubject(ctx, func(ctx context.Context) (any, error) { return inner(ctx, next) })
		})
	}
	return nil
}

// countField is a gqlgen field middleware counting the outcomes of the
// @costly mutations, and the sessions the others end.
func (m *metrics) countField(ctx context.Context, next graphql.Resolver) (any, error) {
	res, err := next(ctx)
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || fc.Object != "Mutation" {
		return res, err
	}
	code := auth.ErrorCode(err)
	if err == nil {
		code = "ok"
	}
	if c := m.costly[fc.Field.Name]; c != nil {
		c.WithLabelValues(result(code)).Inc()
	}
	switch fc.Field.Name {
	case "refresh":
		if code == auth.CodeRefreshTokenReused {
			m.revocations.WithLabelValues("replay").Inc()
		}
	case "logout":
		if err == nil {
			m.revocations.WithLabelValues("logout").Inc()
		} else if code == auth.CodeRefreshTokenReused { // a replayed refresh token logs out too
			m.revocations.WithLabelValues("replay").Inc()
		}
	case "revokeSession":
		if err == nil {
			m.revocations.WithLabelValues("revoke_session").Inc()
		}
	case "revokeOtherSessions":
		if n, ok := res.(int); ok && err == nil {
			m.revocations.WithLabelValues("revoke_others").Add(float64(n))
		}
	}
	return res, err
}

// result is the label of a costly mutation's outcome: one code, one result,
// whichever mutation answered it.
func result(code string) string {
	switch code {
	case "ok":
		return "ok"
	case auth.CodeInvalidCredentials:
		return "failed"
	case auth.CodeRateLimited:
		return "limited"
	case auth.CodeBadUserInput:
		return "invalid"
	case auth.CodeEmailTaken, auth.CodeForbidden:
		return "refused"
	case auth.CodeRefreshTokenReused:
		return "reused"
	case auth.CodeTokenExpired:
		return "expired"
	case auth.CodeUnauthenticated:
		return "unauthenticated"
	}
	return "error"
}
