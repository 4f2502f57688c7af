package auth

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
)

// BenchmarkEraseSpentSeals is the cost of one round of the seal sweep that
// every instance runs every sealSweepInterval, over a sessions table of n
// rows that have all been refreshed: half with their new pair unused (their
// seal must stay), half used long ago (already erased), plus 10 pairs used
// within the window. Nothing is spent, as in the steady state between two
// rounds: the partial indexes keep the round from reading the table, so its
// cost should not grow with n.
func BenchmarkEraseSpentSeals(b *testing.B) {
	if pgtest.SQLite() {
		b.Skip("the bulk seeding SQL is PostgreSQL's")
	}
	for _, tc := range []struct {
		n       int
		noIndex bool // the same without the partial indexes, for comparison
	}{{1_000, false}, {100_000, false}, {100_000, true}} {
		n := tc.n
		name := fmt.Sprintf("sessions=%d", n)
		if tc.noIndex {
			name += "/without-partial-indexes"
		}
		b.Run(name, func(b *testing.B) {
			cfg := testConfig
			cfg.ReuseWindow = 30 * time.Second
			s := withConfig(newTestService(b, testConfig), cfg)
			ctx := context.Background()
			user := signUp(b, s, "ann@example.com").User
			_, err := s.db.NewRaw(`INSERT INTO sessions (id, user_id, created_at, last_used_at,
					access_hash, access_expires_at, refresh_hash, refresh_expires_at,
					prev_refresh_hash, prev_rotated_at, prev_sealed, successor_used)
				SELECT gen_random_uuid(), ?, now() - interval '2 hours', now(),
					sha256(int8send(g) || '\x01'::bytea), now() + interval '15 minutes',
					sha256(int8send(g) || '\x02'::bytea), now() + interval '7 days',
					sha256(int8send(g) || '\x03'::bytea),
					CASE WHEN g <= 10 THEN now() ELSE now() - interval '1 hour' END,
					CASE WHEN g <= 10 OR g % 2 = 0 THEN decode(repeat(md5(g::text), 35), 'hex') END,
					g <= 10 OR g % 2 = 1
				FROM generate_series(1, ?) AS g`, user.ID, n).Exec(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if tc.noIndex {
				if _, err := s.db.ExecContext(ctx, "DROP INDEX sessions_spent_seal_idx; DROP INDEX retired_refresh_tokens_sealed_idx"); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := s.db.ExecContext(ctx, "VACUUM (ANALYZE) sessions"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if erased, err := s.eraseSpentSeals(ctx); err != nil || erased != 0 {
					b.Fatalf("erased %d (%v), want 0", erased, err)
				}
			}
		})
	}
}
