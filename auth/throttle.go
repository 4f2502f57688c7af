package auth

import (
	"context"
	"math"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// Login throttling keeps its counters in the database, so every instance behind
// a load balancer sees the same count. Each key (an email, a client address)
// has a fixed window that opens at its first failure; once a key has Max
// failures in its window, every attempt on it, even with the right password,
// is refused until the window closes. A refused attempt does not count, so
// an attacker cannot stretch the lockout.

// ThrottleConfig sets the limits of login throttling.
type ThrottleConfig struct {
	MaxFailures      int           // LOGIN_MAX_FAILURES, per email
	MaxFailuresPerIP int           // LOGIN_MAX_FAILURES_PER_IP, per client address, across emails
	Window           time.Duration // LOGIN_FAILURE_WINDOW
}

func emailThrottleKey(key string) string { return "email:" + key }
func ipThrottleKey(ip string) string     { return "ip:" + ip }

// checkThrottle answers RATE_LIMITED, with the time until the earliest
// window that allows an attempt, when any of keys is exhausted.
func (s *Service) checkThrottle(ctx context.Context, email, ip string) error {
	var rows []struct {
		Key        string  `bun:"key"`
		Failures   int     `bun:"failures"`
		RetryAfter float64 `bun:"retry_after"`
	}
	keys := []string{emailThrottleKey(email)}
	if ip != "" {
		keys = append(keys, ipThrottleKey(ip))
	}
	cutoff, arg := s.dialect.NowMinus(s.cfg.Throttle.Window)
	err := s.db.NewSelect().Model((*models.LoginThrottle)(nil)).
		Column("key", "failures").
		ColumnExpr("? - "+s.dialect.SecondsSince("window_start")+" AS retry_after", s.cfg.Throttle.Window.Seconds()).
		Where("key IN (?)", bun.In(keys)).
		Where("window_start > "+cutoff, arg).
		Scan(ctx, &rows)
	if err != nil {
		return dbError(err)
	}
	var wait float64
	for _, r := range rows {
		limit := s.cfg.Throttle.MaxFailures
		if r.Key != keys[0] {
			limit = s.cfg.Throttle.MaxFailuresPerIP
		}
		if limit > 0 && r.Failures >= limit && r.RetryAfter > wait {
			wait = r.RetryAfter
		}
	}
	if wait > 0 {
		secs := int(math.Ceil(wait))
		return &Error{Code: CodeRateLimited, Message: "too many failed logins; retry later", RetryAfter: secs}
	}
	return nil
}

// recordFailure counts one failed login against email and ip, opening a new
// window where the old one has closed. One statement, so concurrent failures
// on any instance all count.
func (s *Service) recordFailure(ctx context.Context, email, ip string) error {
	keys := []string{emailThrottleKey(email)}
	if ip != "" {
		keys = append(keys, ipThrottleKey(ip))
	}
	rows := make([]models.LoginThrottle, len(keys))
	for i, k := range keys {
		rows[i] = models.LoginThrottle{Key: k, Failures: 1}
	}
	cutoff, arg := s.dialect.NowMinus(s.cfg.Throttle.Window)
	expired := "login_throttle.window_start <= " + cutoff
	_, err := s.db.NewInsert().Model(&rows).
		Value("window_start", s.dialect.Now).
		On("CONFLICT (key) DO UPDATE").
		Set("failures = CASE WHEN "+expired+" THEN 1 ELSE login_throttle.failures + 1 END", arg).
		Set("window_start = CASE WHEN "+expired+" THEN "+s.dialect.Now+" ELSE login_throttle.window_start END", arg).
		Exec(ctx)
	return err
}

// clearFailures forgets the failures of email after a successful login. The
// client address keeps its count: a sprayer who knows one password must not
// reset the limit that protects everyone else's accounts.
func (s *Service) clearFailures(ctx context.Context, email string) error {
	_, err := s.db.NewDelete().Model((*models.LoginThrottle)(nil)).
		Where("key = ?", emailThrottleKey(email)).Exec(ctx)
	return err
}

// deleteExpiredThrottles removes counters whose window has closed, at most
// batch rows, and returns how many it removed.
func (s *Service) deleteExpiredThrottles(ctx context.Context, db bun.IDB, window time.Duration, batch int) (int, error) {
	cutoff, arg := s.dialect.NowMinus(window)
	expired := db.NewSelect().Model((*models.LoginThrottle)(nil)).Column("key").
		Where("window_start <= "+cutoff, arg).
		Limit(int64(batch)).Apply(s.dialect.ForUpdateSkipLocked)
	res, err := db.NewDelete().Model((*models.LoginThrottle)(nil)).
		Where("key IN (?)", expired).
		Exec(ctx)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
