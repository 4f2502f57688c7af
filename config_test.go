package main

import (
	"strings"
	"testing"
	"time"

	"github.com/example/sessionauth/auth"
)

func configFrom(env map[string]string) (config, error) {
	return loadConfig(func(k string) string { return env[k] })
}

// TestConfigMemoryBudgetAndCacheSize reads MEMORY_BUDGET (bytes, KiB, MiB,
// GiB) and SESSION_CACHE_SIZE, refuses what does not parse, and leaves the
// runtime's soft limit alone when GOMEMLIMIT sets one.
func TestConfigMemoryBudgetAndCacheSize(t *testing.T) {
	cfg, err := configFrom(nil)
	if err != nil || cfg.Auth.MemoryBudget != auth.DefaultMemoryBudget || cfg.Auth.SessionCacheSize != auth.DefaultCacheSize || !cfg.SoftMemoryLimit {
		t.Fatalf("defaults: %+v, %v", cfg.Auth, err)
	}
	for value, want := range map[string]int64{"96MiB": 96 << 20, "1GiB": 1 << 30, "131072 KiB": 128 << 20, "104857600": 100 << 20} {
		cfg, err := configFrom(map[string]string{"MEMORY_BUDGET": value})
		if err != nil || cfg.Auth.MemoryBudget != want {
			t.Errorf("MEMORY_BUDGET=%q: %d, %v; want %d", value, cfg.Auth.MemoryBudget, err, want)
		}
	}
	for _, bad := range []string{"80MB", "0", "-1MiB", "lots", "MiB", "99999999GiB", "64MiB", "512 KiB"} {
		if _, err := configFrom(map[string]string{"MEMORY_BUDGET": bad}); err == nil {
			t.Errorf("MEMORY_BUDGET=%q accepted", bad)
		}
	}
	if cfg, err := configFrom(map[string]string{"SESSION_CACHE_SIZE": "5000"}); err != nil || cfg.Auth.SessionCacheSize != 5000 {
		t.Errorf("SESSION_CACHE_SIZE=5000: %d, %v", cfg.Auth.SessionCacheSize, err)
	}
	for _, bad := range []string{"0", "-3", "many"} {
		if _, err := configFrom(map[string]string{"SESSION_CACHE_SIZE": bad}); err == nil {
			t.Errorf("SESSION_CACHE_SIZE=%q accepted", bad)
		}
	}
	// A smaller cache leaves room for a smaller budget; a bigger one needs more.
	if _, err := configFrom(map[string]string{"MEMORY_BUDGET": "80MiB", "SESSION_CACHE_SIZE": "100"}); err != nil {
		t.Errorf("80 MiB with 100 cached sessions: %v", err)
	}
	if _, err := configFrom(map[string]string{"SESSION_CACHE_SIZE": "100000"}); err == nil {
		t.Error("the default budget accepted with 100,000 cached sessions")
	}
	if cfg, _ := configFrom(map[string]string{"GOMEMLIMIT": "100MiB"}); cfg.SoftMemoryLimit {
		t.Error("MEMORY_BUDGET overrides GOMEMLIMIT")
	}
	if !cfg.GCPercent {
		t.Error("the collector's target is left at Go's default")
	}
	if cfg, _ := configFrom(map[string]string{"GOGC": "200"}); cfg.GCPercent {
		t.Error("the server's collector target overrides GOGC")
	}
}

// TestConfigReportsEveryBadVariable: one start names every bad variable,
// each with what is wrong, in one error (on main: the first one only), and
// a variable is named once even when two checks would refuse it.
func TestConfigReportsEveryBadVariable(t *testing.T) {
	_, err := configFrom(map[string]string{
		"ACCESS_TOKEN_TTL":   "soon",
		"PLAYGROUND":         "maybe",
		"LOGIN_MAX_FAILURES": "-1",
		"SESSION_CACHE_SIZE": "many",
		"TRUSTED_PROXIES":    "10.0.0.0/8, nowhere",
		"DATABASE_URL":       "mysql://root:db-secret@localhost/x",
		"MEMORY_BUDGET":      "80MB",
	})
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		`ACCESS_TOKEN_TTL="soon": want a positive Go duration`,
		`PLAYGROUND="maybe": want true or false`,
		`LOGIN_MAX_FAILURES="-1": want a whole number`,
		`SESSION_CACHE_SIZE="many": want a whole number`,
		`TRUSTED_PROXIES: "nowhere" is not a CIDR`,
		`DATABASE_URL: `,
		`MEMORY_BUDGET="80MB": want a size`,
	} {
		if strings.Count(msg, want) != 1 {
			t.Errorf("the error does not say %q once:\n%s", want, msg)
		}
	}
	for _, name := range []string{"SESSION_CACHE_SIZE", "MEMORY_BUDGET"} {
		if n := strings.Count(msg, name+"="); n != 1 {
			t.Errorf("%s named %d times:\n%s", name, n, msg)
		}
	}
	if strings.Contains(msg, "db-secret") {
		t.Errorf("the error repeats DATABASE_URL's password:\n%s", msg)
	}
	// One bad variable reads as before: just its own message.
	_, err = configFrom(map[string]string{"PLAYGROUND": "maybe"})
	if err == nil || err.Error() != `PLAYGROUND="maybe": want true or false` {
		t.Errorf("one bad variable: %v", err)
	}
}

// TestThrottleVariables reads the variables of sign-up throttling and device
// proofs, and refuses values that do not parse, naming the variable.
func TestThrottleVariables(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SIGNUP_MAX_PER_IP": "7", "SIGNUP_WINDOW": "2h", "DEVICE_TOKEN_TTL": "0"}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	th := cfg.Auth.Throttle
	if th.MaxSignUpsPerIP != 7 || th.SignUpWindow != 2*time.Hour || th.DeviceTokenTTL != 0 {
		t.Fatalf("throttle config %+v", th)
	}
	def, _ := loadConfig(func(string) string { return "" })
	if th := def.Auth.Throttle; th.MaxSignUpsPerIP != 100 || th.SignUpWindow != 15*time.Minute || th.DeviceTokenTTL != 4320*time.Hour {
		t.Fatalf("defaults %+v", th)
	}
	for _, kv := range [][2]string{{"SIGNUP_MAX_PER_IP", "-1"}, {"SIGNUP_WINDOW", "0"}, {"DEVICE_TOKEN_TTL", "forever"}} {
		_, err := loadConfig(func(k string) string {
			if k == kv[0] {
				return kv[1]
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), kv[0]) {
			t.Errorf("%s=%s: %v, want an error naming the variable", kv[0], kv[1], err)
		}
	}
}
