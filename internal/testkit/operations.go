package testkit

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// The API's types as a client decodes them (schema.graphqls).
type (
	Session struct {
		ID                    string    `json:"id"`
		DeviceName            *string   `json:"deviceName"`
		UserAgent             *string   `json:"userAgent"`
		IPAddress             *string   `json:"ipAddress"`
		CreatedAt             time.Time `json:"createdAt"`
		LastUsedAt            time.Time `json:"lastUsedAt"`
		AccessTokenExpiresAt  time.Time `json:"accessTokenExpiresAt"`
		RefreshTokenExpiresAt time.Time `json:"refreshTokenExpiresAt"`
		Current               bool      `json:"current"`
	}

	User struct {
		ID        string    `json:"id"`
		Email     string    `json:"email"`
		CreatedAt time.Time `json:"createdAt"`
	}

	// Payload is what signUp, login and refresh return.
	Payload struct {
		AccessToken           string    `json:"accessToken"`
		RefreshToken          *string   `json:"refreshToken"`
		AccessTokenExpiresAt  time.Time `json:"accessTokenExpiresAt"`
		RefreshTokenExpiresAt time.Time `json:"refreshTokenExpiresAt"`
		AccessTokenExpiresIn  int       `json:"accessTokenExpiresIn"`
		RefreshTokenExpiresIn int       `json:"refreshTokenExpiresIn"`
		User                  User      `json:"user"`
		Session               Session   `json:"session"`
	}
)

// Refresh returns the payload's refresh token, "" when it went in a cookie.
func (p Payload) Refresh() string {
	if p.RefreshToken == nil {
		return ""
	}
	return *p.RefreshToken
}

// SessionFields and PayloadFields select every field of Session and Payload.
const (
	SessionFields = `id deviceName userAgent ipAddress createdAt lastUsedAt accessTokenExpiresAt refreshTokenExpiresAt current`
	PayloadFields = `accessToken refreshToken accessTokenExpiresAt refreshTokenExpiresAt accessTokenExpiresIn refreshTokenExpiresIn
	user { id email createdAt } session { ` + SessionFields + ` }`
)

// The operations of API.md.
const (
	SignUpMutation = `mutation($email: String!, $password: String!, $device: String) {
		signUp(input: {email: $email, password: $password, deviceName: $device}) { ` + PayloadFields + ` } }`
	LoginMutation = `mutation($email: String!, $password: String!, $device: String) {
		login(input: {email: $email, password: $password, deviceName: $device}) { ` + PayloadFields + ` } }`
	RefreshMutation        = `mutation { refresh { ` + PayloadFields + ` } }`
	LogoutMutation         = `mutation { logout }`
	MeQuery                = `{ me { id email createdAt } }`
	MySessionsQuery        = `{ mySessions { ` + SessionFields + ` } }`
	RevokeMutation         = `mutation($id: ID!) { revokeSession(id: $id) }`
	RevokeOthersMutation   = `mutation { revokeOtherSessions }`
	ChangePasswordMutation = `mutation($cur: String!, $new: String!) { changePassword(currentPassword: $cur, newPassword: $new) }`
)

// Password is the password the helpers sign up and log in with.
const Password = "correct horse battery"

// SignUp registers email with Password on the device "test device".
func (c *Client) SignUp(t testing.TB, email string) Payload {
	t.Helper()
	return c.payload(t, "signUp", "", SignUpMutation, map[string]any{"email": email, "password": Password, "device": "test device"})
}

// Login opens another session of email with password.
func (c *Client) Login(t testing.TB, email, password string) Payload {
	t.Helper()
	return c.payload(t, "login", "", LoginMutation, map[string]any{"email": email, "password": password})
}

// Refresh exchanges refreshToken for a new pair.
func (c *Client) Refresh(t testing.TB, refreshToken string) Payload {
	t.Helper()
	return c.payload(t, "refresh", refreshToken, RefreshMutation, nil)
}

func (c *Client) payload(t testing.TB, field, token, query string, vars map[string]any) Payload {
	t.Helper()
	p, err := PayloadOf(c.Post(t, token, query, vars), field)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// PayloadOf decodes data.field of a successful answer.
func PayloadOf(r Response, field string) (Payload, error) {
	var p Payload
	if len(r.Errors) > 0 {
		return p, fmt.Errorf("%s: %s (%s)", field, r.Code(), r.Errors[0].Message)
	}
	raw, ok := r.Data[field]
	if !ok || string(raw) == "null" {
		return p, fmt.Errorf("%s: no data", field)
	}
	return p, json.Unmarshal(raw, &p)
}

// LoginVars are the variables of SignUpMutation and LoginMutation.
func LoginVars(email, password string) map[string]any {
	return map[string]any{"email": email, "password": password}
}
