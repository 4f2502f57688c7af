package main

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
)

const (
	signUpDeviceMutation = `mutation($email: String!, $password: String!) {
		signUp(input: {email: $email, password: $password}) { ` + payloadFields + ` deviceToken } }`
	loginDeviceMutation = `mutation($email: String!, $password: String!) {
		login(input: {email: $email, password: $password}) { ` + payloadFields + ` deviceToken } }`
	refreshDeviceMutation = `mutation { refresh { ` + payloadFields + ` deviceToken } }`
)

type devicePayload struct {
	payload
	DeviceToken *string `json:"deviceToken"`
}

// deviceToken returns the device proof of a successful signUp or login.
func deviceToken(t *testing.T, r gqlResponse, field string) string {
	t.Helper()
	var p devicePayload
	r.field(t, field, &p)
	if p.DeviceToken == nil || len(*p.DeviceToken) != 256 {
		t.Fatalf("deviceToken = %v, want a 256-character token", p.DeviceToken)
	}
	return *p.DeviceToken
}

// loginOn logs in on s presenting device ("" for none) as X-Device-Token.
func loginOn(t *testing.T, s *testServer, device, email, password string) gqlResponse {
	t.Helper()
	h := http.Header{}
	if device != "" {
		h.Set(cookies.DeviceHeader, device)
	}
	return s.postHeader(t, h, loginDeviceMutation, loginVars(email, password))
}

// lockOut fails n logins for email from a stranger's device.
func lockOut(t *testing.T, s *testServer, email string, n int) {
	t.Helper()
	for i := range n {
		wantCode(t, s.post(t, "", loginMutation, loginVars(email, fmt.Sprintf("stranger guess %d", i))), "INVALID_CREDENTIALS")
	}
	retryAfter(t, s.post(t, "", loginMutation, loginVars(email, testPassword)))
}

// TestDeviceProofSurvivesLockout: a stranger's failures lock an account for
// new devices, but not for a device that proved the password before; each
// login replaces the proof, and a replaced proof is worth nothing. Over two
// instances.
func TestDeviceProofSurvivesLockout(t *testing.T) {
	t.Parallel()
	edit := func(c *config) { c.Auth.Throttle.MaxFailures = 5 }
	a, b := twoInstances(t, edit)
	r := a.post(t, "", signUpDeviceMutation, loginVars("owner@example.com", testPassword))
	first := deviceToken(t, r, "signUp")
	var p devicePayload
	r.field(t, "signUp", &p)

	lockOut(t, b, "owner@example.com", 5)
	second := deviceToken(t, loginOn(t, b, first, "owner@example.com", testPassword), "login")
	if second == first {
		t.Fatal("the login did not replace the device proof")
	}
	retryAfter(t, loginOn(t, a, first, "owner@example.com", testPassword))
	third := deviceToken(t, loginOn(t, a, second, "owner@example.com", testPassword), "login")
	deviceToken(t, loginOn(t, b, third, "owner@example.com", testPassword), "login")

	// refresh proves no password: it hands out no device proof.
	var q devicePayload
	a.post(t, p.refresh(), refreshDeviceMutation, nil).field(t, "refresh", &q)
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
	proof := deviceToken(t, a.post(t, "", signUpDeviceMutation, loginVars("stolen@example.com", testPassword)), "signUp")
	lockOut(t, a, "stolen@example.com", 3)

	before := verified(a, b)
	got := race(20, a, b, func(i int, s *testServer) gqlResponse {
		return loginOn(t, s, proof, "stolen@example.com", fmt.Sprintf("thief guess %d", i))
	})
	if n := verified(a, b) - before; n > 3 {
		t.Errorf("%d passwords verified on one device proof, want at most 3", n)
	}
	if got.n["INVALID_CREDENTIALS"] != 3 || got.n["RATE_LIMITED"] != 17 {
		t.Errorf("answers %v, want 3 INVALID_CREDENTIALS, then RATE_LIMITED", got.n)
	}
	retryAfter(t, loginOn(t, b, proof, "stolen@example.com", testPassword))
	n, err := a.db.NewSelect().Table("device_tokens").Count(ctxT(t))
	if err != nil || n != 0 {
		t.Fatalf("%d device proofs left (%v), want the spent one deleted", n, err)
	}
}

