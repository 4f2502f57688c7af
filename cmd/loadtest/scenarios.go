package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// env is what the scenarios share: the options, the API client, the users
// seeded so far and, when given, a database connection.
type env struct {
	opts    options
	apis    []*client // the instances under test
	seedAPI *client   // where signUp and login of seeding go (-seed-url, else the first instance)
	db      *pgx.Conn
	dbName  string
	runID   string
	logf    func(string, ...any)

	// users are the seeded accounts by pool: "u" for the authenticated
	// scenarios (b, c, d), "l" for logins (e), so that logins do not add
	// sessions to the users whose sessions (c) lists, "p" for the owners of
	// pre-filled sessions.
	users map[string][]user
	// poolIssued is when the oldest access token of pool "u" was issued.
	poolIssued time.Time
	// sessions are the -sessions access tokens, made at sessionsIssued.
	sessions       []tokens
	sessionsIssued time.Time
}

// api is the instance that client i (or step i of a chain) talks to.
func (e *env) api(i int) *client { return e.apis[i%len(e.apis)] }

type user struct {
	email string
	tokens
}

// password is the password of every seeded user of one run.
func (e *env) password() string { return "loadtest-" + e.runID }

// op is one client's request: it returns nil on success. Each op is called
// by one goroutine only, with a buffer it may reuse.
type op func(ctx context.Context, buf *bytes.Buffer) error

// scenario is one row of the report.
type scenario struct {
	Key   string
	Title string
	// prepare seeds what the clients need (outside the measurement) and
	// returns one op per client.
	prepare func(ctx context.Context, e *env) ([]op, error)
}

var scenarios = []*scenario{
	{Key: "a", Title: "{ __typename } (no token)", prepare: prepareTypename},
	{Key: "b", Title: "{ me { id email } }", prepare: prepareMe},
	{Key: "c", Title: "{ mySessions { id } }", prepare: prepareMySessions},
	{Key: "d", Title: "refresh chain", prepare: prepareRefresh},
	{Key: "e", Title: "login", prepare: prepareLogin},
	{Key: "f", Title: "logout (a revocation)", prepare: prepareLogout},
}

func scenarioByKey(key string) *scenario {
	for _, s := range scenarios {
		if s.Key == key {
			return s
		}
	}
	return nil
}

func scenarioKeys() string {
	keys := make([]string, len(scenarios))
	for i, s := range scenarios {
		keys[i] = s.Key
	}
	return strings.Join(keys, ",")
}

func prepareTypename(_ context.Context, e *env) ([]op, error) {
	ops := make([]op, e.opts.Clients)
	for i := range ops {
		ops[i] = func(ctx context.Context, buf *bytes.Buffer) error {
			return e.api(i).call(ctx, bodyTypename, "", wantTypename, buf)
		}
	}
	return ops, nil
}

// bearerOps returns one op per client that posts body with access tokens of
// the token pool: client i uses tokens i, i+c, i+2c, … in turn, so with
// -tokens above -c every request of a client presents another token, as
// requests from many users do.
func bearerOps(ctx context.Context, e *env, body, want []byte) ([]op, error) {
	pool, err := e.tokenPool(ctx)
	if e.opts.Sessions > 0 && err == nil {
		pool, err = e.sessionPool(ctx)
	}
	if err != nil {
		return nil, err
	}
	ops := make([]op, e.opts.Clients)
	authzs := make([][]string, len(ops))
	for i := range ops {
		for j := i; j < len(pool); j += len(ops) {
			authzs[i] = append(authzs[i], "Bearer "+pool[j].Access)
		}
	}
	if e.opts.Sessions > 0 {
		// Present every token once to the instance that will see it, so
		// that the measurement starts from a warm cache, as a service
		// whose users keep coming back runs.
		e.logf("presenting each of %d sessions once", len(pool))
		var wg sync.WaitGroup
		for i := range ops {
			wg.Go(func() {
				var buf bytes.Buffer
				for _, a := range authzs[i] {
					e.api(i).call(ctx, bodyMe, a, wantMe, &buf)
				}
			})
		}
		wg.Wait()
	}
	for i := range ops {
		authz := authzs[i]
		next, api := 0, e.api(i)
		ops[i] = func(ctx context.Context, buf *bytes.Buffer) error {
			a := authz[next]
			next = (next + 1) % len(authz)
			return api.call(ctx, body, a, want, buf)
		}
	}
	return ops, nil
}

func prepareMe(ctx context.Context, e *env) ([]op, error) {
	return bearerOps(ctx, e, bodyMe, wantMe)
}

func prepareMySessions(ctx context.Context, e *env) ([]op, error) {
	return bearerOps(ctx, e, bodyMySessions, wantMySessions)
}

