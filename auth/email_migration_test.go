package auth

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/uptrace/bun/migrate"

	"github.com/example/sessionauth/internal/pgtest"
	"github.com/example/sessionauth/migrations"
	"github.com/example/sessionauth/models"
)

// TestRekeyEmailsMigration writes users as the code before 20261130 did
// (email_key trimmed and lower-cased), runs migrations/20261130120000 again,
// and checks that every account is found under the current rule, that
// accounts which now share an address keep their data, and that down goes
// back. It also ties the migration's frozen copy of the rule to emailKey: if
// you change emailKey, add a new rekeying migration rather than editing it.
func TestRekeyEmailsMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.Open(pgtest.New(t))
	t.Cleanup(func() { db.Close() })
	s := NewService(db, testConfig, slog.New(slog.NewTextHandler(io.Discard, nil)))
	const password = "orchid lantern 7"
	hash, err := s.hasher.hash(ctx, password)
	if err != nil {
		t.Fatal(err)
	}
	legacyKey := func(email string) string { return strings.ToLower(strings.TrimSpace(email)) }
	n := 0
	insert := func(email string) string {
		t.Helper()
		n++
		u := &models.User{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", n), Email: email, EmailKey: legacyKey(email), PasswordHash: hash}
		if _, err := db.NewInsert().Model(u).Value("created_at", s.dialect.Now).Exec(ctx); err != nil {
			t.Fatalf("insert %+q: %v", email, err)
		}
		return u.ID
	}

	// One account per address: each must end with emailKey's key.
	var single []string
	for i, email := range []string{
		"ann@example.com",
		"Straße@example.de",
		"\u212Aelvin@example.com",
		"ｆｕｌｌ@example.com",
		"zoë@ＥＸＡＭＰＬＥ.org",
		"ΌΣΟΣ@example.gr",
		"K\u0130M@example.com",
		"k\u0131m@example.com",
		"jörg@bu\u0308cher.de",
		"\uFB01le@example.com",
		"Åsa@münchen.de",
	} {
		email = fmt.Sprintf("u%d.%s", i, email)
		insert(email)
		single = append(single, email)
	}
	// Refused by the current rule: keeps its key.
	invisible := "ka\u200Bte@example.com"
	insert(invisible)
	// Two spellings of one address, the older one precomposed: it takes the
	// new key; the newer keeps its old key.
	older := insert("j\u00F6rg@b\u00FCcher.de")
	insert("jo\u0308rg@bu\u0308cher.de")
	// The newer account already holds the canonical key: it keeps it.
	insert("MU\u0308LLER@example.de")
	mullerNew := insert("m\u00FCller@example.de")

	if _, err := db.NewDelete().Table("bun_migrations").Where("name = ?", "20261130120000").Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Apply(ctx, db); err != nil {
		t.Fatalf("migrate: %v", err)
	}

	keys := map[string]string{}
	var rows []models.User
	if err := db.NewSelect().Model(&rows).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	for _, u := range rows {
		keys[u.Email] = u.EmailKey
	}
	for _, email := range single {
		if got := keys[email]; got != emailKey(email) {
			t.Errorf("%+q: key %+q, want emailKey's %+q", email, got, emailKey(email))
		}
	}
	want := map[string]string{
		invisible:                    legacyKey(invisible),
		"j\u00F6rg@b\u00FCcher.de":   "j\u00F6rg@xn--bcher-kva.de",
		"jo\u0308rg@bu\u0308cher.de": legacyKey("jo\u0308rg@bu\u0308cher.de"),
		"MU\u0308LLER@example.de":    legacyKey("MU\u0308LLER@example.de"),
		"m\u00FCller@example.de":     "m\u00FCller@example.de",
	}
	for email, key := range want {
		if keys[email] != key {
			t.Errorf("%+q: key %+q, want %+q", email, keys[email], key)
		}
	}

	// Every spelling signs in to the account that holds the key.
	for spelling, id := range map[string]string{
		"jo\u0308rg@bu\u0308cher.de": older,
		"JÖRG@xn--bcher-kva.de":      older,
		"MU\u0308LLER@example.de":    mullerNew,
	} {
		iss, err := s.Login(ctx, Credentials{Email: spelling, Password: password})
		if err != nil || iss.User.ID != id {
			t.Fatalf("login as %+q: %v, want user %s", spelling, err, id)
		}
	}

	// Down: back to the old rule where that key is free.
	if _, err := migrate.NewMigrator(db, migrations.For(db)).Rollback(ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	var back models.User
	if err := db.NewSelect().Model(&back).Where("id = ?", older).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if back.EmailKey != legacyKey(back.Email) {
		t.Fatalf("after rollback: key %+q, want %+q", back.EmailKey, legacyKey(back.Email))
	}
	if err := migrations.Apply(context.WithoutCancel(ctx), db); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
}
