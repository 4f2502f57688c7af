package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/testkit"
)

// A thief holds a copy of the database and old tokens of a session (from a
// backup of a phone, a log, a proxy...), and works offline, where replay
// detection cannot see them. API.md: "The database never holds a token a
// thief could use". These tests build a session's history, dump every row of
// every table the catalog lists, and try every superseded token (and every
// access token ever issued) against every value in the dump: as a hash
// preimage, as a key for openPair with every text value as the session id,
// and, for whatever opens, again with what came out, until nothing new
// comes. Once the reuse window has passed and the successor was used,
// nothing may open.

// cell is one value of one row of the dump.
type cell struct {
	table, column string
	value         any
}

func (c cell) String() string { return c.table + "." + c.column }

// dumpEveryTable reads every column of every row of every table the
// database's catalog lists, without knowing the schema.
func dumpEveryTable(t *testing.T, s *Service) []cell {
	t.Helper()
	tables := testkit.Tables(t, s.db)
	var cells []cell
	seen := map[string]bool{}
	for _, table := range tables {
		seen[table] = true
		cols, rows := testkit.Rows(t, s.db, table)
		for _, values := range rows {
			for i, v := range values {
				cells = append(cells, cell{table, cols[i], v})
			}
		}
	}
	for _, want := range []string{"users", "sessions", "retired_refresh_tokens"} {
		if !seen[want] {
			t.Fatalf("the catalog lists %v, without %s", tables, want)
		}
	}
	return cells
}

// asBytes is every byte string a thief would try a cell as: its raw bytes,
// and its text decoded as hex or base64 when it decodes.
func asBytes(v any) [][]byte {
	switch v := v.(type) {
	case []byte:
		return asBytes(string(v))
	case string:
		out := [][]byte{[]byte(v)}
		for _, dec := range []func(string) ([]byte, error){
			hex.DecodeString, base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
			base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString,
		} {
			if b, err := dec(strings.TrimPrefix(v, `\x`)); err == nil && len(b) > 0 {
				out = append(out, b)
			}
		}
		return out
	case nil:
		return nil
	default:
		return [][]byte{fmt.Append(nil, v)}
	}
}

// opened is what a thief got out of the dump.
type opened struct {
	key  string // which known token opened it
	from cell
	pair tokenPair
}

// rob runs the thief's offline attack: known tokens against every cell of
// the dump, to a fixed point. It returns everything that opened.
func rob(t *testing.T, cells []cell, known []string) []opened {
	t.Helper()
	// Every text value could be the associated data (the session id); the
	// empty string too.
	ads := map[string]bool{"": true}
	var blobs []struct {
		from cell
		b    []byte
	}
	seen := map[string]bool{}
	for _, c := range cells {
		for _, b := range asBytes(c.value) {
			ads[string(b)] = true
			if seen[c.String()+"\x00"+string(b)] {
				continue
			}
			seen[c.String()+"\x00"+string(b)] = true
			blobs = append(blobs, struct {
				from cell
				b    []byte
			}{c, b})
		}
		if c.value != nil {
			ads[fmt.Sprint(c.value)] = true
		}
	}
	var got []opened
	tried := map[string]bool{}
	for len(known) > 0 {
		key := known[0]
		known = known[1:]
		if tried[key] {
			continue
		}
		tried[key] = true
		for _, blob := range blobs {
			for ad := range ads {
				pair, err := openPair(key, ad, blob.b)
				if err != nil {
					continue
				}
				got = append(got, opened{key: key, from: blob.from, pair: pair})
				known = append(known, pair.Access, pair.Refresh)
			}
		}
	}
	return got
}

// history is a session's tokens as its client saw them, oldest first.
type history struct {
	s        *Service
	sessions []string
	access   []string // every access token issued
	refresh  []string // every refresh token issued
}

func (h *history) add(iss *Issued) *Issued {
	if n := len(h.access); n == 0 || h.access[n-1] != iss.AccessToken {
		h.access = append(h.access, iss.AccessToken)
		h.refresh = append(h.refresh, iss.RefreshToken)
	}
	return iss
}

func (h *history) current() (access, refresh string) {
	return h.access[len(h.access)-1], h.refresh[len(h.refresh)-1]
}

// ageRotations moves every rotation of session id (the last one on the
// session row and those of its retired tokens) ago into the past, by the
// database's clock: the service reads that clock, so nobody sleeps.
func ageRotations(t *testing.T, s *Service, id string, ago time.Duration) {
	t.Helper()
	ctx := context.Background()
	then, arg := s.dialect.NowMinus(ago)
	if _, err := s.db.NewRaw("UPDATE sessions SET prev_rotated_at = "+then+" WHERE id = ? AND prev_rotated_at IS NOT NULL", arg, id).Exec(ctx); err != nil {
		t.Fatalf("ageing the rotation of %s: %v", id, err)
	}
	if _, err := s.db.NewRaw("UPDATE retired_refresh_tokens SET rotated_at = "+then+" WHERE session_id = ? AND rotated_at IS NOT NULL", arg, id).Exec(ctx); err != nil {
		t.Fatalf("ageing the retired tokens of %s: %v", id, err)
	}
}

