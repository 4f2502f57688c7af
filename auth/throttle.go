package auth

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"time"

	"github.com/uptrace/bun"

	"github.com/example/sessionauth/models"
)

// Throttling keeps its counters in the database, so every instance behind a
// load balancer sees the same count. Each key (an email, a client address, a
// device proof) has a fixed window that opens at its first counted attempt.
//
// An attempt is counted before its password is hashed, never after: reserve
// takes one place on each of the attempt's keys with one statement per key
// that both counts and answers (an upsert whose update applies only while
// the key's failures plus its attempts in flight are under the limit,
// returning the row it counted on), all in one transaction. The database
// serialises those statements on each key's row, so however many attempts
// race on however many instances, at most Max of them per window get to
// check a password; the rest answer RATE_LIMITED without costing a hash.
//
// Once checked, a wrong password turns its place into a failure (fail); a
// right one gives back its own place (release) and nothing else: the
// failures that other attempts earned stand until their window closes, so a
// right password, concurrent or not, never makes room for more guesses. The
// owner of an account is not locked out by them on a device that signed in
// before (see device.go). When only attempts in flight fill a key, an
// attempt waits for them to settle rather than fail, so concurrent logins
// with the right password all get in. A refused attempt takes no place, so
// it cannot stretch the lockout.

// ThrottleConfig sets the limits of login and sign-up throttling.
type ThrottleConfig struct {
	MaxFailures      int           // LOGIN_MAX_FAILURES, per email and per device proof
	MaxFailuresPerIP int           // LOGIN_MAX_FAILURES_PER_IP, per client address, across emails
	Window           time.Duration // LOGIN_FAILURE_WINDOW
	// MaxSignUpsPerIP caps sign-up attempts per client address in
	// SignUpWindow; 0 turns the limit off (SIGNUP_MAX_PER_IP, SIGNUP_WINDOW).
	MaxSignUpsPerIP int
	SignUpWindow    time.Duration
	// DeviceTokenTTL is how long a device proof lasts after the login that
	// issued it; 0 issues none (DEVICE_TOKEN_TTL).
	DeviceTokenTTL time.Duration
}

// Keys of login_throttle: the prefix says what is counted. signup_throttle,
// of the same shape, is keyed by the address bucket alone.
func emailThrottleKey(key string) string { return "email:" + key }
func ipThrottleKey(bucket string) string { return "ip:" + bucket }

// The counter tables, each named by the alias login_throttle in queries so
// that one spelling of them serves both.
const (
	loginThrottle  = "login_throttle"
	signUpThrottle = "signup_throttle"
)

func counterTable(table string) string { return table + " AS login_throttle" }

// addressBucket is the unit every per-address limit counts: an IPv4 address,
// or the /64 an IPv6 address belongs to. One subscriber gets at least a /64
// (RFC 6177) and picks addresses in it at will (RFC 8981), so counting per
// /128 would give one client 2^64 budgets. A client address that is not an
// IP (it never is behind net/http) is counted as it is.
func addressBucket(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is4() {
		return addr.String()
	}
	return netip.PrefixFrom(addr, 64).Masked().String()
}

// limit is one key an attempt is counted on: at most max attempts per
// window; max 0 means no limit, and the key is not counted at all.
type limit struct {
	table  string // loginThrottle or signUpThrottle
	key    string
	max    int
	window time.Duration
}

// loginLimits are the keys of a password check for the account of email
// (its canonical key) from client address ip ("" when unknown).
func (s *Service) loginLimits(email, ip string) []limit {
	t := s.cfg.Throttle
	limits := []limit{s.emailLimit(email)}
	if ip != "" {
		limits = append(limits, limit{table: loginThrottle, key: ipThrottleKey(addressBucket(ip)), max: t.MaxFailuresPerIP, window: t.Window})
	}
	return limits
}

// emailLimit is the per-email key, which login and changePassword share.
func (s *Service) emailLimit(email string) limit {
	t := s.cfg.Throttle
	return limit{table: loginThrottle, key: emailThrottleKey(email), max: t.MaxFailures, window: t.Window}
}

func (s *Service) signUpLimits(ip string) []limit {
	if ip == "" {
		return nil
	}
	t := s.cfg.Throttle
	return []limit{{table: signUpThrottle, key: addressBucket(ip), max: t.MaxSignUpsPerIP, window: t.SignUpWindow}}
}

var (
	errLoginLimited  = &Error{Code: CodeRateLimited, Message: "too many failed password checks; retry later"}
	errSignUpLimited = &Error{Code: CodeRateLimited, Message: "too many sign-ups from this address; retry later"}
)

// reservation is the places one attempt holds: counter keys, or a device
// proof's counter, each with the start of the window it was counted in.
type reservation struct {
	slots []slot
}

type slot struct {
	table, key  string // a counter, or "" for a device proof
	device      []byte // the device proof's token hash
	windowStart time.Time
}

