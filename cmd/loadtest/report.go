package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is the whole run.
type report struct {
	URL            string        `json:"url"`
	RunID          string        `json:"runId"`
	Clients        int           `json:"clients"`
	Tokens         int           `json:"tokens"`
	Duration       time.Duration `json:"durationNs"`
	Warmup         time.Duration `json:"warmupNs"`
	PerClient      int           `json:"requestsPerClient,omitempty"`
	GOMAXPROCS     int           `json:"loadtestGomaxprocs"`
	LoadAvgBefore  string        `json:"loadAvgBefore,omitempty"`
	LoadAvgAfter   string        `json:"loadAvgAfter,omitempty"`
	SessionsBefore int64         `json:"sessionsBefore,omitempty"`
	SessionsAfter  int64         `json:"sessionsAfter,omitempty"`
	Results        []result      `json:"results"`
	// RatioBA is (b)/(a) throughput: the share of baseline throughput left
	// once every request is authenticated (target >= 0.9). With -rounds,
	// it is the median of the rounds' ratios, RoundRatiosBA.
	RatioBA       *float64  `json:"ratioBA,omitempty"`
	RoundRatiosBA []float64 `json:"roundRatiosBA,omitempty"`
}

// ratioBATarget is the target for (b)/(a): issue 10's, with 10,000
// sessions (-sessions), which raised issue 6's 0.85.
const ratioBATarget = 0.9

func (r *report) finish() {
	rounds := 0
	for _, x := range r.Results {
		rounds = max(rounds, x.Round)
	}
	if rounds == 0 {
		r.RatioBA = ratio(r.Results, "b", "a")
		return
	}
	for round := 1; round <= rounds; round++ {
		of := slices.DeleteFunc(slices.Clone(r.Results), func(x result) bool { return x.Round != round })
		if v := ratio(of, "b", "a"); v != nil {
			r.RoundRatiosBA = append(r.RoundRatiosBA, *v)
		}
	}
	if len(r.RoundRatiosBA) > 0 {
		m := median(r.RoundRatiosBA)
		r.RatioBA = &m
	}
}

// ratio returns num's throughput over den's, nil unless both ran and den
// did some work.
func ratio(rs []result, num, den string) *float64 {
	i := slices.IndexFunc(rs, func(r result) bool { return r.Key == num })
	j := slices.IndexFunc(rs, func(r result) bool { return r.Key == den })
	if i < 0 || j < 0 || rs[j].Throughput == 0 {
		return nil
	}
	v := rs[i].Throughput / rs[j].Throughput
	return &v
}

