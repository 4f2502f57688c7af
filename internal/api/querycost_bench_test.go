package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
)

// worstQueries are the most expensive documents found that the query limits
// admit, one per kind of work (BENCHMARKS.md, "Parsing and validation", lists
// what else was tried). Each is sent anonymously, with a fresh comment so
// that it is parsed and validated every time.
var worstQueries = map[string]string{
	// 32 anonymous operations, each selecting 8 unknown fields: errors
	// for each (not alone, unknown fields).
	"AnonymousOperations": strings.Repeat("{"+strings.Repeat(" f", 8)+" } ", maxOperations),
	// 498 unknown directives on one field: one error each.
	"UnknownDirectives": "{ __typename" + strings.Repeat(" @d", 498) + " }",
	// 498 unknown fields: one error each, with suggestions.
	"UnknownFields": "{" + repeatf(498, " f%d") + " }",
	// 8 times the same field with 38 arguments each: validation compares
	// every two on one path, argument by argument.
	"RepeatedArguments": "{" + strings.Repeat(" __type("+repeatf(38, "a%d: 1 ")+") { name }", 8) + " }",
	// A 16 KiB field name, compared with every field for suggestions.
	"LongName": "{ " + strings.Repeat("x", maxQueryBytes-64) + " }",
	// GraphiQL's introspection query, answered (the playground is on).
	"Introspection": introspectionQuery,
}

// repeatf joins format applied to 0…n-1.
func repeatf(n int, format string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, format, i)
	}
	return b.String()
}

// BenchmarkWorstQuery sends each of worstQueries through the handler of
// New and reports the CPU it took per request (cpu-ms/op: the whole
// process's user and system time, so it holds on a busy machine where ns/op
// does not).
func BenchmarkWorstQuery(b *testing.B) {
	names := make([]string, 0, len(worstQueries)+1)
	for name := range worstQueries {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, playground := range []bool{true, false} {
		h := benchHandler(b, func(c *config) { c.Playground = playground })
		b.Run(fmt.Sprintf("Playground=%v", playground), func(b *testing.B) {
			benchQueries(b, h, names)
		})
	}
}

func benchQueries(b *testing.B, h http.Handler, names []string) {
	for _, name := range append([]string{"Typename"}, names...) {
		q := worstQueries[name]
		if name == "Typename" {
			q = "{ __typename }" // the baseline: the cheapest request
		}
		b.Run(name, func(b *testing.B) {
			start := cpuTime()
			for i := 0; b.Loop(); i++ {
				body, _ := json.Marshal(map[string]any{"query": fmt.Sprintf("#%d\n%s", i, q)})
				req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code >= 500 {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
			b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
		})
	}
}

// benchHandler is the handler of New over a fresh database, without the
// session cache, for benchmarks (the test server's harness takes a
// *testing.T).
func benchHandler(tb testing.TB, edit func(*config)) http.Handler {
	tb.Helper()
	_, _, h := newHandler(tb, pgtest.New(tb), func(c *config) {
		c.SessionCache = false
		if edit != nil {
			edit(c)
		}
	}, io.Discard)
	return h
}

// cpuTime is the CPU this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
