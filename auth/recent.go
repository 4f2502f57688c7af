package auth

import (
	"context"
	"time"

	"github.com/example/sessionauth/models"
)

// RequireRecentPassword returns who is calling, like CurrentIdentity, and
// also requires that the session's password proof (its sign-in or last
// re-authentication) is at most maxAge old by the database's clock: it is
// what @authenticated(maxAge: …) enforces.
// Errors: those of CurrentIdentity, REAUTHENTICATION_REQUIRED.
func RequireRecentPassword(ctx context.Context, maxAge time.Duration) (*Identity, error) {
	who, err := CurrentIdentity(ctx)
	if err != nil {
		return nil, err
	}
	if who.Now.Sub(who.Session.AuthenticatedAt) <= maxAge {
		return who, nil
	}
	// The identity may predate a re-authentication: one from the session
	// cache (moving authenticated_at does not evict, on any instance), or
	// this request's own, read before a reauthenticate on another
	// connection. authenticated_at only moves forward: ask the database
	// before refusing, which costs a query on the refusing path only.
	if r := requestFromContext(ctx); r != nil {
		var proven, now time.Time
		err := r.svc.db.NewSelect().Model((*models.Session)(nil)).
			Column("authenticated_at").ColumnExpr(r.svc.dialect.Now+" AS db_now").
			Where("id = ?", who.Session.ID).Scan(ctx, &proven, &now)
		if err != nil && !isNoRows(err) {
			return nil, dbError(err)
		}
		if err == nil && now.Sub(proven) <= maxAge {
			return who, nil
		}
	}
	return nil, errReauthenticate
}
