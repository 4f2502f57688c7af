package auth

import (
	"errors"
	"fmt"
)

// Error codes of the public contract (API.md, "Errors"). Clients switch on
// them; never rename one.
const (
	CodeUnauthenticated    = "UNAUTHENTICATED"
	CodeTokenExpired       = "TOKEN_EXPIRED"
	CodeRefreshTokenReused = "REFRESH_TOKEN_REUSED"
	CodeInvalidCredentials = "INVALID_CREDENTIALS"
	CodeRateLimited        = "RATE_LIMITED"
	// CodeReauthenticationRequired: the field needs a recent password proof
	// on this session (@authenticated(maxAge: …)); call reauthenticate.
	CodeReauthenticationRequired = "REAUTHENTICATION_REQUIRED"
	CodeBadUserInput             = "BAD_USER_INPUT"
	CodeEmailTaken               = "EMAIL_TAKEN"
	CodeNotFound                 = "NOT_FOUND"
	CodeForbidden                = "FORBIDDEN"
	CodeServiceUnavailable       = "SERVICE_UNAVAILABLE"
	CodeInternal                 = "INTERNAL"
)

// Error is a failure the client may see: a stable code and a message safe to
// show. Anything that is not an *Error is internal and shown only as INTERNAL.
type Error struct {
	Code    string
	Message string
	// RetryAfter, when positive, tells the client how many seconds to wait
	// (RATE_LIMITED).
	RetryAfter int
	// Err is the underlying cause, for the server log only.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, or CodeInternal when err is not an *Error.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// The errors shared by several operations. Their messages are deliberately
// the same whatever the cause, so a client learns nothing from the wording.
var (
	errUnauthenticated    = &Error{Code: CodeUnauthenticated, Message: "a valid token is required"}
	errAccessExpired      = &Error{Code: CodeTokenExpired, Message: "the access token has expired; refresh it"}
	errRefreshExpired     = &Error{Code: CodeTokenExpired, Message: "the refresh token has expired; log in again"}
	errRefreshReused      = &Error{Code: CodeRefreshTokenReused, Message: "this refresh token was already used; the session has been revoked"}
	errInvalidCredentials = &Error{Code: CodeInvalidCredentials, Message: "invalid email or password"}
	errEmailTaken         = &Error{Code: CodeEmailTaken, Message: "this email is already registered"}
	errSessionNotFound    = &Error{Code: CodeNotFound, Message: "no such session"}
	errSignUpDisabled     = &Error{Code: CodeForbidden, Message: "sign-up is disabled"}
	errReauthenticate     = &Error{Code: CodeReauthenticationRequired, Message: "this needs a recent password; call reauthenticate"}
)
