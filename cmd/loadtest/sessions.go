package main

import (
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
	e.logf("making %d sessions with SQL", e.opts.Sessions)
	issued := time.Now()
	out := make([]tokens, 0, e.opts.Sessions)
	for len(out) < e.opts.Sessions {
		n := min(10_000, e.opts.Sessions-len(out))
		owners := make([]string, n)
		access, refresh := make([][]byte, n), make([][]byte, n)
		for i := range n {
			u := users[(len(out)+i)%e.opts.Clients]
			t := tokens{Access: newToken(), Refresh: newToken(), UserID: u.UserID}
			owners[i], access[i], refresh[i] = u.UserID, sha(t.Access), sha(t.Refresh)
			out = append(out, t)
		}
		if _, err := e.db.Exec(ctx, sessionsSQL, owners, access, refresh); err != nil {
			return nil, fmt.Errorf("making sessions: %w", err)
		}
	}
	e.sessions, e.sessionsIssued = out, issued
	return out, nil
}
