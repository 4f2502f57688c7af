package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/example/sessionauth/auth"
)

func TestPresentError(t *testing.T) {
	var logs bytes.Buffer
	present := presentError(slog.New(slog.NewTextHandler(&logs, nil)))
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
