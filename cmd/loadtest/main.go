// Command loadtest drives a running sessionauth server over HTTP and reports
// throughput and latency of its hot paths (issue 6, BENCHMARKS.md):
//
//	a  { __typename } without a token: the baseline
//	b  { me { id email } } with a valid access token
//	c  { mySessions { id } }
//	d  refresh chains: each client refreshes with the token it was last given
//	e  login
//	f  logout of sessions made with SQL: a revocation (needs -database-url)
//
// It starts nothing by itself. -url may list several instances of one
// deployment: client i talks to instance i mod n, and each step of a
// refresh chain goes to the next instance, so that every rotation must be
// honoured by an instance other than the one that made it. Each scenario runs with -c concurrent clients
// for -d (after -warmup), one scenario after the other, so that they can be
// compared side by side in one run. It seeds its own users and sessions
// through the API and, given -database-url, can pre-fill the sessions table
// to -prefill rows with SQL. Failed requests are counted, never fatal.
//
//	go run ./cmd/loadtest -url http://127.0.0.1:8080/graphql -c 16 -d 15s
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// options is everything the command line sets.
type options struct {
	URL          string   // as given
	URLs         []string // -url split at commas
	SeedURL      string
	Clients      int
	Tokens       int
	Sessions     int
	Duration     time.Duration
	Warmup       time.Duration
	PerClient    int // requests per client; when positive, replaces Duration and Warmup
	Rounds       int
	Pause        time.Duration
	Timeout      time.Duration
	Scenarios    []string
	Prefill      int
	PrefillUsers int
	DatabaseURL  string
	SQLMarkers   bool
	PID          int
	PeerPIDs     []int
	JSON         bool
	// The subscription scenario (subscriptions.go).
	WSConns       int
	WSPerSession  int
	WSIdle        time.Duration
	WSRevocations int
	WSSubscribe   bool
	MetricsURL    string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var scenarios string
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.URL, "url", "http://127.0.0.1:8080/graphql", "GraphQL endpoint of a running server, or a comma-separated list of several instances of one deployment (clients and refresh steps are spread over them)")
	fs.StringVar(&o.SeedURL, "seed-url", "", "GraphQL endpoint for seeding (signUp, login) when it should not go through -url: another instance on the same database keeps password hashing out of the measured server's memory")
	fs.IntVar(&o.Clients, "c", 16, "concurrent clients per scenario")
	fs.IntVar(&o.Tokens, "tokens", 0, "distinct access tokens (one user each) that (b) and (c) cycle through; at least -c")
	fs.IntVar(&o.Sessions, "sessions", 0, "distinct sessions (access tokens) that (b) and (c) cycle through, created with SQL for the -c users of pool u (needs -database-url); replaces -tokens")
	fs.DurationVar(&o.Duration, "d", 15*time.Second, "measured duration of each scenario")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured load before each scenario's measurement")
	fs.IntVar(&o.PerClient, "n", 0, "exact number of requests per client (replaces -d and -warmup; for counting SQL statements)")
	fs.IntVar(&o.Rounds, "rounds", 1, "run the selected scenarios this many times over, interleaved (a,b,a,b,…), and report each round and the median (b)/(a): steadier on a machine shared with other work")
	fs.DurationVar(&o.Pause, "pause", time.Second, "idle time between scenarios")
	fs.DurationVar(&o.Timeout, "timeout", 30*time.Second, "timeout of one HTTP request")
	fs.StringVar(&scenarios, "scenarios", "a,b,c,d,e", "comma-separated scenarios to run, in this order: "+scenarioKeys())
	fs.IntVar(&o.Prefill, "prefill", 0, "fill the sessions table up to this many rows with SQL first (needs -database-url)")
	fs.IntVar(&o.PrefillUsers, "prefill-users", 10, "users (seeded through the API) that own the pre-filled sessions")
	fs.StringVar(&o.DatabaseURL, "database-url", "", "PostgreSQL URL of the server's database, for -prefill, -sql-markers and the table size")
	fs.BoolVar(&o.SQLMarkers, "sql-markers", false, "run SELECT 'loadtest-marker <run> <scenario> begin|end' around each measurement (for counting statements in the PostgreSQL log)")
	fs.IntVar(&o.PID, "pid", 0, "process id of the server (same machine), to report its peak VmRSS and CPU time per request")
	fs.Func("peer-pids", "comma-separated process ids of the other instances (same machine), to report their CPU time per request too: what the measured instance's traffic costs the rest of the deployment", func(v string) error {
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return fmt.Errorf("not a process id: %q", f)
			}
			o.PeerPIDs = append(o.PeerPIDs, n)
		}
		return nil
	})
	fs.BoolVar(&o.JSON, "json", false, "print the results as JSON instead of a table")
	fs.IntVar(&o.WSConns, "ws-conns", 0, "subscription scenario: hold this many idle authenticated WebSocket connections open on -url and report the server's memory per connection (with -pid and/or -metrics-url); replaces the HTTP scenarios")
	fs.IntVar(&o.WSPerSession, "ws-per-session", 10, "connections per session for -ws-conns (at most the server's WEBSOCKET_MAX_CONNECTIONS_PER_SESSION)")
	fs.BoolVar(&o.WSSubscribe, "ws-subscribe", true, "each -ws-conns connection runs a securityEvents subscription (false: initialised only)")
	fs.DurationVar(&o.WSIdle, "ws-idle", 5*time.Second, "how long the -ws-conns connections stay idle before memory is sampled")
	fs.IntVar(&o.WSRevocations, "ws-revocations", 0, "subscription scenario: this many times, revokeSession through -seed-url (another instance) while the session's connection is open on -url; report the time to its 4403 close")
	fs.StringVar(&o.MetricsURL, "metrics-url", "", "the /metrics URL of the -url server, for its Go heap and goroutines in the subscription scenario")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.Scenarios, err = parseScenarios(scenarios); err != nil {
		return o, err
	}
	switch {
	case o.Clients < 1:
		return o, fmt.Errorf("-c must be at least 1")
	case o.Rounds < 1:
		return o, fmt.Errorf("-rounds must be at least 1")
	case o.PerClient < 0:
		return o, fmt.Errorf("-n must not be negative")
	case o.PerClient == 0 && o.Duration <= 0:
		return o, fmt.Errorf("-d must be positive")
	case o.Warmup < 0 || o.Pause < 0 || o.Timeout <= 0:
		return o, fmt.Errorf("-warmup and -pause must not be negative, -timeout must be positive")
	case o.Tokens < 0 || o.Sessions < 0:
		return o, fmt.Errorf("-tokens and -sessions must not be negative")
	case o.Sessions > 0 && o.DatabaseURL == "":
		return o, fmt.Errorf("-sessions needs -database-url")
	case o.Prefill < 0 || o.PrefillUsers < 1:
		return o, fmt.Errorf("-prefill must not be negative and -prefill-users must be at least 1")
	case (o.Prefill > 0 || o.SQLMarkers) && o.DatabaseURL == "":
		return o, fmt.Errorf("-prefill and -sql-markers need -database-url")
	}
	for _, u := range strings.Split(o.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			o.URLs = append(o.URLs, u)
		}
	}
	if len(o.URLs) == 0 {
		return o, fmt.Errorf("-url is empty")
	}
	if o.PerClient > 0 {
		o.Warmup = 0
	}
	return o, nil
}

