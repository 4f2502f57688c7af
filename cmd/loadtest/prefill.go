package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

func openDB(ctx context.Context, url string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return conn, nil
}

// countSessions returns the number of rows of the sessions table, -1 when it
// cannot be read.
func countSessions(ctx context.Context, db *pgx.Conn) int64 {
	var n int64
	if err := db.QueryRow(ctx, "SELECT count(*) FROM sessions").Scan(&n); err != nil {
		return -1
	}
	return n
}

// marker runs a statement that names the run, the scenario and the phase,
// so the statements between two markers in a log_statement=all log are
// exactly those of one measurement. It runs over the simple protocol (no
// arguments), so the log shows it as "statement: SELECT 'loadtest-marker …'".
func (e *env) marker(ctx context.Context, scenario, phase string) {
	if !e.opts.SQLMarkers || e.db == nil {
		return
	}
	q := fmt.Sprintf("SELECT 'loadtest-marker %s %s %s'", e.runID, scenario, phase)
	if _, err := e.db.Exec(ctx, q); err != nil {
		e.logf("marker: %v", err)
	}
}

// prefillBatch is the number of rows one INSERT … SELECT adds.
const prefillBatch = 100_000

// prefillSQL adds $2 live sessions spread over the users $1. Every hash is
// SHA-256 of a fresh random UUID and the row number: 32 random-looking bytes,
// distinct, with no token anyone knows, so no pre-filled session can ever
// authenticate. Each looks like a session refreshed an hour ago whose new
// pair has been used: its sealed pair is already erased (auth/token.go), so
// the server's seal sweep has nothing to do with them.
const prefillSQL = `
INSERT INTO sessions (id, user_id, device_name, user_agent, ip_address,
    created_at, last_used_at,
    access_hash, access_expires_at, refresh_hash, refresh_expires_at,
    prev_refresh_hash, prev_rotated_at, prev_sealed, successor_used)
SELECT gen_random_uuid(), ($1::uuid[])[1 + g % cardinality($1::uuid[])],
    'loadtest prefill', 'sessionauth-loadtest', '127.0.0.1',
    now() - interval '2 hours', now() - (g % 3600) * interval '1 second',
    sha256(uuid_send(gen_random_uuid()) || int8send(g) || '\x01'::bytea), now() + interval '1 day',
    sha256(uuid_send(gen_random_uuid()) || int8send(g) || '\x02'::bytea), now() + interval '7 days',
    sha256(uuid_send(gen_random_uuid()) || int8send(g) || '\x03'::bytea), now() - interval '1 hour',
    NULL, true
FROM generate_series(1, $2::bigint) AS g`

// prefill inserts sessions owned by owners until the sessions table holds
// target rows, then vacuums and analyses it so that the benchmark neither
// waits for autovacuum nor runs on stale planner statistics.
func prefill(ctx context.Context, db *pgx.Conn, target int, owners []string, logf func(string, ...any)) error {
	have := countSessions(ctx, db)
	if have < 0 {
		return fmt.Errorf("prefill: cannot count the sessions table (is -database-url the server's database?)")
	}
	if have >= int64(target) {
		logf("prefill: the sessions table already holds %d rows", have)
		return nil
	}
	logf("prefill: %d -> %d rows", have, target)
	start := time.Now()
	for have < int64(target) {
		n := min(int64(prefillBatch), int64(target)-have)
		if _, err := db.Exec(ctx, prefillSQL, owners, n); err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
		have += n
		logf("prefill: %d rows (%s)", have, time.Since(start).Round(time.Second))
	}
	if _, err := db.Exec(ctx, "VACUUM (ANALYZE) sessions"); err != nil {
		return fmt.Errorf("prefill: vacuum: %w", err)
	}
	logf("prefill: done in %s", time.Since(start).Round(time.Second))
	return nil
}
