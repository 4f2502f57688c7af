package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/example/sessionauth/internal/testkit"
)

// TestQueryCachesHoldBoundedMemory posts what an anonymous client can: many
// distinct documents, as heavy as the limits admit, some as persisted
// queries, and checks how much heap the server keeps afterwards. The
// parsed-query cache is bounded by bytes (queryCacheBytes) and the
// persisted-query cache by count and text length; on main, 1,000 entries
// of whatever size was posted (150 one-MB comments kept 190 MiB).
//
// Not parallel: it reads the process's heap, and parallel tests only start
// once the sequential ones are done.
func TestQueryCachesHoldBoundedMemory(t *testing.T) {
	h := benchHandler(t, nil)
	post := func(body map[string]any) {
		raw, _ := json.Marshal(body)
		req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if strings.Contains(rec.Body.String(), "COMPLEXITY_LIMIT_EXCEEDED") || strings.Contains(rec.Body.String(), "GRAPHQL_PARSE_FAILED") {
			t.Fatalf("refused, so not cached: %.300s", rec.Body)
		}
	}
	post(map[string]any{"query": heavyDocument(-1)}) // warm up
	before := heapAfterGC()

	// Comments: the most text for the fewest nodes.
	for i := range 150 {
		q := fmt.Sprintf("{ __typename } #%d %s", i, strings.Repeat("x", maxQueryBytes-64))
		sum := sha256.Sum256([]byte(q))
		post(map[string]any{"query": q, "extensions": map[string]any{
			"persistedQuery": map[string]any{"version": 1, "sha256Hash": hex.EncodeToString(sum[:])}}})
	}
	// Nodes: the most syntax tree for the text.
	for i := range 1000 {
		post(map[string]any{"query": heavyDocument(i)})
	}

	grown := int64(heapAfterGC()) - int64(before)
	t.Logf("heap grew by %.1f MiB after 150 persisted 16 KiB comments and 1,000 distinct heavy documents", float64(grown)/(1<<20))
	// What the caches may hold, plus room for the rest of the process.
	const limit = 8<<20 + 100*16<<10 + 8<<20
	if grown > limit {
		t.Fatalf("the server kept %d MiB, want at most %d MiB", grown>>20, limit>>20)
	}
	runtime.KeepAlive(h)
}

// heavyDocument is a valid query, distinct for each i, with as many syntax
// nodes as the query limits admit: each selection carries a directive with an
// argument.
func heavyDocument(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "query Heavy%d { mySessions {", i+1)
	for range maxQueryRepeats {
		for _, f := range strings.Fields(testkit.SessionFields) {
			fmt.Fprintf(&b, " %s @include(if: true)", f)
		}
	}
	b.WriteString(" } }")
	return b.String()
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
