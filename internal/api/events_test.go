package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/internal/database"
	"github.com/example/sessionauth/internal/testkit"
	"github.com/example/sessionauth/models"
	"github.com/example/sessionauth/resolvers"
)

const securityEventsQuery = `query($first: Int, $after: String) {
	mySecurityEvents(first: $first, after: $after) {
		edges { cursor node { id kind at sessionId deviceName ipAddress userAgent bySessionId } }
		pageInfo { hasNextPage endCursor }
	}
}`

type eventConnection struct {
	Edges []struct {
		Cursor string `json:"cursor"`
		Node   event  `json:"node"`
	} `json:"edges"`
	PageInfo struct {
		HasNextPage bool    `json:"hasNextPage"`
		EndCursor   *string `json:"endCursor"`
	} `json:"pageInfo"`
}

// insertEvents stores n events of userID directly (the mutations record
// their own once wired), the i-th (n-i) seconds ago, and returns their ids,
// newest first.
func (s *testServer) insertEvents(t *testing.T, userID string, n int, kind auth.EventKind) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		at, arg := database.DialectOf(s.db).NowMinus(time.Duration(n-i) * time.Second)
		e := &models.SecurityEvent{ID: uuid.NewString(), UserID: userID, Kind: string(kind), SessionID: ptrTo(uuid.NewString()), IPAddress: ptrTo("192.0.2.7")}
		if _, err := s.db.NewInsert().Model(e).Value("at", at, arg).Exec(testkit.Context(t)); err != nil {
			t.Fatal(err)
		}
		ids[n-1-i] = e.ID
	}
	return ids
}

func ptrTo[T any](v T) *T { return &v }

func TestMySecurityEvents(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	a := s.SignUp(t, "activity@example.com")
	b := s.SignUp(t, "activity-other@example.com")
	s.forgetEvents(t, a.User.ID) // their SIGNED_UP: this test counts its own
	s.forgetEvents(t, b.User.ID)
	want := s.insertEvents(t, a.User.ID, 25, auth.EventSignedIn)
	s.insertEvents(t, b.User.ID, 3, auth.EventSignInFailed)

	page := func(t *testing.T, token string, vars map[string]any) eventConnection {
		t.Helper()
		r := s.Post(t, token, securityEventsQuery, vars)
		testkit.WantOK(t, r)
		var c eventConnection
		r.Field(t, "mySecurityEvents", &c)
		return c
	}
	t.Run("PagesNewestFirst", func(t *testing.T) {
		var got []string
		vars := map[string]any{"first": 10}
		for {
			c := page(t, a.AccessToken, vars)
			for _, e := range c.Edges {
				got = append(got, e.Node.ID)
				if e.Node.Kind != "SIGNED_IN" || e.Node.IPAddress == nil || *e.Node.IPAddress != "192.0.2.7" || e.Node.SessionID == nil || e.Node.At.Location() != time.UTC {
					t.Fatalf("node %+v", e.Node)
				}
			}
			if !c.PageInfo.HasNextPage {
				break
			}
			vars["after"] = *c.PageInfo.EndCursor
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("got %v\nwant %v", got, want)
		}
	})
	t.Run("DefaultFirstIsTwenty", func(t *testing.T) {
		if n := len(page(t, a.AccessToken, nil).Edges); n != 20 {
			t.Fatalf("%d events without first", n)
		}
		if n := len(page(t, a.AccessToken, map[string]any{"first": nil}).Edges); n != 20 {
			t.Fatalf("%d events with first: null", n)
		}
	})
	t.Run("OnlyTheCallersEvents", func(t *testing.T) {
		c := page(t, b.AccessToken, map[string]any{"first": 100})
		if len(c.Edges) != 3 || c.PageInfo.HasNextPage {
			t.Fatalf("b sees %d events", len(c.Edges))
		}
		// a's cursor in b's hands only pages through b's events.
		c = page(t, b.AccessToken, map[string]any{"first": 100, "after": page(t, a.AccessToken, map[string]any{"first": 1}).Edges[0].Cursor})
		for _, e := range c.Edges {
			if e.Node.Kind != "SIGN_IN_FAILED" {
				t.Fatalf("b saw a's event %+v", e.Node)
			}
		}
	})
	t.Run("BadInput", func(t *testing.T) {
		for _, vars := range []map[string]any{{"first": 0}, {"first": 101}, {"first": -5}, {"after": "nope"}, {"after": ""}} {
			r := s.Post(t, a.AccessToken, securityEventsQuery, vars)
			if vars["after"] == "" {
				testkit.WantOK(t, r) // an empty cursor is no cursor
				continue
			}
			testkit.WantCode(t, r, "BAD_USER_INPUT")
		}
	})
	t.Run("NeedsAccessToken", func(t *testing.T) {
		testkit.WantCode(t, s.Post(t, "", securityEventsQuery, nil), "UNAUTHENTICATED")
		testkit.WantCode(t, s.Post(t, a.Refresh(), securityEventsQuery, nil), "UNAUTHENTICATED")
	})
}