// median returns the median of vs (the mean of the middle two for an even
// count), which it does not modify.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// label names a result in the table: its key, and its round with -rounds.
func (x result) label() string {
	if x.Round == 0 {
		return x.Key
	}
	return fmt.Sprintf("%s#%d", x.Key, x.Round)
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeTable(w io.Writer) {
	window := fmt.Sprintf("%s each after %s warm-up", r.Duration, r.Warmup)
	if r.PerClient > 0 {
		window = fmt.Sprintf("%d requests per client", r.PerClient)
	}
	fmt.Fprintf(w, "loadtest %s: %s, %d clients, %d access tokens for (b) and (c), %s\n", r.RunID, r.URL, r.Clients, r.Tokens, window)
	if r.SessionsBefore > 0 || r.SessionsAfter > 0 {
		fmt.Fprintf(w, "sessions table: %d rows before, %d after\n", r.SessionsBefore, r.SessionsAfter)
	}
	if r.LoadAvgBefore != "" {
		fmt.Fprintf(w, "load average: %s before, %s after\n", r.LoadAvgBefore, r.LoadAvgAfter)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\t\treq/s\tok\terrors\tp50\tp90\tp99\tmax\tsrv CPU/req\tpeers CPU/req\tpg CPU/req\tall CPU/req\tsrv peak RSS")
	for _, x := range r.Results {
		srvCPU, peersCPU, pgCPU, allCPU, rss := "-", "-", "-", "-", "-"
		if u := x.Usage; u != nil {
			if u.ServerCPU > 0 {
				srvCPU = fmtDur(u.ServerCPUPerReq)
			}
			if u.PeersCPU > 0 {
				peersCPU = fmtDur(u.PeersCPUPerReq)
			}
			if u.PostgresCPU > 0 {
				pgCPU = fmtDur(u.PostgresCPUPerReq)
			}
			if x.OK > 0 {
				allCPU = fmtDur(u.MachineCPUPerReq)
			}
			if u.ServerPeakRSSKiB > 0 {
				rss = fmt.Sprintf("%.1f MiB", float64(u.ServerPeakRSSKiB)/1024)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			x.label(), x.Title, x.Throughput, x.OK, x.Errors,
			fmtDur(x.P50), fmtDur(x.P90), fmtDur(x.P99), fmtDur(x.Max), srvCPU, peersCPU, pgCPU, allCPU, rss)
	}
	tw.Flush()

	for _, x := range r.Results {
		if len(x.ErrorCodes) > 0 {
			fmt.Fprintf(w, "errors of %s: %s\n", x.label(), formatCodes(x.ErrorCodes))
		}
	}
	if r.hasUsage() {
		fmt.Fprintf(w, "\nCPU over the measured window, in %% of one core (the machine has %d CPUs);\n"+
			"\"other processes\" is everything else on the machine (PostgreSQL's own background work, other jobs):\n", r.cpus())
		for _, x := range r.Results {
			u := x.Usage
			if u == nil || u.Wall <= 0 {
				continue
			}
			pct := func(d time.Duration) string {
				if d <= 0 {
					return "-"
				}
				return fmt.Sprintf("%.0f%%", 100*d.Seconds()/u.Wall.Seconds())
			}
			other := u.MachineBusy - u.ServerCPU - u.PeersCPU - u.PostgresCPU - u.LoadtestCPU - u.MachineIRQ
			fmt.Fprintf(w, "  %s: machine %s = server %s + other instances %s + PostgreSQL backends %s + loadtest %s + irq/softirq %s + other processes %s\n",
				x.label(), pct(u.MachineBusy), pct(u.ServerCPU), pct(u.PeersCPU), pct(u.PostgresCPU), pct(u.LoadtestCPU), pct(u.MachineIRQ), pct(max(0, other)))
		}
	}
	if r.RatioBA != nil {
		verdict := "met"
		if *r.RatioBA < ratioBATarget {
			verdict = fmt.Sprintf("missed by %.1f%%", 100*(ratioBATarget-*r.RatioBA)/ratioBATarget)
		}
		what := "(b)/(a)"
		if len(r.RoundRatiosBA) > 0 {
			parts := make([]string, len(r.RoundRatiosBA))
			for i, v := range r.RoundRatiosBA {
				parts[i] = fmt.Sprintf("%.3f", v)
			}
			what = fmt.Sprintf("rounds' (b)/(a): %s; median", strings.Join(parts, ", "))
		}
		fmt.Fprintf(w, "\n%s = %.3f  (target >= %.2f: %s)\n", what, *r.RatioBA, ratioBATarget, verdict)
	}
}

func (r *report) hasUsage() bool {
	return slices.ContainsFunc(r.Results, func(x result) bool { return x.Usage != nil })
}

func (r *report) cpus() int {
	for _, x := range r.Results {
		if x.Usage != nil && x.Usage.MachineCPUs > 0 {
			return x.Usage.MachineCPUs
		}
	}
	return 0
}

// formatCodes lists error codes by count, most frequent first.
func formatCodes(codes map[string]int) string {
	keys := make([]string, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if codes[a] != codes[b] {
			return codes[b] - codes[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s x%d", k, codes[k])
	}
	return strings.Join(parts, ", ")
}

// fmtDur prints a latency in milliseconds, or microseconds below 1 ms.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	default:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
}
