package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(float64(i + 1)) // 1ms .. 100ms
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"Empty", nil, 50, 0},
		{"OneSample", []time.Duration{ms(7)}, 99, ms(7)},
		{"MedianOfHundred", hundred, 50, ms(50)},
		{"P90OfHundred", hundred, 90, ms(90)},
		{"P99OfHundred", hundred, 99, ms(99)},
		{"P100IsMax", hundred, 100, ms(100)},
		{"P0IsMin", hundred, 0, ms(1)},
		// Nearest rank: the smallest sample with at least p% at or below it.
		{"NearestRankRoundsUp", []time.Duration{ms(1), ms(2), ms(3)}, 50, ms(2)},
		{"P99OfTenIsMax", hundred[:10], 99, ms(10)},
		{"P90OfTen", hundred[:10], 90, ms(9)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%d samples, %v) = %v, want %v", len(tt.sorted), tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarise(t *testing.T) {
	r := result{Elapsed: 2 * time.Second}
	r.summarise([]time.Duration{ms(4), ms(1), ms(3), ms(2)})
	if r.Throughput != 2 {
		t.Errorf("throughput = %v, want 2 req/s", r.Throughput)
	}
	if r.P50 != ms(2) || r.P90 != ms(4) || r.Max != ms(4) || r.Mean != ms(2.5) {
		t.Errorf("p50 %v p90 %v max %v mean %v, want 2ms 4ms 4ms 2.5ms", r.P50, r.P90, r.Max, r.Mean)
	}

	var empty result
	empty.Elapsed = time.Second
	empty.summarise(nil)
	if empty.Throughput != 0 || empty.P99 != 0 {
		t.Errorf("no samples: throughput %v p99 %v, want zeros", empty.Throughput, empty.P99)
	}
}

func TestRatio(t *testing.T) {
	rs := []result{{Key: "a", Throughput: 1000}, {Key: "b", Throughput: 850}, {Key: "z"}}
	if got := ratio(rs, "b", "a"); got == nil || *got != 0.85 {
		t.Errorf("ratio(b, a) = %v, want 0.85", got)
	}
	if got := ratio(rs, "b", "c"); got != nil {
		t.Errorf("ratio with a missing scenario = %v, want nil", *got)
	}
	if got := ratio(rs, "b", "z"); got != nil {
		t.Errorf("ratio over zero throughput = %v, want nil", *got)
	}
}

func TestRoundsRatio(t *testing.T) {
	rep := report{Results: []result{
		{Key: "a", Round: 1, Throughput: 1000}, {Key: "b", Round: 1, Throughput: 500},
		{Key: "a", Round: 2, Throughput: 1000}, {Key: "b", Round: 2, Throughput: 900},
		{Key: "a", Round: 3, Throughput: 500}, {Key: "b", Round: 3, Throughput: 400},
	}}
	rep.finish()
	if len(rep.RoundRatiosBA) != 3 || rep.RatioBA == nil || *rep.RatioBA != 0.8 {
		t.Errorf("round ratios %v, median %v; want [0.5 0.9 0.8], 0.8", rep.RoundRatiosBA, rep.RatioBA)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of 1..4 = %v, want 2.5", got)
	}
	var out bytes.Buffer
	rep.writeTable(&out)
	if !strings.Contains(out.String(), "b#2") || !strings.Contains(out.String(), "rounds' (b)/(a): 0.500, 0.900, 0.800; median = 0.800") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   []byte
		code   string
	}{
		{"Success", 200, `{"data":{"me":{"id":"x","email":"a@b.c"}}}`, wantMe, ""},
		{"SuccessWithoutCheck", 200, `{"data":{}}`, nil, ""},
		{"GraphQLError", 200, `{"errors":[{"message":"m","extensions":{"code":"UNAUTHENTICATED"}}],"data":null}`, wantMe, "UNAUTHENTICATED"},
		{"ErrorWithHTTPStatus", 422, `{"errors":[{"message":"m","extensions":{"code":"GRAPHQL_VALIDATION_FAILED"}}]}`, nil, "GRAPHQL_VALIDATION_FAILED"},
		{"PlainHTTPError", 502, `bad gateway`, nil, "HTTP_502"},
		{"MissingData", 200, `{"data":{"other":1}}`, wantMe, "UNEXPECTED_RESPONSE"},
		{"ErrorsWithoutCode", 200, `{"errors":[{"message":"m"}]}`, nil, "UNEXPECTED_RESPONSE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.status, []byte(tt.body), tt.want); got != tt.code {
				t.Errorf("classify = %q, want %q", got, tt.code)
			}
		})
	}
}