func TestSessionAuthenticatedAt(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.SignUp(t, "proof@example.com")
	r := s.Post(t, p.AccessToken, `{ mySessions { createdAt authenticatedAt } }`, nil)
	testkit.WantOK(t, r)
	var got []struct{ CreatedAt, AuthenticatedAt time.Time }
	r.Field(t, "mySessions", &got)
	if len(got) != 1 || !got[0].AuthenticatedAt.Equal(got[0].CreatedAt) {
		t.Fatalf("a new session's authenticatedAt %+v, want its createdAt", got)
	}
}

// TestAuthenticatedMaxAge drives the directive's implementation the way
// gqlgen calls it for a product team's field marked
// @authenticated(maxAge: "5m"), behind the real middleware.
func TestAuthenticatedMaxAge(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	s.SignUp(t, "recent@example.com")
	p := s.Login(t, "recent@example.com", testkit.Password)

	call := func(token string, maxAge *string) string { return callDirective(s, token, maxAge) }
	five, ten := ptrTo("5m"), ptrTo("10m")
	// The proof is six minutes old before the token is first used (so no
	// instance has it cached yet).
	s.backdate(t, "authenticated_at", p.Session.ID, 6*time.Minute)
	if got := call(p.AccessToken, five); got != "error:REAUTHENTICATION_REQUIRED" {
		t.Fatalf("maxAge 5m, proof 6m old: %q", got)
	}
	if got := call(p.AccessToken, ten); got != "recent@example.com" {
		t.Fatalf("maxAge 10m, proof 6m old: %q", got)
	}
	if got := call(p.AccessToken, nil); got != "recent@example.com" {
		t.Fatalf("without maxAge: %q", got)
	}
	// A new proof (what reauthenticate does) lifts it at once, even where
	// the session is cached.
	s.backdate(t, "authenticated_at", p.Session.ID, 0)
	if got := call(p.AccessToken, five); got != "recent@example.com" {
		t.Fatalf("after a new proof: %q", got)
	}
	if got := call("", five); got != "error:UNAUTHENTICATED" {
		t.Fatalf("anonymous: %q", got)
	}
	s.backdate(t, "access_expires_at", p.Session.ID, time.Second)
	if got := call(p.AccessToken, five); got != "error:TOKEN_EXPIRED" {
		t.Fatalf("expired: %q", got)
	}
}

// callDirective runs a field that answers the caller's email behind
// @authenticated(maxAge: maxAge) (nil: no maxAge) and the real middleware,
// with token as the bearer, and returns the email or "error:<code>".
func callDirective(s *testServer, token string, maxAge *string) string {
	handler := s.svc.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := resolvers.Authenticated(r.Context(), nil, func(ctx context.Context) (any, error) {
			return auth.IdentityFromContext(ctx).User.Email, nil
		}, maxAge)
		if err != nil {
			io.WriteString(w, "error:"+auth.ErrorCode(err))
			return
		}
		io.WriteString(w, v.(string))
	}))
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	return rec.Body.String()
}
