package main

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

var tokenPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{256}$`)

func TestSignUp(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)

	t.Run("IssuesTokensAndSession", func(t *testing.T) {
		p := s.signUp(t, "Ada@Example.com")
		if !tokenPattern.MatchString(p.AccessToken) || !tokenPattern.MatchString(p.refresh()) {
			t.Fatalf("tokens not 256 URL-safe characters: %q / %q", p.AccessToken, p.refresh())
		}
		if p.AccessToken == p.refresh() {
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
		s.signUp(t, "grace@example.com")
		r := s.post(t, "", signUpMutation, map[string]any{"email": "GRACE@example.COM", "password": testPassword})
		wantCode(t, r, "EMAIL_TAKEN")
	})

	bad := []struct {
		name, email, password, device string
	}{
		{"MalformedEmail", "not-an-email", testPassword, ""},
		{"EmailWithDisplayName", "Bob <bob@example.com>", testPassword, ""},
		{"EmailTooLong", strings.Repeat("a", 250) + "@example.com", testPassword, ""},
		{"PasswordTooShort", "short@example.com", "1234567", ""},
		{"PasswordTooLong", "long@example.com", strings.Repeat("p", 129), ""},
		{"DeviceNameTooLong", "device@example.com", testPassword, strings.Repeat("d", 101)},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			vars := map[string]any{"email": c.email, "password": c.password}
			if c.device != "" {
				vars["device"] = c.device
			}
			wantCode(t, s.post(t, "", signUpMutation, vars), "BAD_USER_INPUT")
		})
	}

	t.Run("LimitsAreInclusive", func(t *testing.T) {
		r := s.post(t, "", signUpMutation, map[string]any{
			"email": "limits@example.com", "password": strings.Repeat("éà", 64), "device": strings.Repeat("d", 100)})
		wantOK(t, r)
		r = s.post(t, "", signUpMutation, map[string]any{"email": "eight@example.com", "password": "xq3Vb9Kt"})
		wantOK(t, r)
	})
}

func TestSignUpDisabled(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.AllowSignUp = false })
	wantCode(t, s.post(t, "", signUpMutation, map[string]any{"email": "a@example.com", "password": testPassword}), "FORBIDDEN")
}

func TestLogin(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	first := s.signUp(t, "lin@example.com")

	t.Run("OpensAnotherSession", func(t *testing.T) {
		p := s.login(t, "LIN@example.com")
		if p.Session.ID == first.Session.ID || p.User.ID != first.User.ID {
			t.Fatalf("login session %s user %s; sign-up session %s user %s", p.Session.ID, p.User.ID, first.Session.ID, first.User.ID)
		}
		if p.AccessToken == first.AccessToken {
			t.Fatal("login reused a token")
		}
	})

	t.Run("WrongPasswordAndUnknownEmailAreIndistinguishable", func(t *testing.T) {
		wrong := s.post(t, "", loginMutation, map[string]any{"email": "lin@example.com", "password": "wrong password"})
		unknown := s.post(t, "", loginMutation, map[string]any{"email": "nobody@example.com", "password": testPassword})
		wantCode(t, wrong, "INVALID_CREDENTIALS")
		wantCode(t, unknown, "INVALID_CREDENTIALS")
		if wrong.Errors[0].Message != unknown.Errors[0].Message {
			t.Fatalf("messages differ: %q vs %q", wrong.Errors[0].Message, unknown.Errors[0].Message)
		}
	})

	t.Run("MalformedInput", func(t *testing.T) {
		wantCode(t, s.post(t, "", loginMutation, map[string]any{"email": "nope", "password": testPassword}), "BAD_USER_INPUT")
		wantCode(t, s.post(t, "", loginMutation, map[string]any{"email": "lin@example.com", "password": strings.Repeat("x", 129)}), "BAD_USER_INPUT")
		wantCode(t, s.post(t, "", loginMutation, map[string]any{"email": "lin@example.com", "password": testPassword, "device": strings.Repeat("d", 101)}), "BAD_USER_INPUT")
	})

	t.Run("MissingArgumentKeepsGqlgenCode", func(t *testing.T) {
		r := s.post(t, "", `mutation { login(input: {email: "a@b.co"}) { accessToken } }`, nil)
		wantCode(t, r, "GRAPHQL_VALIDATION_FAILED")
	})
}

func TestMe(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.signUp(t, "me@example.com")

	t.Run("WithAccessToken", func(t *testing.T) {
		var u user
		s.post(t, p.AccessToken, meQuery, nil).field(t, "me", &u)
		if u != p.User {
			t.Fatalf("me = %+v, want %+v", u, p.User)
		}
	})

	cases := []struct{ name, header string }{
		{"NoToken", ""},
		{"UnknownToken", "Bearer " + strings.Repeat("A", 256)},
		{"RefreshTokenIsWrongKind", "Bearer " + p.refresh()},
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
			r := s.postHeader(t, h, meQuery, nil)
			wantCode(t, r, "UNAUTHENTICATED")
			if r.Data["me"] != nil && string(r.Data["me"]) != "null" {
				t.Fatalf("data leaked: %s", r.Data["me"])
			}
		})
	}

	t.Run("LowercaseSchemeAccepted", func(t *testing.T) {
		wantOK(t, s.postHeader(t, map[string][]string{"Authorization": {"bearer " + p.AccessToken}}, meQuery, nil))
	})

	t.Run("TypenameNeedsNoToken", func(t *testing.T) {
		wantOK(t, s.post(t, "", `{ __typename }`, nil))
	})
}

func TestAccessTokenExpiry(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.AccessTTL = time.Second })
	p := s.signUp(t, "exp@example.com")
	if got := p.AccessTokenExpiresAt.Sub(p.Session.CreatedAt); got != time.Second {
		t.Fatalf("access token lives %v, want 1s", got)
	}
	wantOK(t, s.post(t, p.AccessToken, meQuery, nil))
	time.Sleep(time.Until(p.AccessTokenExpiresAt) + 200*time.Millisecond)

	wantCode(t, s.post(t, p.AccessToken, meQuery, nil), "TOKEN_EXPIRED")
	wantCode(t, s.post(t, p.AccessToken, mySessionsQuery, nil), "TOKEN_EXPIRED")
	// The refresh token still works and gives a working access token.
	n := s.refresh(t, p.refresh())
	wantOK(t, s.post(t, n.AccessToken, meQuery, nil))
}

func TestRefreshTokenExpiry(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) {
		c.Auth.AccessTTL = 500 * time.Millisecond
		c.Auth.RefreshTTL = time.Second
	})
	p := s.signUp(t, "rexp@example.com")
	time.Sleep(time.Until(p.RefreshTokenExpiresAt) + 200*time.Millisecond)
	wantCode(t, s.post(t, p.refresh(), refreshMutation, nil), "TOKEN_EXPIRED")
	wantCode(t, s.post(t, p.AccessToken, meQuery, nil), "TOKEN_EXPIRED")
	// The session is over: it is no longer listed for the user's other devices.
	other := s.login(t, "rexp@example.com")
	var list []session
	s.post(t, other.AccessToken, mySessionsQuery, nil).field(t, "mySessions", &list)
	if len(list) != 1 || list[0].ID != other.Session.ID {
		t.Fatalf("mySessions = %+v, want only %s", list, other.Session.ID)
	}
}
