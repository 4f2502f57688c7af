package main

// Reliability (issue 5), soak: mixed traffic against the real program for a set time,
// measuring throughput, latency, memory and goroutines.

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

// TestSoak runs mixed traffic (login, me, refresh, mySessions, logout) from
// SOAK_WORKERS goroutines (default 8) against the real program for SOAK (a
// Go duration), then reports throughput, latency, memory and goroutines.
// Errors must be 0, and goroutines must return to where they started. It is
// skipped unless SOAK is set:
//
//	SOAK=60s go test -run TestSoak -count=1 -v .
func TestSoak(t *testing.T) {
	if os.Getenv("SOAK") == "" {
		t.Skip("soak test skipped: set SOAK to a duration to run it, e.g. SOAK=60s go test -run TestSoak -count=1 -v .")
	}
	duration, err := time.ParseDuration(os.Getenv("SOAK"))
	if err != nil || duration <= 0 {
		t.Fatalf("SOAK=%q: want a Go duration such as 60s", os.Getenv("SOAK"))
	}
	workers := 8
	if w := os.Getenv("SOAK_WORKERS"); w != "" {
		if workers, err = strconv.Atoi(w); err != nil || workers < 1 {
			t.Fatalf("SOAK_WORKERS=%q: want a positive number", w)
		}
	}

	before := settledGoroutines(0)
	url := pgtest.New(t)
	prog := testkit.StartRun(t, run, map[string]string{"DATABASE_URL": url, "SESSION_CACHE": os.Getenv("SOAK_CACHE")})
	c := prog.WithPatience()
	emails := make([]string, workers)
	for i := range emails {
		emails[i] = fmt.Sprintf("soak%d@example.com", i)
		c.SignUp(t, emails[i])
	}

	var requests, failures atomic.Int64
	var mu sync.Mutex
	var firstErrors []string
	latencies := make([][]time.Duration, workers)
	// step makes one request and returns data.field of its answer.
	step := func(w int, field, token, query string, vars map[string]any) (testkit.Payload, bool) {
		start := time.Now()
		r, err := c.Call(token, query, vars)
		latencies[w] = append(latencies[w], time.Since(start))
		requests.Add(1)
		if err == nil && len(r.Errors) > 0 {
			err = fmt.Errorf("%s: %s", r.Code(), r.Errors[0].Message)
		}
		if err != nil {
			failures.Add(1)
			mu.Lock()
			if len(firstErrors) < 10 {
				firstErrors = append(firstErrors, fmt.Sprintf("%s: %v", field, err))
			}
			mu.Unlock()
			return testkit.Payload{}, false
		}
		var p testkit.Payload
		if raw := r.Data[field]; len(raw) > 0 && raw[0] == '{' {
			json.Unmarshal(raw, &p)
		}
		return p, true
	}
	iteration := func(w int, i int) {
		p, ok := step(w, "login", "", testkit.LoginMutation, map[string]any{"email": emails[w], "password": testkit.Password})
		if !ok {
			return
		}
		step(w, "me", p.AccessToken, testkit.MeQuery, nil)
		q, ok := step(w, "refresh", p.Refresh(), testkit.RefreshMutation, nil)
		if !ok {
			return
		}
		step(w, "me", q.AccessToken, testkit.MeQuery, nil)
		step(w, "mySessions", q.AccessToken, testkit.MySessionsQuery, nil)
		r, ok := step(w, "refresh", q.Refresh(), testkit.RefreshMutation, nil)
		if !ok {
			return
		}
		for range 3 {
			step(w, "me", r.AccessToken, testkit.MeQuery, nil)
		}
		token := r.AccessToken
		if i%2 == 1 {
			token = r.Refresh()
		}
		step(w, "logout", token, testkit.LogoutMutation, nil)
	}
	load := func(until time.Time) {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := 0; time.Now().Before(until); i++ {
					iteration(w, i)
				}
			})
		}
		wg.Wait()
	}

	load(time.Now().Add(min(duration/10, 5*time.Second))) // warm up: caches, pool, heap
	requests.Store(0)
	for w := range latencies {
		latencies[w] = latencies[w][:0]
	}
	sample := func(label string) soakSample {
		c.HTTP.CloseIdleConnections()
		s := soakSample{label: label, goroutines: settledGoroutines(0)}
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		s.heap, s.sys, s.rss = m.HeapAlloc, m.Sys, vmRSS()
		t.Logf("%-6s heap %6.1f MiB  sys %6.1f MiB  rss %6.1f MiB  goroutines %d",
			label, mib(s.heap), mib(s.sys), mib(s.rss), s.goroutines)
		return s
	}
	first := sample("start")
	began := time.Now()
	end := began.Add(duration)
	for time.Now().Before(end) {
		until := time.Now().Add(10 * time.Second)
		if until.After(end) {
			until = end
		}
		load(until)
		if time.Now().Before(end) {
			sample(fmt.Sprintf("%ds", int(time.Since(began).Seconds())))
		}
	}
	elapsed := time.Since(began)
	last := sample("end")
	if err := prog.Stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	after := settledGoroutines(before)

	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[int(p*float64(len(all)-1))].Round(100 * time.Microsecond) }
	t.Logf("%d workers, %v: %d requests, %d errors, %.0f requests/s; latency p50 %v, p99 %v, max %v",
		workers, elapsed.Round(time.Second), requests.Load(), failures.Load(),
		float64(requests.Load())/elapsed.Seconds(), pct(0.50), pct(0.99), all[len(all)-1].Round(time.Millisecond))
	t.Logf("goroutines: %d before the program, %d at start, %d at end, %d after it stopped", before, first.goroutines, last.goroutines, after)
	for _, e := range firstErrors {
		t.Error(e)
	}
	if failures.Load() > 0 {
		t.Errorf("%d requests failed", failures.Load())
	}
	if last.goroutines > first.goroutines+2 || after > before+2 {
		t.Errorf("goroutines leak: %d at start, %d at end; %d before the program, %d after", first.goroutines, last.goroutines, before, after)
	}
	if last.heap > 2*first.heap+32<<20 {
		t.Errorf("heap grew from %.1f MiB to %.1f MiB", mib(first.heap), mib(last.heap))
	}
	prog.CheckLogs(t)
}

type soakSample struct {
	label          string
	heap, sys, rss uint64
	goroutines     int
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// vmRSS returns the process's resident set size from /proc/self/status, or
// 0 where there is no such file.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// settledGoroutines waits up to 5 s for the goroutine count to come down to
// target (0: until it stops falling) and returns it.
func settledGoroutines(target int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		m := runtime.NumGoroutine()
		if target > 0 && m <= target || target == 0 && m >= n {
			return m
		}
		n = m
	}
	return n
}
