package auth

import (
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"

	"github.com/example/sessionauth/internal/pgtest"
)

// TestNewServiceComputesNoHash: NewService leaves the dummy hash to the
// first login of an unknown email, so tests and tools may call it freely
// (on main each call hashed once: 19 MiB and about 30 ms of a core). It
// reads allocations, not time: an argon2id hash allocates argonMemoryKiB.
// Not parallel, so that no other test's hashing is counted.
func TestNewServiceComputesNoHash(t *testing.T) {
	db := pgtest.Open(pgtest.New(t))
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const services = 3
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range services {
		NewService(db, testConfig, log)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > hashMemory/2 {
		t.Fatalf("%d NewService calls allocated %d MiB: a password hash was computed", services, got>>20)
	}
}

// TestDummyHashIsComputedOnce: concurrent first logins of unknown emails
// share one dummy hash, a valid one, and all fail without error.
func TestDummyHashIsComputedOnce(t *testing.T) {
	t.Parallel()
	h := newBoundedHasher(2)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if ok, err := h.verify(t.Context(), "orchid lantern 7", ""); ok || err != nil {
				t.Errorf(`verify(password, "") = %v, %v; want false, nil`, ok, err)
			}
		})
	}
	wg.Wait()
	first := h.dummy()
	if _, err := parseArgon2id(first); err != nil {
		t.Fatalf("dummy hash %q: %v", first, err)
	}
	if again := h.dummy(); again != first {
		t.Fatal("the dummy hash was computed twice")
	}
}