// TestDeviceProofIsBoundToItsAccount: a proof exempts logins to its own
// account only, and a malformed or unknown one is ignored, never an error.
func TestDeviceProofIsBoundToItsAccount(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 2 })
	mine := deviceToken(t, s.post(t, "", signUpDeviceMutation, loginVars("mallory@example.com", testPassword)), "signUp")
	s.signUp(t, "alice@example.com")
	lockOut(t, s, "alice@example.com", 2)
	retryAfter(t, loginOn(t, s, mine, "alice@example.com", testPassword))
	retryAfter(t, loginOn(t, s, "not a token", "alice@example.com", testPassword))
	wantOK(t, loginOn(t, s, "not a token", "mallory@example.com", testPassword))
	wantOK(t, loginOn(t, s, strings.Repeat("A", 256), "mallory@example.com", testPassword))
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
	signUp := `mutation { signUp(input: {email: "tab@example.com", password: "` + testPassword + `"}) { ` + payloadFields + ` deviceToken } }`
	login := strings.Replace(signUp, "signUp", "login", 1)
	login = strings.Replace(login, "SignUp", "Login", 1)

	r, resp := br.do(http.MethodPost, "application/json", signUp, nil)
	var p devicePayload
	r.field(t, "signUp", &p)
	if p.DeviceToken != nil {
		t.Fatal("deviceToken in the body despite cookie transport")
	}
	c := deviceCookie(t, resp)
	lockOut(t, s, "tab@example.com", 2)
	r, resp = br.do(http.MethodPost, "application/json", login, c)
	r.field(t, "login", &p)
	if next := deviceCookie(t, resp); next.Value == c.Value {
		t.Fatal("the login did not replace the device cookie")
	}
	retryAfter(t, r2(br.do(http.MethodPost, "application/json", login, nil)))
}

func r2(r gqlResponse, _ *http.Response) gqlResponse { return r }

func deviceCookie(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == cookies.Device {
			if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" || c.MaxAge <= 0 || len(c.Value) != 256 {
				t.Fatalf("device cookie %+v", c)
			}
			return c
		}
	}
	t.Fatalf("no %s cookie in %v", cookies.Device, resp.Header["Set-Cookie"])
	return nil
}

// TestPasswordChangeEndsDeviceProofs: the proofs proved the old password;
// after changePassword none of them exempts a login any more.
func TestPasswordChangeEndsDeviceProofs(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 2 })
	r := s.post(t, "", signUpDeviceMutation, loginVars("moved@example.com", testPassword))
	proof := deviceToken(t, r, "signUp")
	var p payload
	r.field(t, "signUp", &p)
	wantOK(t, s.post(t, p.AccessToken, changePassword, map[string]any{"cur": testPassword, "new": "a new password 1"}))
	for i := range 2 {
		wantCode(t, s.post(t, "", loginMutation, loginVars("moved@example.com", fmt.Sprintf("guess %d", i))), "INVALID_CREDENTIALS")
	}
	retryAfter(t, loginOn(t, s, proof, "moved@example.com", "a new password 1"))
}

// TestDeviceProofsOff: DEVICE_TOKEN_TTL=0 issues none.
func TestDeviceProofsOff(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.DeviceTokenTTL = 0 })
	var p devicePayload
	s.post(t, "", signUpDeviceMutation, loginVars("plain@example.com", testPassword)).field(t, "signUp", &p)
	if p.DeviceToken != nil {
		t.Fatal("a device proof with DEVICE_TOKEN_TTL=0")
	}
}

// TestDeviceProofExpires: an expired proof is ignored, and housekeeping
// deletes it.
func TestDeviceProofExpires(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 2 })
	proof := deviceToken(t, s.post(t, "", signUpDeviceMutation, loginVars("old@example.com", testPassword)), "signUp")
	then, arg := database.DialectOf(s.db).NowMinus(time.Second)
	s.exec(t, "UPDATE device_tokens SET expires_at = "+then, arg)
	lockOut(t, s, "old@example.com", 2)
	retryAfter(t, loginOn(t, s, proof, "old@example.com", testPassword))
	if _, err := s.svc.Housekeep(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	n, err := s.db.NewSelect().Table("device_tokens").Count(ctxT(t))
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
	tokens = append(tokens, deviceToken(t, s.post(t, "", signUpDeviceMutation, loginVars("safe@example.com", testPassword)), "signUp"))
	tokens = append(tokens, deviceToken(t, loginOn(t, s, tokens[0], "safe@example.com", testPassword), "login"))
	tokens = append(tokens, deviceToken(t, loginOn(t, s, "", "safe@example.com", testPassword), "login"))
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
