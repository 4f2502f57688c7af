package resolvers

import (
	"context"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/graph"
	"github.com/example/sessionauth/internal/api/cookies"
)

// The domain takes tokens as arguments and returns the ones it issues; how
// they travel (Authorization header, body, cookie) is decided here and in
// package cookies.

// credentials is what signUp and login pass to the domain: the input and
// the device proof the request presented.
func credentials(ctx context.Context, email, password string, deviceName *string) auth.Credentials {
	return auth.Credentials{Email: email, Password: password, DeviceName: deviceName, DeviceProof: cookies.DeviceProof(ctx)}
}

// sessionToken returns the token that refresh and logout act on: the bearer
// token when an Authorization header was sent, else the refresh-token cookie
// of a browser client. "" (none, or not a token) is refused by the domain.
// Errors: UNAUTHENTICATED when the cookie fails the CSRF checks.
func sessionToken(ctx context.Context) (string, error) {
	if token, sent := auth.BearerToken(ctx); sent {
		return token, nil
	}
	return cookies.RefreshToken(ctx)
}

// deliver converts issued into the payload, handing the tokens that travel
// as cookies to the transport: the payload then carries null for them.
func deliver(ctx context.Context, issued *auth.Issued) *graph.AuthPayload {
	p := toPayload(issued)
	if cookies.DeliverRefresh(ctx, issued.RefreshToken, issued.Session.RefreshExpiresAt, issued.Now) {
		p.RefreshToken = nil
	}
	if cookies.DeliverDevice(ctx, issued.DeviceToken, issued.DeviceExpiresAt, issued.Now) {
		p.DeviceToken = nil
	}
	return p
}

// sessionEnded lets a browser client's refresh-token cookie go once its
// session is over: err is what logout or deleteMyAccount answered.
func sessionEnded(ctx context.Context, err error) {
	if err == nil || auth.ErrorCode(err) == auth.CodeRefreshTokenReused {
		cookies.ClearRefresh(ctx)
	}
}
