package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/testkit"
)

func TestPresentError(t *testing.T) {
	var logs bytes.Buffer
	present := presentError(slog.New(slog.NewTextHandler(&logs, nil)), false)
	ctx := context.WithValue(context.Background(), requestInfoKey{}, &requestInfo{id: "req-42"})

	cases := []struct {
		name     string
		err      error
		code     string
		message  string
		logged   bool
		hideText string
	}{
		{"DomainErrorKeepsCode", auth.Errorf(auth.CodeNotFound, "no such session"), "NOT_FOUND", "no such session", false, ""},
		{"WrappedDomainError", fmt.Errorf("ctx: %w", auth.Errorf(auth.CodeEmailTaken, "taken")), "EMAIL_TAKEN", "taken", false, ""},
		{"InternalIsHiddenAndLogged", errors.New(`ERROR: relation "users" does not exist (SQLSTATE 42P01)`), "INTERNAL", "internal error", true, "relation"},
		{"UnavailableIsLogged", &auth.Error{Code: auth.CodeServiceUnavailable, Message: "retry", Err: errors.New("dial tcp 10.0.0.1:5432")}, "SERVICE_UNAVAILABLE", "retry", true, "10.0.0.1"},
		{"GqlgenCodeKept", &gqlerror.Error{Message: "Cannot query field", Extensions: map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"}}, "GRAPHQL_VALIDATION_FAILED", "Cannot query field", false, ""},
		{"GqlgenWithoutCodeIsBadInput", &gqlerror.Error{Message: "json request body could not be decoded"}, "BAD_USER_INPUT", "json request body could not be decoded", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logs.Reset()
			got := present(ctx, c.err)
			if got.Extensions["code"] != c.code || got.Message != c.message {
				t.Fatalf("got %q %q, want %q %q", got.Extensions["code"], got.Message, c.code, c.message)
			}
			if c.hideText != "" && strings.Contains(got.Message, c.hideText) {
				t.Fatalf("message leaks %q", c.hideText)
			}
			if logged := strings.Contains(logs.String(), "req-42"); logged != c.logged {
				t.Fatalf("logged = %v, want %v: %s", logged, c.logged, logs.String())
			}
		})
	}
}

func TestPresentErrorHidesSuggestions(t *testing.T) {
	msg := `Cannot query field "emial" on type "User". Did you mean "email"?`
	for _, hide := range []bool{false, true} {
		got := presentError(slog.New(slog.NewTextHandler(io.Discard, nil)), hide)(context.Background(),
			&gqlerror.Error{Message: msg, Extensions: map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"}})
		if strings.Contains(got.Message, "email") == hide || got.Extensions["code"] != "GRAPHQL_VALIDATION_FAILED" {
			t.Fatalf("hide=%v: %q %v", hide, got.Message, got.Extensions["code"])
		}
	}
}

func TestNoStore(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.SignUp(t, "nostore@example.com")
	cases := []struct {
		name, token, query string
		vars               map[string]any
		body               string // sent as it is when set
	}{
		{name: "SignUp", query: testkit.SignUpMutation, vars: map[string]any{"email": "nostore2@example.com", "password": testkit.Password}},
		{name: "Login", query: testkit.LoginMutation, vars: map[string]any{"email": "nostore@example.com", "password": testkit.Password}},
		{name: "Refresh", token: p.Refresh(), query: testkit.RefreshMutation},
		{name: "WrongPassword", query: testkit.LoginMutation, vars: map[string]any{"email": "nostore@example.com", "password": "wrong password"}},
		{name: "ValidationError", query: `{ nothing }`},
		{name: "BodyTooLarge", body: `{"query": "{ __typename }", "pad": "` + strings.Repeat("x", maxBodyBytes) + `"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := c.body
			if body == "" {
				raw, _ := json.Marshal(map[string]any{"query": c.query, "variables": c.vars})
				body = string(raw)
			}
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			wantNoStore(t, req)
		})
	}
	t.Run("GET", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/graphql?query="+url.QueryEscape(testkit.MeQuery), nil)
		req.Header.Set("Authorization", "Bearer "+p.AccessToken)
		wantNoStore(t, req)
	})
}

func wantNoStore(t *testing.T, req *http.Request) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Fatalf("status %d: Cache-Control %q, want no-store", resp.StatusCode, got)
	}
	if got := resp.Header.Get("Pragma"); got != "no-cache" {
		t.Fatalf("status %d: Pragma %q, want no-cache", resp.StatusCode, got)
	}
}
