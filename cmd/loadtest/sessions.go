package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"
)

// sessionsSQL adds one live session per element of the arrays, with the
// given owners and token hashes, as a sign-in would: the tokens themselves
// exist only in this program. The pair counts as used (no first-use write),
// and the access token lives 14 minutes, within the default ACCESS_TOKEN_TTL.
const sessionsSQL = `
INSERT INTO sessions (id, user_id, device_name, user_agent, ip_address,
    created_at, last_used_at,
    access_hash, access_expires_at, refresh_hash, refresh_expires_at, successor_used)
SELECT gen_random_uuid(), t.owner, 'loadtest session', 'sessionauth-loadtest', '127.0.0.1',
    now(), now(), t.access, now() + interval '14 minutes', t.refresh, now() + interval '1 day', true
FROM unnest($1::uuid[], $2::bytea[], $3::bytea[]) AS t(owner, access, refresh)`

// newToken returns a token of the server's shape: 256 characters of
// [A-Za-z0-9_-] from 192 random bytes.
func newToken() string {
	b := make([]byte, 192)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sha(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// sessionPool returns -sessions access tokens of distinct live sessions,
// owned in turn by the -c users of pool "u", making them with SQL (in
// batches of 10,000) when there are none or they are older than
// tokenMaxAge. Signing in that many times through the API would take
// minutes of password hashing.
func (e *env) sessionPool(ctx context.Context) ([]tokens, error) {
	if len(e.sessions) == e.opts.Sessions && time.Since(e.sessionsIssued) < tokenMaxAge {
		return e.sessions, nil
	}
	users, err := e.usersOf(ctx, "u", e.opts.Clients)
	if err != nil {
		return nil, err
	}
	issued := time.Now()
	out, err := e.makeSessions(ctx, users, e.opts.Sessions)
	if err != nil {
		return nil, err
	}
	e.sessions, e.sessionsIssued = out, issued
	return out, nil
}

// makeSessions makes n live sessions with SQL, owned in turn by users, in
// batches of 10,000, and returns their tokens.
func (e *env) makeSessions(ctx context.Context, users []user, n int) ([]tokens, error) {
	e.logf("making %d sessions with SQL", n)
	out := make([]tokens, 0, n)
	for len(out) < n {
		batch := min(10_000, n-len(out))
		owners := make([]string, batch)
		access, refresh := make([][]byte, batch), make([][]byte, batch)
		for i := range batch {
			u := users[(len(out)+i)%len(users)]
			t := tokens{Access: newToken(), Refresh: newToken(), UserID: u.UserID}
			owners[i], access[i], refresh[i] = u.UserID, sha(t.Access), sha(t.Refresh)
			out = append(out, t)
		}
		if _, err := e.db.Exec(ctx, sessionsSQL, owners, access, refresh); err != nil {
			return nil, fmt.Errorf("making sessions: %w", err)
		}
	}
	return out, nil
}

// logoutsPerClient is how many sessions scenario f makes for each client:
// more than one client can end in a warm-up and a measurement.
const logoutsPerClient = 1000

// prepareLogout gives each client logoutsPerClient sessions of its own
// (made with SQL, so that no password hashing is measured) and ends one per
// request with logout: a revocation that every instance must honour before
// the answer.
func prepareLogout(ctx context.Context, e *env) ([]op, error) {
	if e.db == nil {
		return nil, fmt.Errorf("scenario f needs -database-url")
	}
	users, err := e.usersOf(ctx, "u", e.opts.Clients)
	if err != nil {
		return nil, err
	}
	pool, err := e.makeSessions(ctx, users[:e.opts.Clients], e.opts.Clients*logoutsPerClient)
	if err != nil {
		return nil, err
	}
	ops := make([]op, e.opts.Clients)
	for i := range ops {
		next, api := i, e.api(i)
		ops[i] = func(ctx context.Context, buf *bytes.Buffer) error {
			if next >= len(pool) {
				return codeError("POOL_EXHAUSTED")
			}
			a := "Bearer " + pool[next].Access
			next += len(ops)
			return api.call(ctx, bodyLogout, a, wantLogout, buf)
		}
	}
	return ops, nil
}
