package auth_test

import (
	"context"
	"fmt"
	"time"

	"github.com/example/sessionauth/auth"
)

// Mailer is how a product team sends e-mail; key lets the mail service drop
// a second copy of one message (handlers run at least once).
type Mailer interface {
	Send(ctx context.Context, key, to, subject, body string) error
}

// newDeviceMail returns a handler that e-mails the account's owner when a
// device signs in (docs/EXTENDING.md, "Acting on security events").
func newDeviceMail(svc *auth.Service, mailer Mailer) auth.EventHandler {
	return func(ctx context.Context, e auth.DeliveredEvent) error {
		if e.Kind != auth.EventSignedIn {
			return nil // taken: nothing to do for this kind
		}
		to, err := svc.UserEmail(ctx, e.UserID)
		if auth.ErrorCode(err) == auth.CodeNotFound {
			return nil // the account was deleted meanwhile
		}
		if err != nil {
			return err // delivered again later, with backoff
		}
		device, from := "an unnamed device", "an unknown address"
		if e.DeviceName != nil {
			device = *e.DeviceName
		}
		if e.IPAddress != nil {
			from = *e.IPAddress
		}
		body := fmt.Sprintf("%s signed in to your account from %s at %s.\n"+
			"Not you? Change your password: that ends every other session.",
			device, from, e.At.Format(time.RFC1123))
		return mailer.Send(ctx, "new-device/"+e.ID, to, "New sign-in to your account", body)
	}
}

// Register handlers where the server is wired (run, in server.go), after
// NewService and before serving and DeliverEvents.
func ExampleService_OnEvent() {
	var (
		svc    *auth.Service // auth.NewService(db, cfg.Auth, logger)
		mailer Mailer        // the product's mail client
	)
	svc.OnEvent("new-device-mail", newDeviceMail(svc, mailer))
}
