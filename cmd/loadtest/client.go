package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// client posts GraphQL documents over one shared keep-alive pool: every
// worker reuses its connection, so no request pays for a TCP handshake.
type client struct {
	hc  *http.Client
	url string
}

func newClient(url string, clients int, timeout time.Duration) *client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2*clients + 8,
		MaxIdleConnsPerHost: 2*clients + 8,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &client{hc: &http.Client{Transport: tr, Timeout: timeout}, url: url}
}

// post sends body (a JSON GraphQL request) with the Authorization header
// value authz ("" for none) and reads the whole answer into buf, so the
// connection goes back to the pool.
func (c *client) post(ctx context.Context, body []byte, authz string, buf *bytes.Buffer) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sessionauth-loadtest")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, err
}

// call posts body and returns the answer when it is a success containing
// want, or an error whose text is the failure's code (see classify).
func (c *client) call(ctx context.Context, body []byte, authz string, want []byte, buf *bytes.Buffer) error {
	status, err := c.post(ctx, body, authz, buf)
	if err != nil {
		return codeError(transportCode(err))
	}
	if code := classify(status, buf.Bytes(), want); code != "" {
		return codeError(code)
	}
	return nil
}

func (c *client) ping(ctx context.Context) error {
	var buf bytes.Buffer
	return c.call(ctx, bodyTypename, "", wantTypename, &buf)
}

// codeError is a failed request, named by its code.
type codeError string

func (e codeError) Error() string { return string(e) }

// errorCode returns the code under which a failure is counted.
func errorCode(err error) string {
	var c codeError
	if errors.As(err, &c) {
		return string(c)
	}
	return "CLIENT: " + err.Error()
}

// transportCode names a request that got no HTTP answer.
func transportCode(err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return "TIMEOUT"
	}
	if errors.Is(err, context.Canceled) {
		return "CANCELED"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "TIMEOUT"
	}
	return "TRANSPORT"
}

var errorsKey = []byte(`"errors"`)

// classify returns "" when an answer is a success (HTTP 200, no GraphQL
// errors, and containing want when want is not nil), or else the code the
// failure is counted under: the first error's extensions.code, HTTP_<status>,
// or UNEXPECTED_RESPONSE. Successes are recognised without decoding JSON.
func classify(status int, body, want []byte) string {
	if status == http.StatusOK && !bytes.Contains(body, errorsKey) {
		if want == nil || bytes.Contains(body, want) {
			return ""
		}
		return "UNEXPECTED_RESPONSE"
	}
	var doc struct {
		Errors []struct {
			Extensions struct {
				Code string `json:"code"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &doc) == nil && len(doc.Errors) > 0 && doc.Errors[0].Extensions.Code != "" {
		return doc.Errors[0].Extensions.Code
	}
	if status != http.StatusOK {
		return fmt.Sprintf("HTTP_%d", status)
	}
	return "UNEXPECTED_RESPONSE"
}

// The GraphQL documents, marshalled once.
var (
	bodyTypename   = []byte(`{"query":"{ __typename }"}`)
	wantTypename   = []byte(`"__typename":"Query"`)
	bodyMe         = []byte(`{"query":"{ me { id email } }"}`)
	wantMe         = []byte(`"me":{"id":"`)
	bodyLogout     = []byte(`{"query":"mutation { logout }"}`)
	wantLogout     = []byte(`"logout":true`)
	bodyMySessions = []byte(`{"query":"{ mySessions { id } }"}`)
	wantMySessions = []byte(`"mySessions":[`)
	bodyRefresh    = []byte(`{"query":"mutation { refresh { accessToken refreshToken } }"}`)
	wantRefresh    = []byte(`"refresh":{"accessToken":"`)
	wantLogin      = []byte(`"login":{"accessToken":"`)
	wantSignUp     = []byte(`"signUp":{"accessToken":"`)
)

const (
	signUpQuery = `mutation($in: SignUpInput!) { signUp(input: $in) { accessToken refreshToken user { id } } }`
	loginQuery  = `mutation($in: LoginInput!) { login(input: $in) { accessToken refreshToken user { id } } }`
)

// credentialsBody returns the JSON request of signUp or login for a user.
func credentialsBody(query, email, password string) []byte {
	b, err := json.Marshal(map[string]any{
		"query":     query,
		"variables": map[string]any{"in": map[string]any{"email": email, "password": password, "deviceName": "loadtest"}},
	})
	if err != nil {
		panic(err) // strings always marshal
	}
	return b
}

// tokens is what signUp, login and refresh hand out.
type tokens struct {
	Access  string
	Refresh string
	UserID  string
}

// parsePayload reads the AuthPayload of field (signUp, login, refresh).
func parsePayload(body []byte, field string) (tokens, error) {
	var doc struct {
		Data map[string]*struct {
			AccessToken  string `json:"accessToken"`
			RefreshToken string `json:"refreshToken"`
			User         *struct {
				ID string `json:"id"`
			} `json:"user"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return tokens{}, codeError("UNEXPECTED_RESPONSE")
	}
	p := doc.Data[field]
	if p == nil || p.AccessToken == "" || p.RefreshToken == "" {
		return tokens{}, codeError("UNEXPECTED_RESPONSE")
	}
	t := tokens{Access: p.AccessToken, Refresh: p.RefreshToken}
	if p.User != nil {
		t.UserID = p.User.ID
	}
	return t, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
