package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/api"
	"github.com/example/sessionauth/internal/database"
)

// config is everything the environment sets (API.md, "Configuration").
type config struct {
	Addr string
	// MetricsAddr is where /metrics is served (METRICS_ADDR); "" is off.
	// Never Addr.
	MetricsAddr string
	// Database is DATABASE_URL: PostgreSQL, or by default an embedded
	// SQLite file for development.
	Database database.Source
	// SessionCache answers access-token lookups from memory, kept coherent
	// across instances by LISTEN/NOTIFY (SESSION_CACHE; PostgreSQL only).
	SessionCache bool
	// SoftMemoryLimit sets the runtime's soft memory limit to
	// Auth.MemoryBudget (MEMORY_BUDGET), unless GOMEMLIMIT already set one.
	SoftMemoryLimit bool
	// GCPercent sets the collector's target to gcPercent, unless GOGC
	// already set one.
	GCPercent bool
	// Config is the transport's and the domain's: Playground, WebSocket,
	// Auth.
	api.Config
}

// loadConfig reads the configuration through getenv, the one place the
// environment is read. A value that does not parse is an error, never
// silently replaced by its default; the error names every bad variable at
// once, each with what is wrong, so one start is enough to see them all.
func loadConfig(getenv func(string) string) (config, error) {
	l := loader{getenv: getenv}
	def := api.DefaultConfig()
	cfg := config{
		Addr:         l.str("ADDR", ":8080"),
		MetricsAddr:  l.str("METRICS_ADDR", ""),
		Database:     l.database("DATABASE_URL"),
		SessionCache: l.boolean("SESSION_CACHE", true),
		Config: api.Config{
			Playground: l.boolean("PLAYGROUND", def.Playground),
			WebSocket: api.WebSocketLimits{
				InitTimeout:              l.duration("WEBSOCKET_INIT_TIMEOUT", def.WebSocket.InitTimeout, false),
				PingInterval:             l.duration("WEBSOCKET_PING_INTERVAL", def.WebSocket.PingInterval, true),
				MaxSubscriptions:         l.integer("WEBSOCKET_MAX_SUBSCRIPTIONS", def.WebSocket.MaxSubscriptions),
				MaxConnectionsPerSession: l.integer("WEBSOCKET_MAX_CONNECTIONS_PER_SESSION", def.WebSocket.MaxConnectionsPerSession),
			},
			Auth: auth.Config{
				AccessTTL:   l.duration("ACCESS_TOKEN_TTL", def.Auth.AccessTTL, false),
				RefreshTTL:  l.duration("REFRESH_TOKEN_TTL", def.Auth.RefreshTTL, false),
				ReuseWindow: l.duration("REFRESH_REUSE_WINDOW", def.Auth.ReuseWindow, true),
				AllowSignUp: l.boolean("ALLOW_SIGNUP", def.Auth.AllowSignUp),
				Throttle: auth.ThrottleConfig{
					MaxFailures:      l.integer("LOGIN_MAX_FAILURES", def.Auth.Throttle.MaxFailures),
					MaxFailuresPerIP: l.integer("LOGIN_MAX_FAILURES_PER_IP", def.Auth.Throttle.MaxFailuresPerIP),
					Window:           l.duration("LOGIN_FAILURE_WINDOW", def.Auth.Throttle.Window, false),
					MaxSignUpsPerIP:  l.integer("SIGNUP_MAX_PER_IP", def.Auth.Throttle.MaxSignUpsPerIP),
					SignUpWindow:     l.duration("SIGNUP_WINDOW", def.Auth.Throttle.SignUpWindow, false),
					DeviceTokenTTL:   l.duration("DEVICE_TOKEN_TTL", def.Auth.Throttle.DeviceTokenTTL, true),
				},
				SessionMaxLifetime: l.duration("SESSION_MAX_LIFETIME", def.Auth.SessionMaxLifetime, true),
				MaxSessionsPerUser: l.integer("MAX_SESSIONS_PER_USER", def.Auth.MaxSessionsPerUser),
				TrustedProxies:     l.prefixes("TRUSTED_PROXIES"),
				AllowedOrigins:     l.list("ALLOWED_ORIGINS"),
				SessionCacheSize:   l.positive("SESSION_CACHE_SIZE", def.Auth.SessionCacheSize),
				MemoryBudget:       l.bytes("MEMORY_BUDGET", def.Auth.MemoryBudget),
				EventRetention:     l.duration("SECURITY_EVENT_RETENTION", def.Auth.EventRetention, false),
			},
		},
		SoftMemoryLimit: getenv("GOMEMLIMIT") == "",
		GCPercent:       getenv("GOGC") == "",
	}
	if least := auth.MinMemoryBudget(cfg.Auth.SessionCacheSize); cfg.Auth.MemoryBudget < least && !l.bad["MEMORY_BUDGET"] && !l.bad["SESSION_CACHE_SIZE"] {
		l.fail("MEMORY_BUDGET", "MEMORY_BUDGET=%d MiB: the server needs at least %d MiB with SESSION_CACHE_SIZE=%d (one password hash at a time); raise it or lower SESSION_CACHE_SIZE",
			cfg.Auth.MemoryBudget>>20, (least+1<<20-1)>>20, cfg.Auth.SessionCacheSize)
	}
	if err := checkMetricsAddr(cfg.Addr, cfg.MetricsAddr); err != nil {
		l.fail("METRICS_ADDR", "%v", err)
	}
	if len(l.errs) > 0 {
		return cfg, l.errs
	}
	return cfg, nil
}

