package migrations

import (
	"context"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"golang.org/x/net/idna"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// 20261130120000_rekey_emails recomputes users.email_key under the email
// comparison rule of auth/email.go (NFC; the local part compared under
// Unicode's compatibility caseless match; the domain as lower-case IDNA
// A-labels), replacing the rule before it (trimmed and lower-cased).
//
// It is Go, not SQL, because neither backend can compute NFC or IDNA. It is
// one file for both backends (bun names a Go migration after its file), and
// it carries its own copy of the rule as it stands today: a shipped migration
// never changes, so it must not follow a later edit of auth's rule; if that
// rule changes again, add a new rekeying migration (auth's
// TestRekeyEmailsMigration fails until then).
//
// Only addresses with a non-ASCII character can have a new key: for ASCII the
// two rules agree, or the new one refuses the address (an underscore in the
// domain, say) and the row keeps its key. Two accounts whose addresses were
// different before and are one address now (a precomposed and a decomposed
// "jörg@…") cannot both hold the new key: a row whose key is already the
// canonical one keeps it, otherwise the oldest account (created_at, then id)
// takes it, and the others keep their old key: they are kept, reachable by
// no sign-in (every sign-in computes the new key), for an operator to merge
// or delete.
//
// Rows written by instances still running the old code during a rolling
// deployment get old-rule keys; stop old instances before or rerun the rule.
//
// The migration is idempotent: if a crash comes between its commit and bun's
// note that it ran, running it again changes nothing.
func init() {
	Postgres.MustRegister(rekeyEmailsUp, rekeyEmailsDown)
	SQLite.MustRegister(rekeyEmailsUp, rekeyEmailsDown)
}

func rekeyEmailsUp(ctx context.Context, db *bun.DB) error {
	return rekeyEmails(ctx, db, emailKey20261130)
}

// rekeyEmailsDown goes back to the old rule, under the same rule for
// collisions.
func rekeyEmailsDown(ctx context.Context, db *bun.DB) error {
	return rekeyEmails(ctx, db, func(email string) (string, bool) {
		return strings.ToLower(strings.TrimSpace(email)), true
	})
}

// rekeyEmails gives every user with a non-ASCII email the key rule computes,
// unless another row holds it already, in one transaction.
func rekeyEmails(ctx context.Context, db *bun.DB, rule func(string) (string, bool)) error {
	nonASCII := "octet_length(email) <> char_length(email)"
	if db.Dialect().Name() == dialect.SQLite {
		nonASCII = "length(CAST(email AS BLOB)) <> length(email)"
	}
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var rows []struct {
			ID       string `bun:"id"`
			Email    string `bun:"email"`
			EmailKey string `bun:"email_key"`
		}
		err := tx.NewSelect().Table("users").Column("id", "email", "email_key").
			Where(nonASCII).OrderExpr("created_at, id").Scan(ctx, &rows)
		if err != nil {
			return err
		}
		for _, r := range rows {
			key, ok := rule(r.Email)
			if !ok || key == r.EmailKey {
				continue
			}
			_, err := tx.ExecContext(ctx,
				"UPDATE users SET email_key = ? WHERE id = ? AND NOT EXISTS (SELECT 1 FROM users WHERE email_key = ?)",
				key, r.ID, key)
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// emailKey20261130 is auth's emailKey as of this migration: the key of a
// valid address, or false for one the rule refuses.
func emailKey20261130(email string) (string, bool) {
	email = norm.NFC.String(strings.TrimSpace(email))
	if !utf8.ValidString(email) || len(email) > 254 {
		return "", false
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != email || addr.Name != "" {
		return "", false
	}
	at := strings.LastIndexByte(email, '@')
	if at <= 0 {
		return "", false
	}
	local, domain := email[:at], email[at+1:]
	invisible := func(r rune) bool {
		return r >= utf8.RuneSelf && (!unicode.IsGraphic(r) ||
			unicode.In(r, unicode.Zs, unicode.Cf, unicode.Co, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point))
	}
	if strings.ContainsFunc(local, invisible) {
		return "", false
	}
	profile := idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.VerifyDNSLength(true))
	domain, err = profile.ToASCII(domain)
	if err != nil || !strings.Contains(domain, ".") {
		return "", false
	}
	fold := cases.Fold()
	local = norm.NFKD.String(fold.String(norm.NFD.String(local)))
	local = norm.NFC.String(norm.NFKD.String(fold.String(local)))
	key := local + "@" + domain
	if len(key) > 1024 {
		return "", false
	}
	return key, true
}
