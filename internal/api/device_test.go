package api

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/api/cookies"
	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/testkit"
)

const (
	signUpDeviceMutation = `mutation($email: String!, $password: String!) {
		signUp(input: {email: $email, password: $password}) { ` + testkit.PayloadFields + ` deviceToken } }`
	loginDeviceMutation = `mutation($email: String!, $password: String!) {
		login(input: {email: $email, password: $password}) { ` + testkit.PayloadFields + ` deviceToken } }`
	refreshDeviceMutation = `mutation { refresh { ` + testkit.PayloadFields + ` deviceToken } }`
)

type devicePayload struct {
	testkit.Payload
	DeviceToken *string `json:"deviceToken"`
}

// deviceToken returns the device proof of a successful signUp or login.
func deviceToken(t *testing.T, r testkit.Response, field string) string {
	t.Helper()
	var p devicePayload
	r.Field(t, field, &p)
	if p.DeviceToken == nil || len(*p.DeviceToken) != 256 {
		t.Fatalf("deviceToken = %v, want a 256-character token", p.DeviceToken)
	}
	return *p.DeviceToken
}

// loginOn logs in on s presenting device ("" for none) as X-Device-Token.
func loginOn(t *testing.T, s *testServer, device, email, password string) testkit.Response {
	t.Helper()
	h := http.Header{}
	if device != "" {
		h.Set(cookies.DeviceHeader, device)
	}
	return s.PostHeader(t, h, loginDeviceMutation, testkit.LoginVars(email, password))
}

// lockOut fails n logins for email from a stranger's device.
func lockOut(t *testing.T, s *testServer, email string, n int) {
	t.Helper()
	for i := range n {
		testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars(email, fmt.Sprintf("stranger guess %d", i))), "INVALID_CREDENTIALS")
	}
	retryAfter(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars(email, testkit.Password)))
}

// TestDeviceProofSurvivesLockout: a stranger's failures lock an account for
// new devices, but not for a device that proved the password before; each
// login replaces the proof, and a replaced proof is worth nothing. Over two
// instances.
func TestDeviceProofSurvivesLockout(t *testing.T) {
	t.Parallel()
	edit := func(c *config) { c.Auth.Throttle.MaxFailures = 5 }
	a, b := twoInstances(t, edit)
	r := a.Post(t, "", signUpDeviceMutation, testkit.LoginVars("owner@example.com", testkit.Password))
	first := deviceToken(t, r, "signUp")
	var p devicePayload
	r.Field(t, "signUp", &p)

	lockOut(t, b, "owner@example.com", 5)
	second := deviceToken(t, loginOn(t, b, first, "owner@example.com", testkit.Password), "login")
	if second == first {
		t.Fatal("the login did not replace the device proof")
	}
	retryAfter(t, loginOn(t, a, first, "owner@example.com", testkit.Password))
	third := deviceToken(t, loginOn(t, a, second, "owner@example.com", testkit.Password), "login")
	deviceToken(t, loginOn(t, b, third, "owner@example.com", testkit.Password), "login")

	// refresh proves no password: it hands out no device proof.
	var q devicePayload
	a.Post(t, p.Refresh(), refreshDeviceMutation, nil).Field(t, "refresh", &q)
	if q.DeviceToken != nil {
		t.Fatal("refresh returned a device proof")
	}
}

// TestDeviceProofHasItsOwnLimit: a device proof is limited on its own, also
// under concurrency over two instances, and a proof that reaches its limit
// is deleted; its device is then a stranger, locked out with the rest.
func TestDeviceProofHasItsOwnLimit(t *testing.T) {
	t.Parallel()
	edit := func(c *config) { c.Auth.Throttle.MaxFailures = 3 }
	a, b := twoInstances(t, edit)
	proof := deviceToken(t, a.Post(t, "", signUpDeviceMutation, testkit.LoginVars("stolen@example.com", testkit.Password)), "signUp")
	lockOut(t, a, "stolen@example.com", 3)

	before := verified(a, b)
	got := race(20, a, b, func(i int, s *testServer) testkit.Response {
		return loginOn(t, s, proof, "stolen@example.com", fmt.Sprintf("thief guess %d", i))
	})
	if n := verified(a, b) - before; n > 3 {
		t.Errorf("%d passwords verified on one device proof, want at most 3", n)
	}
	if got.n["INVALID_CREDENTIALS"] != 3 || got.n["RATE_LIMITED"] != 17 {
		t.Errorf("answers %v, want 3 INVALID_CREDENTIALS, then RATE_LIMITED", got.n)
	}
	retryAfter(t, loginOn(t, b, proof, "stolen@example.com", testkit.Password))
	n, err := a.db.NewSelect().Table("device_tokens").Count(testkit.Context(t))
	if err != nil || n != 0 {
		t.Fatalf("%d device proofs left (%v), want the spent one deleted", n, err)
	}
}

// TestDeviceProofIsBoundToItsAccount: a proof exempts logins to its own
// account only, and a malformed or unknown one is ignored, never an error.
func TestDeviceProofIsBoundToItsAccount(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 2 })
	mine := deviceToken(t, s.Post(t, "", signUpDeviceMutation, testkit.LoginVars("mallory@example.com", testkit.Password)), "signUp")
	s.SignUp(t, "alice@example.com")
	lockOut(t, s, "alice@example.com", 2)
	retryAfter(t, loginOn(t, s, mine, "alice@example.com", testkit.Password))
	retryAfter(t, loginOn(t, s, "not a token", "alice@example.com", testkit.Password))
	testkit.WantOK(t, loginOn(t, s, "not a token", "mallory@example.com", testkit.Password))
	testkit.WantOK(t, loginOn(t, s, strings.Repeat("A", 256), "mallory@example.com", testkit.Password))
}