// How long an attempt waits for attempts in flight to settle when only they
// fill a key (each takes one password check): it polls, backing off from
// pendingPollMin to pendingPollMax, for at most pendingWait and never past
// its request's deadline less pendingMargin.
const (
	pendingPollMin = 10 * time.Millisecond
	pendingPollMax = 200 * time.Millisecond
	pendingWait    = 5 * time.Second
	pendingMargin  = time.Second
)

// reserve counts one attempt in flight on every key of limits, or on none:
// when a key has reached its limit in failures it answers refusal
// (RATE_LIMITED) with retryAfterSeconds, the time until every exhausted
// window has closed; when attempts in flight fill it, it waits for them,
// and answers refusal with retryAfterSeconds 1 if they take too long.
// Errors: RATE_LIMITED, SERVICE_UNAVAILABLE.
func (s *Service) reserve(ctx context.Context, limits []limit, refusal *Error) (*reservation, error) {
	return s.reserveOr(ctx, limits, refusal, nil)
}

// reserveOr is reserve that, when it refuses because of failures, records
// e (SIGN_IN_RATE_LIMITED; nil: nothing) in the transaction that decided
// the refusal, which counted nothing (see tryReserve).
func (s *Service) reserveOr(ctx context.Context, limits []limit, refusal *Error, e *Event) (*reservation, error) {
	deadline := time.Now().Add(pendingWait)
	if d, ok := ctx.Deadline(); ok && d.Add(-pendingMargin).Before(deadline) {
		deadline = d.Add(-pendingMargin)
	}
	for poll := pendingPollMin; ; poll = min(2*poll, pendingPollMax) {
		r, err := s.tryReserve(ctx, limits, refusal, e)
		if !errors.Is(err, errInFlight) {
			return r, err
		}
		if time.Now().Add(poll).After(deadline) {
			return nil, &Error{Code: refusal.Code, Message: refusal.Message, RetryAfter: 1}
		}
		select {
		case <-ctx.Done():
			return nil, dbError(ctx.Err())
		case <-time.After(poll):
		}
	}
}

// errInFlight: a key is full of attempts still being checked.
var errInFlight = errors.New("throttle: attempts in flight fill the limit")

func (s *Service) tryReserve(ctx context.Context, limits []limit, refusal *Error, e *Event) (*reservation, error) {
	if e == nil {
		return s.tryReserveIn(ctx, s.db, limits, refusal)
	}
	var r *reservation
	var refused *Error
	// A refusal undoes the places it counted on earlier keys (a savepoint)
	// and keeps its event: one transaction, which on SQLite takes the
	// write lock once.
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		r, err = s.tryReserveIn(ctx, tx, limits, refusal)
		if errors.As(err, &refused) && refused.Code == refusal.Code {
			return s.recordEvent(ctx, tx, *e)
		}
		refused = nil
		return err
	})
	if err != nil {
		return nil, dbError(err)
	}
	if refused != nil {
		return nil, refused
	}
	return r, nil
}

// tryReserveIn runs one try of reserve in a transaction of db (a savepoint
// when db is one already).
func (s *Service) tryReserveIn(ctx context.Context, db bun.IDB, limits []limit, refusal *Error) (*reservation, error) {
	r := new(reservation)
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		r.slots = r.slots[:0]
		for i, l := range limits {
			if l.max <= 0 {
				continue
			}
			cutoff, arg := s.dialect.NowMinus(l.window)
			expired := "login_throttle.window_start <= " + cutoff
			row := &models.LoginThrottle{Key: l.key, Pending: 1}
			res, err := tx.NewInsert().Model(row).ModelTableExpr(counterTable(l.table)).
				Value("window_start", s.dialect.Now).
				On("CONFLICT (key) DO UPDATE").
				Set("failures = CASE WHEN "+expired+" THEN 0 ELSE login_throttle.failures END", arg).
				Set("pending = CASE WHEN "+expired+" THEN 1 ELSE login_throttle.pending + 1 END", arg).
				Set("window_start = CASE WHEN "+expired+" THEN "+s.dialect.Now+" ELSE login_throttle.window_start END", arg).
				Where(expired+" OR login_throttle.failures + login_throttle.pending < ?", arg, l.max).
				Returning("window_start").
				Exec(ctx)
			if err != nil {
				return err
			}
			// No row came back: the key had no room, nothing was counted.
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return s.refuse(ctx, tx, limits[i:], refusal)
			}
			r.slots = append(r.slots, slot{table: l.table, key: l.key, windowStart: row.WindowStart})
		}
		return nil
	})
	if err != nil {
		return nil, dbError(err)
	}
	return r, nil
}

