package main

import (
	"bytes"
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// result is one scenario's measurement.
type result struct {
	Key     string `json:"scenario"`
	Round   int    `json:"round,omitempty"` // with -rounds, 1..rounds
	Title   string `json:"title"`
	Clients int    `json:"clients"`
	// OK counts successful requests that started and finished inside the
	// measured window; Errors the failed ones, by code.
	OK         int            `json:"ok"`
	Errors     int            `json:"errors"`
	ErrorCodes map[string]int `json:"errorCodes,omitempty"`
	Elapsed    time.Duration  `json:"elapsedNs"`
	// Throughput is successful requests per second.
	Throughput float64 `json:"throughput"`
	// Latencies of the successful requests.
	Mean time.Duration `json:"meanNs"`
	P50  time.Duration `json:"p50Ns"`
	P90  time.Duration `json:"p90Ns"`
	P99  time.Duration `json:"p99Ns"`
	Max  time.Duration `json:"maxNs"`
	// Resources, when the server's pid was given and /proc is readable.
	Usage *usage `json:"usage,omitempty"`
}

// measure runs every op in its own goroutine, back to back. With perClient
// > 0 each op runs exactly that many times and all of them count; otherwise
// the ops run for warmup + d and only requests that start after the warm-up
// and end before its end count (so every sample has the same conditions).
// procs names the processes whose resources a measurement reports.
type procs struct {
	pid    int    // the measured server
	peers  []int  // the deployment's other instances
	dbName string // the database whose PostgreSQL backends count
}

func measure(ctx context.Context, ops []op, warmup, d time.Duration, perClient int, p procs) result {
	type worker struct {
		lat  []time.Duration
		errs map[string]int
	}
	workers := make([]worker, len(ops))
	start := time.Now()
	mStart := start.Add(warmup)
	end := mStart.Add(d)
	timed := perClient == 0

	// Resources are sampled over the measured window only.
	usageCh := make(chan *usage, 1)
	stopSampler := make(chan struct{})
	go func() {
		if timed {
			sleep(ctx, time.Until(mStart))
		}
		s := startSampler(p)
		if timed {
			sleep(ctx, time.Until(end))
		} else {
			<-stopSampler
		}
		usageCh <- s.stop()
	}()

	var wg sync.WaitGroup
	for i, o := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &workers[i]
			w.lat = make([]time.Duration, 0, 4096)
			var buf bytes.Buffer
			for n := 0; ctx.Err() == nil; n++ {
				if !timed && n == perClient {
					return
				}
				t0 := time.Now()
				if timed && !t0.Before(end) {
					return
				}
				err := o(ctx, &buf)
				t1 := time.Now()
				if timed && (t0.Before(mStart) || t1.After(end)) {
					continue
				}
				if err == nil {
					w.lat = append(w.lat, t1.Sub(t0))
					continue
				}
				if w.errs == nil {
					w.errs = map[string]int{}
				}
				w.errs[errorCode(err)]++
			}
		}()
	}
	wg.Wait()
	close(stopSampler)
	r := result{Clients: len(ops), Elapsed: d}
	switch {
	case !timed:
		r.Elapsed = time.Since(start)
	case ctx.Err() != nil: // interrupted
		r.Elapsed = max(0, min(d, time.Since(mStart)))
	}
	r.Usage = <-usageCh

	var all []time.Duration
	for _, w := range workers {
		all = append(all, w.lat...)
		for code, n := range w.errs {
			if r.ErrorCodes == nil {
				r.ErrorCodes = map[string]int{}
			}
			r.ErrorCodes[code] += n
			r.Errors += n
		}
	}
	r.OK = len(all)
	r.summarise(all)
	if r.Usage != nil {
		r.Usage.perRequest(r.OK)
	}
	return r
}

// summarise fills throughput and latency figures from the successful
// requests' latencies (which it sorts).
func (r *result) summarise(lat []time.Duration) {
	if r.Elapsed > 0 {
		r.Throughput = float64(len(lat)) / r.Elapsed.Seconds()
	}
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	r.Mean = sum / time.Duration(len(lat))
	r.P50 = percentile(lat, 50)
	r.P90 = percentile(lat, 90)
	r.P99 = percentile(lat, 99)
	r.Max = lat[len(lat)-1]
}

// percentile returns the nearest-rank p-th percentile of sorted: the
// smallest sample with at least p% of the samples at or below it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}
