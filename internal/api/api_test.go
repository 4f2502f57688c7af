package api

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/example/sessionauth/internal/testkit"
)

var tokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{256}$`)

func TestSignUp(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)

	t.Run("IssuesTokensAndSession", func(t *testing.T) {
		p := s.SignUp(t, "Ada@Example.com")
		if !tokenPattern.MatchString(p.AccessToken) || !tokenPattern.MatchString(p.Refresh()) {
			t.Fatalf("tokens not 256 URL-safe characters: %q / %q", p.AccessToken, p.Refresh())
		}
		if p.AccessToken == p.Refresh() {
			t.Fatal("access and refresh tokens are equal")
		}
		if p.User.Email != "Ada@Example.com" || p.User.ID == "" {
			t.Fatalf("user = %+v", p.User)
		}
		if !p.Session.Current || *p.Session.DeviceName != "test device" || p.Session.IPAddress == nil || p.Session.UserAgent == nil {
			t.Fatalf("session = %+v", p.Session)
		}
		if p.AccessTokenExpiresAt.Location() != time.UTC || p.AccessTokenExpiresAt != p.Session.AccessTokenExpiresAt {
			t.Fatalf("accessTokenExpiresAt = %v, session says %v", p.AccessTokenExpiresAt, p.Session.AccessTokenExpiresAt)
		}
		if got := p.AccessTokenExpiresAt.Sub(p.Session.CreatedAt); got != 15*time.Minute {
			t.Errorf("access token lives %v, want 15m", got)
		}
		if got := p.RefreshTokenExpiresAt.Sub(p.Session.CreatedAt); got != 168*time.Hour {
			t.Errorf("refresh token lives %v, want 168h", got)
		}
		if p.AccessTokenExpiresIn < 899 || p.AccessTokenExpiresIn > 900 || p.RefreshTokenExpiresIn < 168*3600-1 {
			t.Errorf("expiresIn = %d / %d", p.AccessTokenExpiresIn, p.RefreshTokenExpiresIn)
		}
	})

	t.Run("EmailTakenCaseInsensitive", func(t *testing.T) {
		s.SignUp(t, "grace@example.com")
		r := s.Post(t, "", testkit.SignUpMutation, map[string]any{"email": "GRACE@example.COM", "password": testkit.Password})
		testkit.WantCode(t, r, "EMAIL_TAKEN")
	})

	bad := []struct {
		name, email, password, device string
	}{
		{"MalformedEmail", "not-an-email", testkit.Password, ""},
		{"EmailWithDisplayName", "Bob <bob@example.com>", testkit.Password, ""},
		{"EmailTooLong", strings.Repeat("a", 250) + "@example.com", testkit.Password, ""},
		{"PasswordTooShort", "short@example.com", "1234567", ""},
		{"PasswordTooLong", "long@example.com", strings.Repeat("p", 129), ""},
		{"DeviceNameTooLong", "device@example.com", testkit.Password, strings.Repeat("d", 101)},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			vars := map[string]any{"email": c.email, "password": c.password}
			if c.device != "" {
				vars["device"] = c.device
			}
			testkit.WantCode(t, s.Post(t, "", testkit.SignUpMutation, vars), "BAD_USER_INPUT")
		})
	}

	t.Run("LimitsAreInclusive", func(t *testing.T) {
		r := s.Post(t, "", testkit.SignUpMutation, map[string]any{
			"email": "limits@example.com", "password": strings.Repeat("éà", 64), "device": strings.Repeat("d", 100)})
		testkit.WantOK(t, r)
		r = s.Post(t, "", testkit.SignUpMutation, map[string]any{"email": "eight@example.com", "password": "xq3Vb9Kt"})
		testkit.WantOK(t, r)
	})
}

func TestSignUpDisabled(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.AllowSignUp = false })
	testkit.WantCode(t, s.Post(t, "", testkit.SignUpMutation, map[string]any{"email": "a@example.com", "password": testkit.Password}), "FORBIDDEN")
}

func TestLogin(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	first := s.SignUp(t, "lin@example.com")

	t.Run("OpensAnotherSession", func(t *testing.T) {
		p := s.Login(t, "LIN@example.com", testkit.Password)
		if p.Session.ID == first.Session.ID || p.User.ID != first.User.ID {
			t.Fatalf("login session %s user %s; sign-up session %s user %s", p.Session.ID, p.User.ID, first.Session.ID, first.User.ID)
		}
		if p.AccessToken == first.AccessToken {
			t.Fatal("login reused a token")
		}
	})

	t.Run("WrongPasswordAndUnknownEmailAreIndistinguishable", func(t *testing.T) {
		wrong := s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "lin@example.com", "password": "wrong password"})
		unknown := s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "nobody@example.com", "password": testkit.Password})
		testkit.WantCode(t, wrong, "INVALID_CREDENTIALS")
		testkit.WantCode(t, unknown, "INVALID_CREDENTIALS")
		if wrong.Errors[0].Message != unknown.Errors[0].Message {
			t.Fatalf("messages differ: %q vs %q", wrong.Errors[0].Message, unknown.Errors[0].Message)
		}
	})

	t.Run("MalformedInput", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "nope", "password": testkit.Password}), "BAD_USER_INPUT")
		testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "lin@example.com", "password": strings.Repeat("x", 129)}), "BAD_USER_INPUT")
		testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, map[string]any{"email": "lin@example.com", "password": testkit.Password, "device": strings.Repeat("d", 101)}), "BAD_USER_INPUT")
	})

	t.Run("MissingArgumentKeepsGqlgenCode", func(t *testing.T) {
		r := s.Post(t, "", `mutation { login(input: {email: "a@b.co"}) { accessToken } }`, nil)
		testkit.WantCode(t, r, "GRAPHQL_VALIDATION_FAILED")
	})
}

func TestMe(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.SignUp(t, "me@example.com")

	t.Run("WithAccessToken", func(t *testing.T) {
		var u testkit.User
		s.Post(t, p.AccessToken, testkit.MeQuery, nil).Field(t, "me", &u)
		if u != p.User {
			t.Fatalf("me = %+v, want %+v", u, p.User)
		}
	})

	cases := []struct{ name, header string }{
		{"NoToken", ""},
		{"UnknownToken", "Bearer " + strings.Repeat("A", 256)},
		{"RefreshTokenIsWrongKind", "Bearer " + p.Refresh()},
		{"MalformedToken", "Bearer abc"},
		{"WrongScheme", "Basic " + p.AccessToken},
		{"NoScheme", p.AccessToken},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := map[string][]string{}
			if c.header != "" {
				h["Authorization"] = []string{c.header}
			}
			r := s.PostHeader(t, h, testkit.MeQuery, nil)
			testkit.WantCode(t, r, "UNAUTHENTICATED")
			if r.Data["me"] != nil && string(r.Data["me"]) != "null" {
				t.Fatalf("data leaked: %s", r.Data["me"])
			}
		})
	}

	t.Run("LowercaseSchemeAccepted", func(t *testing.T) {
		testkit.WantOK(t, s.PostHeader(t, map[string][]string{"Authorization": {"bearer " + p.AccessToken}}, testkit.MeQuery, nil))
	})

	t.Run("TypenameNeedsNoToken", func(t *testing.T) {
		testkit.WantOK(t, s.Post(t, "", `{ __typename }`, nil))
	})
}

func TestAccessTokenExpiry(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.AccessTTL = time.Second })
	p := s.SignUp(t, "exp@example.com")
	if got := p.AccessTokenExpiresAt.Sub(p.Session.CreatedAt); got != time.Second {
		t.Fatalf("access token lives %v, want 1s", got)
	}
	testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil))
	time.Sleep(time.Until(p.AccessTokenExpiresAt) + 200*time.Millisecond)

	testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil), "TOKEN_EXPIRED")
	testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.MySessionsQuery, nil), "TOKEN_EXPIRED")
	// The refresh token still works and gives a working access token.
	n := s.Refresh(t, p.Refresh())
	testkit.WantOK(t, s.Post(t, n.AccessToken, testkit.MeQuery, nil))
}

func TestRefreshTokenExpiry(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) {
		c.Auth.AccessTTL = 500 * time.Millisecond
		c.Auth.RefreshTTL = time.Second
	})
	p := s.SignUp(t, "rexp@example.com")
	time.Sleep(time.Until(p.RefreshTokenExpiresAt) + 200*time.Millisecond)
	testkit.WantCode(t, s.Post(t, p.Refresh(), testkit.RefreshMutation, nil), "TOKEN_EXPIRED")
	testkit.WantCode(t, s.Post(t, p.AccessToken, testkit.MeQuery, nil), "TOKEN_EXPIRED")
	// The session is over: it is no longer listed for the user's other devices.
	other := s.Login(t, "rexp@example.com", testkit.Password)
	var list []testkit.Session
	s.Post(t, other.AccessToken, testkit.MySessionsQuery, nil).Field(t, "mySessions", &list)
	if len(list) != 1 || list[0].ID != other.Session.ID {
		t.Fatalf("mySessions = %+v, want only %s", list, other.Session.ID)
	}
}
