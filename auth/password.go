package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: OWASP's first recommendation (m=19 MiB, t=2, p=1),
// which costs about 25-40 ms of one core here. The parameters are stored in
// every hash (PHC string format), so raising them later only affects new
// hashes; old ones still verify.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	argonSaltLen   = 16
)

// hasher computes argon2id hashes with bounded concurrency: each hash takes
// 19 MiB, so a burst of logins must queue rather than exhaust memory.
type hasher struct {
	slots chan struct{}
	// dummy returns a valid hash of a random password, verified against
	// when the email is unknown so that such a login costs what a real one
	// costs. It is computed at the first verify, not by NewService, which
	// tests and tools call freely.
	dummy func() string
}

// DefaultMemoryBudget is MEMORY_BUDGET's default: room for two hashes at
// once (both cores busy) next to a full default cache.
const DefaultMemoryBudget = 128 << 20

// The budget's parts, measured with GODEBUG=gctrace=1 and the loadtest on
// this service (BENCHMARKS.md, "Memory").
const (
	// outsideHeap is resident memory the Go runtime's limit does not
	// count, mostly the binary's code: RSS exceeded the soft limit by
	// 20-27 MiB in login bursts.
	outsideHeap = 24 << 20
	// baseMemory is the rest of the server: outsideHeap plus the heap
	// that lives without hashing or cached sessions (about 14 MiB under
	// load: pools, buffers of requests in flight, schema, metrics).
	baseMemory = outsideHeap + 16<<20
	// cacheEntryMemory is an upper estimate of one session-cache entry
	// (BenchmarkCacheEntryMemory: 0.9 KiB).
	cacheEntryMemory = 1 << 10
	// hashMemory is one argon2id hash's working memory, and hashCost that
	// with the collector's headroom: a finished hash's 19 MiB is garbage
	// until the next cycle, and a heap whose live part is close to the
	// runtime's limit spends its time collecting (with half of that as
	// headroom, a login took twice the CPU).
	hashMemory = argonMemoryKiB << 10
	hashCost   = hashMemory * 2
)

// MinMemoryBudget is the least MEMORY_BUDGET that can be kept with a
// session cache of cacheSize entries: the rest of the server, a full cache
// and one hash at a time. Below it the collector would run without pause
// and still not keep the budget (measured: 64 MiB gave 82 MiB of RSS and a
// seventh of the logins).
func MinMemoryBudget(cacheSize int) int64 {
	return baseMemory + int64(cacheSize)*cacheEntryMemory + hashCost
}

// SoftMemoryLimit is the Go runtime's soft limit for budget bytes of RSS
// (0: DefaultMemoryBudget): the budget less what lies outside the heap.
func SoftMemoryLimit(budget int64) int64 {
	if budget <= 0 {
		budget = DefaultMemoryBudget
	}
	return max(budget-outsideHeap, budget/2)
}

// hashSlots is how many password hashes may run at once within budget
// bytes (0: DefaultMemoryBudget): what is left once the rest of the server
// and a full session cache of cacheSize entries are paid for, divided by
// one hash's cost. At least one, so that logins work under any budget
// (queueing), and at most GOMAXPROCS, since more would only queue for the
// cores. With the runtime's soft limit at SoftMemoryLimit(budget)
// (server.go), which collects a finished hash's memory before the heap
// grows past it, a burst of logins stays within the budget.
func hashSlots(budget int64, cacheSize int) int {
	if budget <= 0 {
		budget = DefaultMemoryBudget
	}
	if cacheSize <= 0 {
		cacheSize = DefaultCacheSize
	}
	free := budget - baseMemory - int64(cacheSize)*cacheEntryMemory
	return int(max(1, min(int64(runtime.GOMAXPROCS(0)), free/hashCost)))
}

// newHasher returns a hasher with the default budget's slots.
func newHasher() *hasher { return newBoundedHasher(hashSlots(0, 0)) }

func newBoundedHasher(slots int) *hasher {
	h := &hasher{slots: make(chan struct{}, max(slots, 1))}
	h.dummy = sync.OnceValue(func() string { return h.hashUnbounded(newToken()) })
	return h
}

func (h *hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hasher) release() { <-h.slots }

// hash returns the PHC-format argon2id hash of password.
func (h *hasher) hash(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return h.hashUnbounded(password), nil
}

func (h *hasher) hashUnbounded(password string) string {
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		argonMemoryKiB, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// verify reports whether password matches encoded, comparing in constant time.
// An empty encoded hash verifies against the dummy hash and reports false, so
// unknown accounts cost the same as known ones.
func (h *hasher) verify(ctx context.Context, password, encoded string) (bool, error) {
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	// The first verify computes the dummy hash, whether the account is
	// known or not (so that first login says nothing about the email),
	// within a slot (so that its memory is in the budget).
	dummy := h.dummy()
	known := encoded != ""
	if !known {
		encoded = dummy
	}
	p, err := parseArgon2id(encoded)
	if err != nil {
		return false, err
	}
	key := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1 && known, nil
}

type argon2Params struct {
	memory, time uint32
	threads      uint8
	salt, key    []byte
}

// Bounds on the parameters a stored hash may ask for, so that a corrupt or
// planted row cannot make verify panic or allocate without limit.
const maxArgonMemoryKiB = 1 << 20 // 1 GiB

func parseArgon2id(encoded string) (argon2Params, error) {
	bad := func(what string) (argon2Params, error) {
		return argon2Params{}, fmt.Errorf("password hash: %s", what)
	}
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("not an argon2id PHC string")
	}
	if parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return bad("unsupported version")
	}
	params := strings.Split(parts[3], ",")
	if len(params) != 3 {
		return bad("bad parameters")
	}
	var values [3]uint64
	for i, name := range [...]string{"m", "t", "p"} {
		key, value, ok := strings.Cut(params[i], "=")
		n, err := strconv.ParseUint(value, 10, 32)
		if !ok || key != name || err != nil || n == 0 {
			return bad("bad parameters")
		}
		values[i] = n
	}
	m, t, threads := values[0], values[1], values[2]
	if threads > 255 || m > maxArgonMemoryKiB || m < 8*threads {
		return bad("parameters out of range")
	}
	p := argon2Params{memory: uint32(m), time: uint32(t), threads: uint8(threads)}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(p.salt) < 8 {
		return bad("bad salt")
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) < 16 {
		return bad("bad key")
	}
	return p, nil
}