func TestParsePayload(t *testing.T) {
	body := []byte(`{"data":{"refresh":{"accessToken":"A","refreshToken":"R","user":{"id":"U"}}}}`)
	got, err := parsePayload(body, "refresh")
	if err != nil || got != (tokens{Access: "A", Refresh: "R", UserID: "U"}) {
		t.Errorf("parsePayload = %+v, %v", got, err)
	}
	if _, err := parsePayload([]byte(`{"data":{"refresh":null}}`), "refresh"); err == nil {
		t.Error("a null payload parsed")
	}
	// A refresh token delivered as a cookie is not a chain the load test can follow.
	if _, err := parsePayload([]byte(`{"data":{"login":{"accessToken":"A","refreshToken":null}}}`), "login"); err == nil {
		t.Error("a payload without refreshToken parsed")
	}
}

func TestErrorCode(t *testing.T) {
	if got := errorCode(codeError("TOKEN_EXPIRED")); got != "TOKEN_EXPIRED" {
		t.Errorf("errorCode = %q", got)
	}
	if got := transportCode(context.DeadlineExceeded); got != "TIMEOUT" {
		t.Errorf("transportCode(deadline) = %q", got)
	}
	if got := transportCode(io.ErrUnexpectedEOF); got != "TRANSPORT" {
		t.Errorf("transportCode(EOF) = %q", got)
	}
}

func TestParseScenarios(t *testing.T) {
	got, err := parseScenarios(" b,A,b, e ")
	if err != nil || strings.Join(got, ",") != "b,a,e" {
		t.Errorf("parseScenarios = %v, %v; want [b a e]", got, err)
	}
	for _, bad := range []string{"", ",", "a,x"} {
		if _, err := parseScenarios(bad); err == nil {
			t.Errorf("parseScenarios(%q) accepted", bad)
		}
	}
}