// assertThiefGetsNothing dumps the database and attacks it with every
// superseded refresh token and every access token of h.
func assertThiefGetsNothing(t *testing.T, h *history) {
	t.Helper()
	cells := dumpEveryTable(t, h.s)
	currentAccess, currentRefresh := h.current()
	superseded := h.refresh[:len(h.refresh)-1]
	if len(superseded) < 3 {
		t.Fatalf("only %d superseded refresh tokens: the history is too short to tell", len(superseded))
	}
	known := append(append([]string(nil), superseded...), h.access...)

	// As hash preimages: the database may recognise a superseded refresh
	// token (replay detection needs that), in its token-hash columns only,
	// and holds no token, no sealing key and no hash of an old access
	// token.
	fingerprints := map[string]bool{"sessions.prev_refresh_hash": true, "retired_refresh_tokens.token_hash": true}
	for _, c := range cells {
		for _, b := range asBytes(c.value) {
			for _, tok := range append(known, currentRefresh) {
				if bytes.Contains(b, []byte(tok)) || bytes.Contains(b, sealingKey(tok)) {
					t.Errorf("%s holds a token or its sealing key", c)
				}
			}
			for _, tok := range superseded {
				if bytes.Contains(b, hashToken(tok)) && !fingerprints[c.String()] {
					t.Errorf("%s holds the hash of a superseded refresh token", c)
				}
			}
			for _, tok := range h.access[:len(h.access)-1] {
				if bytes.Contains(b, hashToken(tok)) {
					t.Errorf("%s holds the hash of a superseded access token", c)
				}
			}
		}
	}

	// As keys of anything sealed.
	for _, o := range rob(t, cells, known) {
		what := fmt.Sprintf("pair #%d", indexOf(h.refresh, o.pair.Refresh))
		if o.pair.Access == currentAccess || o.pair.Refresh == currentRefresh {
			what = "the session's CURRENT pair"
		}
		t.Errorf("%s opened with refresh token #%d (access token #%d) and gave %s",
			o.from, indexOf(h.refresh, o.key), indexOf(h.access, o.key), what)
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func TestThiefWithDatabaseCopyAndOldTokens(t *testing.T) {
	t.Parallel()
	base := newTestService(t, testConfig)

	t.Run("NoReuseWindow", func(t *testing.T) {
		// Every successor is used at once: by its access token, or by its
		// refresh token rotating it in turn. Retries happen before use.
		s := withConfig(base, testConfig) // ReuseWindow 0
		h := &history{s: s}
		first := h.add(signUp(t, s, "zero@example.com"))
		h.sessions = append(h.sessions, first.Session.ID)
		next := h.add(refresh(t, s, first.RefreshToken))
		if again := refresh(t, s, first.RefreshToken); !samePair(next, again) {
			t.Fatal("a retry before the successor was used got another pair")
		}
		authenticate(t, s, next.AccessToken)
		for range 3 {
			next = h.add(refresh(t, s, next.RefreshToken))
		}
		authenticate(t, s, next.AccessToken)
		assertThiefGetsNothing(t, h)
	})

	t.Run("EachWindowPassedBeforeTheNextUse", func(t *testing.T) {
		cfg := testConfig
		cfg.ReuseWindow = time.Hour
		s := withConfig(base, cfg)
		h := &history{s: s}
		next := h.add(signUp(t, s, "slow@example.com"))
		id := next.Session.ID
		for range 4 {
			next = h.add(refresh(t, s, next.RefreshToken))
			ageRotations(t, s, id, 2*cfg.ReuseWindow)
		}
		authenticate(t, s, next.AccessToken)
		assertThiefGetsNothing(t, h)
	})

	t.Run("QuickRotationsThenWindowPassed", func(t *testing.T) {
		// Rotations within one window keep what retries need; once the
		// window has passed, housekeeping's sweep erases it.
		cfg := testConfig
		cfg.ReuseWindow = time.Hour
		s := withConfig(base, cfg)
		h := &history{s: s}
		first := h.add(signUp(t, s, "quick@example.com"))
		next := first
		for range 4 {
			next = h.add(refresh(t, s, next.RefreshToken))
		}
		authenticate(t, s, next.AccessToken)
		if again := refresh(t, s, first.RefreshToken); again.RefreshToken != h.refresh[1] {
			t.Fatal("a retry of the first token within the window did not get its successor")
		}
		ageRotations(t, s, first.Session.ID, 2*cfg.ReuseWindow)
		if _, err := s.Housekeep(context.Background()); err != nil {
			t.Fatalf("Housekeep: %v", err)
		}
		assertThiefGetsNothing(t, h)
	})
}