// refuse returns refusal with the seconds until every key of limits that
// has reached its limit in failures has room again, or errInFlight when
// none has (attempts in flight fill them), as an error that rolls the
// reservation back. The keys before limits were counted in this
// transaction: they had room.
func (s *Service) refuse(ctx context.Context, tx bun.Tx, limits []limit, refusal *Error) error {
	wait := 0.0
	for _, l := range limits {
		if l.max <= 0 {
			continue
		}
		var rows []float64
		err := tx.NewSelect().Model((*models.LoginThrottle)(nil)).ModelTableExpr(counterTable(l.table)).
			ColumnExpr("? - "+s.dialect.SecondsSince("window_start"), l.window.Seconds()).
			Where("key = ? AND failures >= ?", l.key, l.max).
			Scan(ctx, &rows)
		if err != nil {
			return err
		}
		for _, w := range rows {
			wait = max(wait, w, 1)
		}
	}
	if wait == 0 {
		return errInFlight
	}
	return &Error{Code: refusal.Code, Message: refusal.Message, RetryAfter: int(math.Ceil(wait))}
}

// release gives back r's places: the attempt was not a failure (the right
// password, or it never got to check one). fail turns them into failures;
// failWith also records e, the failure's event (SIGN_IN_FAILED), in the same
// transaction. Either acts only on the window the place was taken in. A
// failure to settle is logged and left: the place stays taken until its
// window closes.
func (s *Service) release(ctx context.Context, r *reservation) { s.settle(ctx, r, false, nil) }

func (s *Service) fail(ctx context.Context, r *reservation) { s.settle(ctx, r, true, nil) }

func (s *Service) failWith(ctx context.Context, r *reservation, e Event) { s.settle(ctx, r, true, &e) }

func (s *Service) settle(ctx context.Context, r *reservation, failed bool, e *Event) {
	if (r == nil || len(r.slots) == 0) && e == nil {
		return
	}
	// The client may have gone already; the place must be settled anyway.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := s.settleIn(ctx, tx, r, failed); err != nil {
			return err
		}
		if e != nil {
			return s.recordEvent(ctx, tx, *e)
		}
		return nil
	})
	if err != nil && e != nil {
		// The count matters more than its event: settle without it.
		s.log.WarnContext(ctx, "recording a failed password check", "err", err, "kind", string(e.Kind))
		err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error { return s.settleIn(ctx, tx, r, failed) })
	}
	if err != nil {
		s.log.WarnContext(ctx, "settling a throttle place", "err", err, "failed", failed)
	}
}

// settleIn settles r's places in db, one statement per place, in the order
// reserve took them. The order matters: a single UPDATE over several keys
// locks its rows in the order it finds them on disk, which may be the
// reverse of the order another login's reserve is locking them in, and the
// two deadlock (seen with concurrent logins of one account from one
// address: TestConcurrentLoginsAndRevocationsOfOneAccount).
func (s *Service) settleIn(ctx context.Context, db bun.IDB, r *reservation, failed bool) error {
	if r == nil {
		return nil
	}
	for _, sl := range r.slots {
		var err error
		switch {
		case sl.device == nil:
			q := db.NewUpdate().Model((*models.LoginThrottle)(nil)).ModelTableExpr(counterTable(sl.table)).
				Set("pending = pending - 1").
				Where("key = ? AND window_start = ? AND pending > 0", sl.key, sl.windowStart)
			if failed {
				q = q.Set("failures = failures + 1")
			}
			_, err = q.Exec(ctx)
		case failed:
			err = s.failDevice(ctx, db, sl.device)
		default:
			// A device proof counts its attempts in flight as failures.
			_, err = db.NewUpdate().Model((*models.DeviceToken)(nil)).
				Set("failures = failures - 1").
				Where("token_hash = ? AND window_start = ? AND failures > 0", sl.device, sl.windowStart).
				Exec(ctx)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// deleteExpiredThrottles removes counters whose window has closed (window
// for login counters, SignUpWindow for sign-up counters) and then expired
// device proofs, at most batch rows in all, and returns how many it removed.
func (s *Service) deleteExpiredThrottles(ctx context.Context, db bun.IDB, window time.Duration, batch int) (int, error) {
	total := 0
	for _, c := range []struct {
		table  string
		window time.Duration
	}{{loginThrottle, window}, {signUpThrottle, s.cfg.Throttle.SignUpWindow}} {
		cutoff, arg := s.dialect.NowMinus(c.window)
		expired := db.NewSelect().Model((*models.LoginThrottle)(nil)).ModelTableExpr(counterTable(c.table)).
			Column("key").
			Where("window_start <= "+cutoff, arg).
			Limit(int64(batch - total)).Apply(s.dialect.ForUpdateSkipLocked)
		res, err := db.NewDelete().Model((*models.LoginThrottle)(nil)).ModelTableExpr(counterTable(c.table)).
			Where("key IN (?)", expired).
			Exec(ctx)
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		total += int(n)
		if err != nil || total >= batch {
			return total, err
		}
	}
	devices, err := s.deleteExpiredDevices(ctx, db, batch-total)
	return total + devices, err
}
