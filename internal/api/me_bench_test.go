package api

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

// BenchmarkMe sends the loadtest's { me { id email } } with one signed-in
// session's token, answered from the session cache, beside the cheapest
// request, { __typename }, through the handler of New: what resolving the
// caller costs per request, in CPU and allocations (the (b) against
// (a), without the network).
func BenchmarkMe(b *testing.B) {
	_, _, h := newHandler(b, pgtest.New(b), nil, io.Discard)
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	c := &testkit.Client{URL: srv.URL}
	token := c.SignUp(b, "bench@example.com").AccessToken
	for _, q := range []struct{ name, body, auth string }{
		{"Typename", `{"query":"{ __typename }"}`, ""},
		{"Me", `{"query":"{ me { id email } }"}`, "Bearer " + token},
	} {
		b.Run(q.name, func(b *testing.B) {
			serve := func() *httptest.ResponseRecorder {
				req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader([]byte(q.body)))
				req.Header.Set("Content-Type", "application/json")
				if q.auth != "" {
					req.Header.Set("Authorization", q.auth)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec
			}
			// The first answer fills the caches (query, session).
			if rec := serve(); rec.Code != http.StatusOK || bytes.Contains(rec.Body.Bytes(), []byte(`"errors"`)) {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			time.Sleep(10 * time.Millisecond)
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				serve()
			}
			b.ReportMetric(float64(cpuTime()-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
		})
	}
}
