package api

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/internal/testkit"
)

// TestLoginRacingChangePassword starts logins with the old password around a
// changePassword, over two instances: a session may only be created while
// the password it was verified against is still the stored one, so once
// changePassword has returned (and the racing logins have ended), no session
// made with the old password is live, on either instance.
func TestLoginRacingChangePassword(t *testing.T) {
	t.Parallel()
	url := pgtest.New(t)
	edit := func(c *config) { c.Auth.Throttle.MaxFailures = 1000 }
	var logs testkit.SyncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	a := newLoggedTestServer(t, url, edit, &logs)
	b := newLoggedTestServer(t, url, edit, &logs)
	smallPools(a, b)
	p := a.SignUp(t, "racer@example.com")
	passwords := []string{testkit.Password, "second password 2", "third password 3", "fourth password 4"}
	// Every login costs an argon2 run: few enough to stay well inside the
	// request deadline on a loaded machine under the race detector.
	const logins = 8
	lapse := 100 * time.Millisecond
	for round := range len(passwords) - 1 {
		old, next := passwords[round], passwords[round+1]
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			tokens []string
		)
		start := make(chan struct{})
		spread := lapse
		for i := range logins {
			s := []*testServer{a, b}[i%2]
			wg.Go(func() {
				<-start
				// Spread over the change's second argon2 run and its
				// commit, so that some logins read the old hash before
				// the commit and reach their sign-in after it.
				time.Sleep(spread/4 + time.Duration(i)*spread/logins)
				r := s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("racer@example.com", old))
				switch r.Code() {
				case "":
					var q testkit.Payload
					r.Field(t, "login", &q)
					mu.Lock()
					tokens = append(tokens, q.AccessToken, q.Refresh())
					mu.Unlock()
				case "INVALID_CREDENTIALS": // it lost the race: the password had changed
				default:
					t.Errorf("login answered %s", r.Code())
				}
			})
		}
		close(start)
		time.Sleep(5 * time.Millisecond)
		began := time.Now()
		testkit.WantOK(t, a.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": old, "new": next}))
		lapse = min(time.Since(began), time.Second) // the next round spreads over this round's change
		wg.Wait()
		for i, tok := range tokens {
			s := []*testServer{a, b}[i%2]
			if i%2 == 0 {
				testkit.WantCode(t, s.Post(t, tok, testkit.MeQuery, nil), "UNAUTHENTICATED")
			} else {
				testkit.WantCode(t, s.Post(t, tok, testkit.RefreshMutation, nil), "UNAUTHENTICATED")
			}
		}
		live, err := a.db.NewSelect().Table("sessions").Where("revoked_at IS NULL AND id <> ?", p.Session.ID).Count(testkit.Context(t))
		if err != nil {
			t.Fatal(err)
		}
		if live != 0 {
			t.Fatalf("round %d: %d sessions made with the old password are live after testkit.ChangePasswordMutation returned", round, live)
		}
		t.Logf("round %d: %d of %d logins got in before the change, all ended", round, len(tokens)/2, logins)
	}
	testkit.WantOK(t, b.Post(t, "", testkit.LoginMutation, testkit.LoginVars("racer@example.com", passwords[len(passwords)-1])))
	testkit.WantCode(t, b.Post(t, "", testkit.LoginMutation, testkit.LoginVars("racer@example.com", passwords[0])), "INVALID_CREDENTIALS")
}

// TestConcurrentSignUpsOfOneEmail: of concurrent sign-ups of one email over
// two instances, exactly one creates the account and the others answer
// EMAIL_TAKEN, although none of them found the email taken before hashing.
func TestConcurrentSignUpsOfOneEmail(t *testing.T) {
	t.Parallel()
	a, b := twoInstances(t, nil)
	got := race(6, a, b, func(i int, s *testServer) testkit.Response {
		vars := map[string]any{"email": fmt.Sprintf("Twin@example.com"), "password": testkit.Password}
		return s.Post(t, "", testkit.SignUpMutation, vars)
	})
	if got.n[""] != 1 || got.n["EMAIL_TAKEN"] != 5 {
		t.Fatalf("answers %v, want one success and 5 EMAIL_TAKEN", got.n)
	}
	n, err := a.db.NewSelect().Table("users").Count(testkit.Context(t))
	if err != nil || n != 1 {
		t.Fatalf("%d accounts (%v), want 1", n, err)
	}
}