// parseScenarios reads "a,b,c": known keys, in the order given, each once.
func parseScenarios(s string) ([]string, error) {
	var out []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(strings.ToLower(k))
		if k == "" {
			continue
		}
		if scenarioByKey(k) == nil {
			return nil, fmt.Errorf("unknown scenario %q (want some of %s)", k, scenarioKeys())
		}
		if !contains(out, k) {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenario selected")
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	e := &env{
		opts:  o,
		runID: randomHex(4),
		logf:  logf,
	}
	for _, u := range o.URLs {
		e.apis = append(e.apis, newClient(u, o.Clients, o.Timeout))
	}
	e.seedAPI = e.apis[0]
	if o.SeedURL != "" {
		e.seedAPI = newClient(o.SeedURL, seedConcurrency, o.Timeout)
	}
	if o.DatabaseURL != "" {
		if e.db, err = openDB(ctx, o.DatabaseURL); err != nil {
			return err
		}
		defer e.db.Close(context.WithoutCancel(ctx))
		e.dbName = e.db.Config().Database
	}
	for _, c := range append([]*client{e.seedAPI}, e.apis...) {
		if err := c.ping(ctx); err != nil {
			return fmt.Errorf("%s does not answer { __typename }: %w", c.url, err)
		}
	}
	if o.WSConns > 0 || o.WSRevocations > 0 {
		return runSubscriptions(ctx, e, stdout)
	}

	rep := report{
		URL: o.URL, Clients: o.Clients, Tokens: max(o.Tokens, o.Clients, o.Sessions), Duration: o.Duration, Warmup: o.Warmup, PerClient: o.PerClient,
		RunID: e.runID, GOMAXPROCS: runtime.GOMAXPROCS(0), LoadAvgBefore: loadAvg(),
	}
	if o.Prefill > 0 {
		owners, err := e.seedUsers(ctx, "p", 0, o.PrefillUsers)
		if err != nil {
			return fmt.Errorf("seeding the owners of the pre-filled sessions: %w", err)
		}
		if err := prefill(ctx, e.db, o.Prefill, userIDs(owners), logf); err != nil {
			return err
		}
	}
	if e.db != nil {
		rep.SessionsBefore = countSessions(ctx, e.db)
	}

	if err := warmSessions(ctx, e, o.Scenarios); err != nil {
		return err
	}
	for round := 1; round <= o.Rounds; round++ {
		for i, key := range o.Scenarios {
			if (round > 1 || i > 0) && o.Pause > 0 {
				sleep(ctx, o.Pause)
			}
			if ctx.Err() != nil {
				break
			}
			sc := scenarioByKey(key)
			logf("scenario %s (round %d): %s: seeding", sc.Key, round, sc.Title)
			ops, err := sc.prepare(ctx, e)
			if err != nil {
				return fmt.Errorf("scenario %s: %w", sc.Key, err)
			}
			e.marker(ctx, sc.Key, "begin")
			logf("scenario %s (round %d): running %d clients", sc.Key, round, len(ops))
			r := measure(ctx, ops, o.Warmup, o.Duration, o.PerClient, procs{o.PID, o.PeerPIDs, e.dbName})
			e.marker(ctx, sc.Key, "end")
			r.Key, r.Title = sc.Key, sc.Title
			if o.Rounds > 1 {
				r.Round = round
			}
			rep.Results = append(rep.Results, r)
		}
	}
	if e.db != nil {
		rep.SessionsAfter = countSessions(ctx, e.db)
	}
	rep.LoadAvgAfter = loadAvg()
	rep.finish()
	if o.JSON {
		return rep.writeJSON(stdout)
	}
	rep.writeTable(stdout)
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// warmSessions presents the -sessions tokens once before the first round
// when a scenario that uses them is selected (see sessionScenario).
func warmSessions(ctx context.Context, e *env, keys []string) error {
	sc := sessionScenario(e.opts.Sessions, keys)
	if sc == nil {
		return nil
	}
	e.logf("scenario %s: filling the server's cache before the first round", sc.Key)
	if _, err := sc.prepare(ctx, e); err != nil {
		return fmt.Errorf("scenario %s: %w", sc.Key, err)
	}
	return nil
}

// sessionScenario returns the first selected scenario that presents the
// -sessions tokens, (b) or (c), or nil. Either fills the server's session
// cache as it starts; without a warm-up, a scenario run before the first of
// them, such as (a) in -scenarios a,b, would measure a server with an empty
// cache (a smaller heap, collected far more often) where every later round
// measures a full one.
func sessionScenario(sessions int, keys []string) *scenario {
	if sessions == 0 {
		return nil
	}
	for _, key := range keys {
		if key == "b" || key == "c" {
			return scenarioByKey(key)
		}
	}
	return nil
}