// prepareRefresh gives each client a session of its own, from a fresh login,
// whose chain it follows: every refresh uses the refresh token the previous
// one returned, and goes to the next instance of -url. A broken chain (a
// failed refresh) is counted and restarted with a login.
func prepareRefresh(ctx context.Context, e *env) ([]op, error) {
	users, err := e.usersOf(ctx, "u", e.opts.Clients)
	if err != nil {
		return nil, err
	}
	users = users[:e.opts.Clients]
	chains := make([]tokens, len(users))
	err = parallel(len(users), func(i int) error {
		var buf bytes.Buffer
		var err error
		chains[i], err = e.login(ctx, users[i].email, &buf)
		return err
	})
	if err != nil {
		return nil, err
	}
	ops := make([]op, len(users))
	for i, u := range users {
		authz := "Bearer " + chains[i].Refresh
		step := i
		ops[i] = func(ctx context.Context, buf *bytes.Buffer) error {
			step++
			err := e.api(step).call(ctx, bodyRefresh, authz, wantRefresh, buf)
			if err == nil {
				var next tokens
				if next, err = parsePayload(buf.Bytes(), "refresh"); err == nil {
					authz = "Bearer " + next.Refresh
					return nil
				}
			}
			if restarted, lerr := e.login(ctx, u.email, buf); lerr == nil {
				authz = "Bearer " + restarted.Refresh
			}
			return err
		}
	}
	return ops, nil
}

func prepareLogin(ctx context.Context, e *env) ([]op, error) {
	users, err := e.usersOf(ctx, "l", e.opts.Clients)
	if err != nil {
		return nil, err
	}
	ops := make([]op, e.opts.Clients)
	for i := range ops {
		body := credentialsBody(loginQuery, users[i].email, e.password())
		api := e.api(i)
		ops[i] = func(ctx context.Context, buf *bytes.Buffer) error {
			return api.call(ctx, body, "", wantLogin, buf)
		}
	}
	return ops, nil
}

// usersOf returns at least n users of the pool, signing up the missing ones.
func (e *env) usersOf(ctx context.Context, pool string, n int) ([]user, error) {
	have := e.users[pool]
	if len(have) >= n {
		return have, nil
	}
	more, err := e.seedUsers(ctx, pool, len(have), n)
	if err != nil {
		return nil, err
	}
	if e.users == nil {
		e.users = map[string][]user{}
	}
	e.users[pool] = append(have, more...)
	return e.users[pool], nil
}

// tokenMaxAge is how old the token pool may get before it is renewed: well
// inside the default ACCESS_TOKEN_TTL of 15 minutes, so that no access token
// expires during a scenario.
const tokenMaxAge = 10 * time.Minute

// tokenPool returns -tokens sessions (at least one per client), one per user
// of pool "u": the sessions of their sign-up, or of a fresh login once those
// are older than tokenMaxAge.
func (e *env) tokenPool(ctx context.Context) ([]tokens, error) {
	n := max(e.opts.Tokens, e.opts.Clients)
	users, err := e.usersOf(ctx, "u", n)
	if err != nil {
		return nil, err
	}
	users = users[:n]
	if time.Since(e.poolIssued) > tokenMaxAge {
		e.logf("renewing %d access tokens with logins", n)
		err := parallel(n, func(i int) error {
			var buf bytes.Buffer
			t, err := e.login(ctx, users[i].email, &buf)
			users[i].tokens = t
			return err
		})
		if err != nil {
			return nil, err
		}
		e.poolIssued = time.Now()
	}
	out := make([]tokens, n)
	for i, u := range users {
		out[i] = u.tokens
	}
	return out, nil
}

// seedUsers signs up the users from..to-1 of a pool through the API; their
// sign-up sessions are theirs to use.
func (e *env) seedUsers(ctx context.Context, pool string, from, to int) ([]user, error) {
	n := to - from
	e.logf("seeding %d users (pool %s) through signUp", n, pool)
	started := time.Now()
	out := make([]user, n)
	err := parallel(n, func(i int) error {
		email := fmt.Sprintf("lt-%s-%s%d@loadtest.example.com", e.runID, pool, from+i)
		var buf bytes.Buffer
		body := credentialsBody(signUpQuery, email, e.password())
		if err := e.seedAPI.call(ctx, body, "", wantSignUp, &buf); err != nil {
			return fmt.Errorf("signUp %s: %w", email, err)
		}
		t, err := parsePayload(buf.Bytes(), "signUp")
		if err != nil {
			return fmt.Errorf("signUp %s: %w", email, err)
		}
		out[i] = user{email: email, tokens: t}
		return nil
	})
	if err == nil && pool == "u" && (from == 0 || e.poolIssued.IsZero()) {
		e.poolIssued = started
	}
	return out, err
}

// login signs email in once more (through the seeding endpoint) and returns
// the new session's tokens.
func (e *env) login(ctx context.Context, email string, buf *bytes.Buffer) (tokens, error) {
	if err := e.seedAPI.call(ctx, credentialsBody(loginQuery, email, e.password()), "", wantLogin, buf); err != nil {
		return tokens{}, fmt.Errorf("login %s: %w", email, err)
	}
	return parsePayload(buf.Bytes(), "login")
}

func userIDs(us []user) []string {
	ids := make([]string, len(us))
	for i, u := range us {
		ids[i] = u.UserID
	}
	return ids
}

// seedConcurrency bounds parallel sign-ups and logins: the server hashes
// at most 2 x GOMAXPROCS passwords at once anyway.
const seedConcurrency = 4

// parallel calls f(0..n-1), seedConcurrency at a time, and returns the first
// error.
func parallel(n int, f func(i int) error) error {
	sem := make(chan struct{}, seedConcurrency)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = f(i)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