// TestSeveralInstances: -url lists instances; client i talks to instance i
// mod n, and a chain's consecutive steps go to different instances.
func TestSeveralInstances(t *testing.T) {
	o, err := parseFlags([]string{"-url", "http://a/graphql, http://b/graphql,http://c/graphql", "-sessions", "100", "-database-url", "postgres://x/y"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.URLs) != 3 || o.URLs[1] != "http://b/graphql" || o.Sessions != 100 {
		t.Fatalf("options = %+v", o)
	}
	e := &env{}
	for _, u := range o.URLs {
		e.apis = append(e.apis, newClient(u, 1, time.Second))
	}
	if e.api(0).url != "http://a/graphql" || e.api(4).url != "http://b/graphql" || e.api(5) == e.api(6) {
		t.Error("clients are not spread over the instances in turn")
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-c", "4", "-n", "10", "-scenarios", "a,b", "-peer-pids", "12, 34"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Clients != 4 || o.PerClient != 10 || o.Warmup != 0 || len(o.Scenarios) != 2 || !slices.Equal(o.PeerPIDs, []int{12, 34}) {
		t.Errorf("options = %+v", o)
	}
	for _, bad := range [][]string{
		{"-c", "0"},
		{"-prefill", "1000"}, // needs -database-url
		{"-sql-markers"},
		{"-d", "0"},
		{"extra"},
		{"-sessions", "10000"}, // needs -database-url
		{"-sessions", "-1", "-database-url", "postgres://x/y"},
		{"-url", " , "},
		{"-peer-pids", "12,x"},
		{"-peer-pids", "0"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tsessionauth\nVmPeak:\t 1300000 kB\nVmRSS:\t   43520 kB\nRssAnon:\t   30000 kB\n"
	if got, err := parseVmRSS([]byte(status)); err != nil || got != 43520 {
		t.Errorf("parseVmRSS = %d, %v; want 43520", got, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("a status without VmRSS parsed")
	}
}

func TestParseProcCPU(t *testing.T) {
	// The command name may contain spaces and parentheses.
	stat := "4242 (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 100 0 0\n"
	if got, err := parseProcCPU([]byte(stat)); err != nil || got != 325 {
		t.Errorf("parseProcCPU = %d, %v; want 250+75", got, err)
	}
	if _, err := parseProcCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("a short stat parsed")
	}
}

func TestSumProcCPU(t *testing.T) {
	self, err := readProcCPU(strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Skip("no /proc here")
	}
	// Two readings of this process, and one pid that cannot exist (above
	// Linux's pid_max), which counts nothing.
	if got := sumProcCPU([]int{os.Getpid(), os.Getpid(), 1 << 23}); got < 2*self {
		t.Errorf("sumProcCPU = %d, want at least twice this process's %d", got, self)
	}
}

func TestIsBackendOf(t *testing.T) {
	tests := []struct {
		cmdline string
		want    bool
	}{
		{"postgres: 15/main: postgres bench_1 127.0.0.1(43660) idle\x00", true},
		{"postgres: 15/main: postgres bench_12 127.0.0.1(43660) idle", false},
		{"postgres: 15/main: checkpointer ", false},
		{"/usr/lib/postgresql/15/bin/postgres\x00-D\x00bench_1\x00", false},
	}
	for _, tt := range tests {
		if got := isBackendOf([]byte(tt.cmdline), "bench_1"); got != tt.want {
			t.Errorf("isBackendOf(%q) = %v, want %v", tt.cmdline, got, tt.want)
		}
	}
}

func TestParseMachineCPU(t *testing.T) {
	stat := "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\ncpu1 50 3 25 500 10 2 1 1 0 0\nintr 1 2 3\n"
	got, err := parseMachineCPU([]byte(stat))
	if want := (cpuTimes{busy: 100 + 5 + 50 + 3 + 2 + 1, irq: 3 + 2, cpus: 2}); err != nil || got != want {
		t.Errorf("parseMachineCPU = %+v, %v; want %+v", got, err, want)
	}
	if _, err := parseMachineCPU([]byte("intr 1\n")); err == nil {
		t.Error("a stat without a cpu line parsed")
	}
}

// TestMeasureCountsRequests runs fake ops, with no server: the exact-count
// mode records every request, successes as latencies, failures by code.
func TestMeasureCountsRequests(t *testing.T) {
	calls := 0
	fail := errors.New("boom")
	ops := []op{
		func(context.Context, *bytes.Buffer) error { return nil },
		func(context.Context, *bytes.Buffer) error {
			calls++
			if calls%2 == 0 {
				return codeError("UNAUTHENTICATED")
			}
			return fail
		},
	}
	r := measure(context.Background(), ops, 0, 0, 10, procs{})
	if r.OK != 10 || r.Errors != 10 || r.ErrorCodes["UNAUTHENTICATED"] != 5 || r.ErrorCodes["CLIENT: boom"] != 5 {
		t.Errorf("ok %d errors %d %v; want 10 ok, 5 UNAUTHENTICATED, 5 CLIENT: boom", r.OK, r.Errors, r.ErrorCodes)
	}
	if r.Throughput <= 0 || r.Clients != 2 {
		t.Errorf("throughput %v clients %d", r.Throughput, r.Clients)
	}
}

// TestMeasureWindow checks that the timed mode stops and counts only the
// measured window.
func TestMeasureWindow(t *testing.T) {
	sleepy := func(context.Context, *bytes.Buffer) error {
		time.Sleep(5 * time.Millisecond)
		return nil
	}
	start := time.Now()
	r := measure(context.Background(), []op{sleepy, sleepy}, 20*time.Millisecond, 100*time.Millisecond, 0, procs{})
	if took := time.Since(start); took > time.Second {
		t.Errorf("measure took %v for a 120ms run", took)
	}
	// Two clients at about 200 req/s each for 0.1 s; sleeps only get longer.
	if r.OK == 0 || r.OK > 40 || r.Elapsed != 100*time.Millisecond {
		t.Errorf("ok %d elapsed %v; want 1..40 requests over 100ms", r.OK, r.Elapsed)
	}
	if r.P50 < 5*time.Millisecond {
		t.Errorf("p50 %v below the op's 5ms", r.P50)
	}
}

func TestReportTable(t *testing.T) {
	rep := report{RunID: "r", URL: "u", Clients: 2, Duration: time.Second, Results: []result{
		{Key: "a", Title: "{ __typename } (no token)", OK: 1000, Throughput: 1000, P50: 800 * time.Microsecond, P90: ms(1.5), P99: ms(3), Max: ms(9)},
		{Key: "b", Title: "{ me { id email } }", OK: 600, Throughput: 600, Errors: 2, ErrorCodes: map[string]int{"TIMEOUT": 1, "UNAUTHENTICATED": 1}},
	}}
	rep.finish()
	var out bytes.Buffer
	rep.writeTable(&out)
	for _, want := range []string{"800µs", "1.50ms", "(b)/(a) = 0.600", "missed by 33.3%", "errors of b: TIMEOUT x1, UNAUTHENTICATED x1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := rep.writeJSON(&out); err != nil || !strings.Contains(out.String(), `"ratioBA": 0.6`) {
		t.Errorf("JSON: %v\n%s", err, out.String())
	}
}

func TestSessionScenario(t *testing.T) {
	for _, tt := range []struct {
		sessions int
		keys     []string
		want     string
	}{
		{0, []string{"a", "b"}, ""},
		{10000, []string{"a", "d", "f"}, ""},
		{10000, []string{"a", "b"}, "b"},
		{10000, []string{"a", "c", "b"}, "c"},
	} {
		got := ""
		if sc := sessionScenario(tt.sessions, tt.keys); sc != nil {
			got = sc.Key
		}
		if got != tt.want {
			t.Errorf("sessionScenario(%d, %v) = %q, want %q", tt.sessions, tt.keys, got, tt.want)
		}
	}
}