type loader struct {
	getenv func(string) string
	errs   configError
	bad    map[string]bool // the variables in errs
}

// configError lists every bad variable, each with what is wrong with it.
type configError []string

func (e configError) Error() string { return strings.Join(e, "; ") }

func (l *loader) fail(name, format string, args ...any) {
	if l.bad == nil {
		l.bad = map[string]bool{}
	}
	l.bad[name] = true
	l.errs = append(l.errs, fmt.Sprintf(format, args...))
}

func (l *loader) str(name, def string) string {
	if v := l.getenv(name); v != "" {
		return v
	}
	return def
}

func (l *loader) boolean(name string, def bool) bool {
	v := l.getenv(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		l.fail(name, "%s=%q: want true or false", name, v)
	}
	return b
}

// database reads a DATABASE_URL (see database.Parse). The value is not
// repeated in an error: it may hold a password.
func (l *loader) database(name string) database.Source {
	src, err := database.Parse(l.getenv(name))
	if err != nil {
		l.fail(name, "%s: %v", name, err)
	}
	return src
}

// integer reads a non-negative integer; 0 means "no limit" where the
// variable allows it.
func (l *loader) integer(name string, def int) int {
	v := l.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		l.fail(name, "%s=%q: want a whole number, 0 or more", name, v)
	}
	return n
}

// list reads a comma-separated list, ignoring blanks.
func (l *loader) list(name string) []string {
	var out []string
	for _, item := range strings.Split(l.getenv(name), ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// prefixes reads a comma-separated list of CIDRs; a bare address means
// just that address.
func (l *loader) prefixes(name string) []netip.Prefix {
	var out []netip.Prefix
	for _, item := range l.list(name) {
		p, err := netip.ParsePrefix(item)
		if err != nil {
			addr, aerr := netip.ParseAddr(item)
			if aerr != nil {
				l.fail(name, "%s: %q is not a CIDR such as 10.0.0.0/8", name, item)
				continue
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

func (l *loader) duration(name string, def time.Duration, zeroOK bool) time.Duration {
	v := l.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 || d == 0 && !zeroOK {
		l.fail(name, "%s=%q: want a positive Go duration such as 15m", name, v)
	}
	return d
}

// positive reads a whole number of at least 1.
func (l *loader) positive(name string, def int) int {
	n := l.integer(name, def)
	if n == 0 && !l.bad[name] {
		l.fail(name, "%s=0: want a whole number, 1 or more", name)
	}
	return n
}

// bytes reads a size: a whole number of bytes, or with one of the suffixes
// KiB, MiB, GiB (powers of 1024).
func (l *loader) bytes(name string, def int64) int64 {
	v := strings.TrimSpace(l.getenv(name))
	if v == "" {
		return def
	}
	num, unit := v, int64(1)
	for suffix, mult := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if n, ok := strings.CutSuffix(v, suffix); ok {
			num, unit = strings.TrimSpace(n), mult
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/unit {
		l.fail(name, "%s=%q: want a size such as 80MiB", name, v)
		return def
	}
	return n * unit
}

// checkMetricsAddr refuses a METRICS_ADDR that is not host:port, or that
// would share the API's listener: the same port on the same host, or on
// every host. Port 0 (any free port, as in tests) never collides.
func checkMetricsAddr(addr, metricsAddr string) error {
	if metricsAddr == "" {
		return nil
	}
	mHost, mPort, err := net.SplitHostPort(metricsAddr)
	if err != nil {
		return fmt.Errorf("METRICS_ADDR=%q: want host:port, such as 127.0.0.1:9091 or :9091", metricsAddr)
	}
	mp, err := net.LookupPort("tcp", mPort)
	if err != nil {
		return fmt.Errorf("METRICS_ADDR=%q: unknown port %q", metricsAddr, mPort)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil // ADDR's own error comes when it is listened on
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil || p != mp || p == 0 {
		return nil
	}
	if host == mHost || anyHost(host) || anyHost(mHost) {
		return fmt.Errorf("METRICS_ADDR=%q is the API's own ADDR=%q: metrics must not be served to the API's clients; "+
			"give them a port of their own, such as 127.0.0.1:9091", metricsAddr, addr)
	}
	return nil
}

// anyHost reports whether a listen address's host means every interface.
func anyHost(host string) bool {
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}
