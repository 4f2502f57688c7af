package main

import (
	"fmt"
	"strconv"
	"time"

	"github.com/example/sessionauth/auth"
)

// config is everything the environment sets (API.md, "Configuration").
type config struct {
	Addr        string
	DatabaseURL string
	Playground  bool
	Auth        auth.Config
}

// defaultDatabaseURL is the local development server of README.md.
const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// loadConfig reads the configuration through getenv, the one place the
// environment is read. A value that does not parse is an error, never
// silently replaced by its default.
func loadConfig(getenv func(string) string) (config, error) {
	l := loader{getenv: getenv}
	cfg := config{
		Addr:        l.str("ADDR", ":8080"),
		DatabaseURL: l.str("DATABASE_URL", defaultDatabaseURL),
		Playground:  l.boolean("PLAYGROUND", true),
		Auth: auth.Config{
			AccessTTL:   l.duration("ACCESS_TOKEN_TTL", 15*time.Minute, false),
			RefreshTTL:  l.duration("REFRESH_TOKEN_TTL", 168*time.Hour, false),
			ReuseWindow: l.duration("REFRESH_REUSE_WINDOW", 30*time.Second, true),
			AllowSignUp: l.boolean("ALLOW_SIGNUP", true),
		},
	}
	return cfg, l.err
}

type loader struct {
	getenv func(string) string
	err    error
}

func (l *loader) str(name, def string) string {
	if v := l.getenv(name); v != "" {
		return v
	}
	return def
}

func (l *loader) boolean(name string, def bool) bool {
	v := l.getenv(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("%s=%q: want true or false", name, v)
	}
	return b
}

func (l *loader) duration(name string, def time.Duration, zeroOK bool) time.Duration {
	v := l.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if (err != nil || d < 0 || d == 0 && !zeroOK) && l.err == nil {
		l.err = fmt.Errorf("%s=%q: want a positive Go duration such as 15m", name, v)
	}
	return d
}