// TestDeviceProofForBrowsers: with cookie transport the proof comes as an
// HttpOnly __Host- cookie (deviceToken null), and the cookie alone exempts
// the browser's next login from a lockout.
func TestDeviceProofForBrowsers(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	s := newTestServer(t, func(c *config) {
		c.Auth.AllowedOrigins = []string{app}
		c.Auth.Throttle.MaxFailures = 2
	})
	br := newBrowser(t, s, app)
	signUp := `mutation { signUp(input: {email: "tab@example.com", password: "` + testkit.Password + `"}) { ` + testkit.PayloadFields + ` deviceToken } }`
	login := strings.Replace(signUp, "signUp", "login", 1)
	login = strings.Replace(login, "SignUp", "Login", 1)

	r := br.do("application/json", signUp, nil)
	var p devicePayload
	r.Field(t, "signUp", &p)
	if p.DeviceToken != nil {
		t.Fatal("deviceToken in the body despite cookie transport")
	}
	c := deviceCookie(t, r)
	lockOut(t, s, "tab@example.com", 2)
	r = br.do("application/json", login, c)
	r.Field(t, "login", &p)
	if next := deviceCookie(t, r); next.Value == c.Value {
		t.Fatal("the login did not replace the device cookie")
	}
	retryAfter(t, br.do("application/json", login, nil))
}

func deviceCookie(t *testing.T, r testkit.Response) *http.Cookie {
	t.Helper()
	for _, c := range r.Cookies {
		if c.Name == cookies.Device {
			if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" || c.MaxAge <= 0 || len(c.Value) != 256 {
				t.Fatalf("device cookie %+v", c)
			}
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", cookies.Device, r.Header["Set-Cookie"])
	return nil
}

// TestPasswordChangeEndsDeviceProofs: the proofs proved the old password;
// after changePassword none of them exempts a login any more.
func TestPasswordChangeEndsDeviceProofs(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 2 })
	r := s.Post(t, "", signUpDeviceMutation, testkit.LoginVars("moved@example.com", testkit.Password))
	proof := deviceToken(t, r, "signUp")
	var p testkit.Payload
	r.Field(t, "signUp", &p)
	testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "a new password 1"}))
	for i := range 2 {
		testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("moved@example.com", fmt.Sprintf("guess %d", i))), "INVALID_CREDENTIALS")
	}
	retryAfter(t, loginOn(t, s, proof, "moved@example.com", "a new password 1"))
}

// TestDeviceProofsOff: DEVICE_TOKEN_TTL=0 issues none.
func TestDeviceProofsOff(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.DeviceTokenTTL = 0 })
	var p devicePayload
	s.Post(t, "", signUpDeviceMutation, testkit.LoginVars("plain@example.com", testkit.Password)).Field(t, "signUp", &p)
	if p.DeviceToken != nil {
		t.Fatal("a device proof with DEVICE_TOKEN_TTL=0")
	}
}

// TestDeviceProofExpires: an expired proof is ignored, and housekeeping
// deletes it.
func TestDeviceProofExpires(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 2 })
	proof := deviceToken(t, s.Post(t, "", signUpDeviceMutation, testkit.LoginVars("old@example.com", testkit.Password)), "signUp")
	then, arg := database.DialectOf(s.db).NowMinus(time.Second)
	s.exec(t, "UPDATE device_tokens SET expires_at = "+then, arg)
	lockOut(t, s, "old@example.com", 2)
	retryAfter(t, loginOn(t, s, proof, "old@example.com", testkit.Password))
	if _, err := s.svc.Housekeep(testkit.Context(t)); err != nil {
		t.Fatal(err)
	}
	n, err := s.db.NewSelect().Table("device_tokens").Count(testkit.Context(t))
	if err != nil || n != 0 {
		t.Fatalf("%d device proofs left after housekeeping (%v)", n, err)
	}
}

// TestDeviceProofsNeverStoredInPlainText dumps every table and looks for the
// device proofs handed out, in any encoding.
func TestDeviceProofsNeverStoredInPlainText(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	var tokens []string
	tokens = append(tokens, deviceToken(t, s.Post(t, "", signUpDeviceMutation, testkit.LoginVars("safe@example.com", testkit.Password)), "signUp"))
	tokens = append(tokens, deviceToken(t, loginOn(t, s, tokens[0], "safe@example.com", testkit.Password), "login"))
	tokens = append(tokens, deviceToken(t, loginOn(t, s, "", "safe@example.com", testkit.Password), "login"))
	dump := dumpDatabase(t, s.db)
	if !strings.Contains(dump, "safe@example.com") {
		t.Fatal("dump is missing the data it should contain")
	}
	for _, tok := range tokens {
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		for _, form := range []string{tok, tok[:32], hex.EncodeToString(raw)[:32], hex.EncodeToString([]byte(tok))[:32]} {
			if strings.Contains(dump, form) {
				t.Fatalf("a device proof is stored in the database: %.16s…", form)
			}
		}
	}
}
