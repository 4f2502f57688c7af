package resolvers

import (
	"github.com/example/sessionauth/auth"
	"github.com/example/sessionauth/graph"
	"github.com/example/sessionauth/models"
)

// Generated GraphQL types are not bun models: converting here keeps token
// hashes and bun tags out of the API.

func toUser(u *models.User) *graph.User {
	return &graph.User{ID: u.ID, Email: u.Email, CreatedAt: u.CreatedAt.UTC()}
}

func toSession(s *models.Session, current bool) *graph.Session {
	return &graph.Session{
		ID:                    s.ID,
		DeviceName:            s.DeviceName,
		UserAgent:             s.UserAgent,
		IPAddress:             s.IPAddress,
		CreatedAt:             s.CreatedAt.UTC(),
		LastUsedAt:            s.LastUsedAt.UTC(),
		AccessTokenExpiresAt:  s.AccessExpiresAt.UTC(),
		RefreshTokenExpiresAt: s.RefreshExpiresAt.UTC(),
		Current:               current,
		AuthenticatedAt:       s.AuthenticatedAt.UTC(),
	}
}

// toCallerSession converts one of who's sessions, marking it current when
// it is the session that authenticated the request.
func toCallerSession(s *models.Session, who *auth.Identity) *graph.Session {
	return toSession(s, s.ID == who.Session.ID)
}

// toPayload converts an issued pair. The session it describes is the one the
// new tokens belong to, so it is "current" from the client's point of view.
func toPayload(i *auth.Issued) *graph.AuthPayload {
	var device *string
	if i.DeviceToken != "" {
		device = &i.DeviceToken
	}
	return &graph.AuthPayload{
		AccessToken:           i.AccessToken,
		RefreshToken:          &i.RefreshToken,
		AccessTokenExpiresAt:  i.Session.AccessExpiresAt.UTC(),
		RefreshTokenExpiresAt: i.Session.RefreshExpiresAt.UTC(),
		AccessTokenExpiresIn:  secondsUntil(i, i.Session.AccessExpiresAt),
		RefreshTokenExpiresIn: secondsUntil(i, i.Session.RefreshExpiresAt),
		User:                  toUser(i.User),
		Session:               toSession(i.Session, true),
		DeviceToken:           device,
	}
}

func secondsUntil(i *auth.Issued, t interface{ Unix() int64 }) int {
	n := t.Unix() - i.Now.Unix()
	if n < 0 {
		return 0
	}
	return int(n)
}

func toSecurityEvent(e *models.SecurityEvent) *graph.SecurityEvent {
	return &graph.SecurityEvent{
		ID:          e.ID,
		Kind:        graph.SecurityEventKind(e.Kind),
		At:          e.At.UTC(),
		SessionID:   e.SessionID,
		DeviceName:  e.DeviceName,
		IPAddress:   e.IPAddress,
		UserAgent:   e.UserAgent,
		BySessionID: e.BySessionID,
	}
}

func toEventConnection(p *auth.EventPage) *graph.SecurityEventConnection {
	edges := make([]*graph.SecurityEventEdge, len(p.Edges))
	for i, e := range p.Edges {
		edges[i] = &graph.SecurityEventEdge{Node: toSecurityEvent(e.Event), Cursor: e.Cursor}
	}
	return &graph.SecurityEventConnection{
		Edges:    edges,
		PageInfo: &graph.PageInfo{HasNextPage: p.HasNextPage, EndCursor: p.EndCursor},
	}
}

// deref returns *s, or "" for nil.
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
