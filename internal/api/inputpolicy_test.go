package api

import (
	"strings"
	"testing"

	"github.com/example/sessionauth/internal/testkit"
)

// Issue 9, finding 14: emails compare the way a person reads them (see
// auth/email.go). The spellings below are one address each.
const (
	kate         = "kate@example.com"
	kelvinKate   = "\u212Aate@example.com" // U+212A KELVIN SIGN, canonically equivalent to K
	fullKate     = "ｋａｔｅ@ｅｘａｍｐｌｅ．ｃｏｍ"
	jorgNFC      = "j\u00F6rg@b\u00FCcher.de"
	jorgNFD      = "jo\u0308rg@bu\u0308cher.de"
	jorgPunycode = "JÖRG@XN--BCHER-KVA.DE"
)

// TestEmailSpellingsAreOneAccount: a second sign-up with another spelling of
// a registered address answers EMAIL_TAKEN, and every spelling signs in to
// the one account, whose email stays as first typed (in NFC).
//
// The Kelvin sign is the same account as "kate", not a refusal: Unicode makes
// U+212A canonically equivalent to K (NFC replaces it), exactly as it makes a
// decomposed ö equivalent to the precomposed one, and every renderer shows
// both as K. Two accounts would let someone register an address that looks
// exactly like another's; refusing it would refuse a spelling of an address
// the user owns.
func TestEmailSpellingsAreOneAccount(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	tests := []struct {
		name     string
		first    string
		stored   string
		spelling []string
	}{
		{"KelvinSign", kate, kate, []string{kelvinKate, "KATE@example.com", fullKate}},
		{"KelvinSignFirst", "\u212Aelvin@example.com", "Kelvin@example.com", []string{"kelvin@example.com", "KELVIN@EXAMPLE.COM"}},
		{"PrecomposedFirst", jorgNFC, jorgNFC, []string{jorgNFD, jorgPunycode, "JO\u0308RG@BÜCHER.DE"}},
		{"DecomposedFirst", "mu\u0308ller@example.de", "m\u00FCller@example.de", []string{"m\u00FCller@example.de", "M\u00DCLLER@example.de"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := s.SignUp(t, tt.first)
			if first.User.Email != tt.stored {
				t.Fatalf("stored email %+q, want %+q", first.User.Email, tt.stored)
			}
			for _, spelling := range tt.spelling {
				r := s.Post(t, "", testkit.SignUpMutation, map[string]any{"email": spelling, "password": testkit.Password})
				testkit.WantCode(t, r, "EMAIL_TAKEN")
				p := s.Login(t, spelling, testkit.Password)
				if p.User.ID != first.User.ID || p.User.Email != tt.stored {
					t.Fatalf("login as %q: user %s <%s>, want %s <%s>", spelling, p.User.ID, p.User.Email, first.User.ID, tt.stored)
				}
			}
		})
	}
}

// TestEmailsThatDiffer: different letters stay different accounts.
func TestEmailsThatDiffer(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	for _, email := range []string{
		"kim@example.com",
		"k\u0131m@example.com", // Turkish dotless ı: a letter of its own
		"jorg@bücher.de",
		"jorg@bucher.de",
	} {
		s.SignUp(t, email)
	}
}

// TestEmailInvisibleCharactersRefused: an address with a character nobody
// sees would be a second account that looks like the first.
func TestEmailInvisibleCharactersRefused(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	s.SignUp(t, kate)
	for _, email := range []string{"ka\u200Bte@example.com", "kate\u00AD@example.com", "\u202Eetak@example.com", "kate@exa_mple.com"} {
		vars := map[string]any{"email": email, "password": testkit.Password}
		testkit.WantCode(t, s.Post(t, "", testkit.SignUpMutation, vars), "BAD_USER_INPUT")
		testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, vars), "BAD_USER_INPUT")
	}
}

// TestLoginThrottleCountsEverySpelling: failures under different spellings
// count against one address; switching spellings gains no attempts.
func TestLoginThrottleCountsEverySpelling(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, func(c *config) { c.Auth.Throttle.MaxFailures = 3 })
	s.SignUp(t, jorgNFC)
	testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars(jorgNFC, "guess one")), "INVALID_CREDENTIALS")
	testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars(jorgNFD, "guess two")), "INVALID_CREDENTIALS")
	testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars(jorgPunycode, "guess three")), "INVALID_CREDENTIALS")
	retryAfter(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("JO\u0308RG@b\u00FCcher.de", "guess four")))
}

// Issue 9, finding 15: the most common passwords, white space only, and one
// character repeated are refused for a new password (ASVS 5.0 V6.2.4).
var weakPasswords = []string{
	"password", "PASSWORD", " password ", "ｐａｓｓｗｏｒｄ", "12345678", "iloveyou", "qwertyuiop", "Password1",
	"        ", "\t\t\t\t\t\t\t\t", "aaaaaaaa", "AaAaAaAa", strings.Repeat("é", 12),
}

func TestSignUpRefusesWeakPasswords(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	for _, pw := range weakPasswords {
		r := s.Post(t, "", testkit.SignUpMutation, map[string]any{"email": "weak@example.com", "password": pw})
		testkit.WantCode(t, r, "BAD_USER_INPUT")
		if msg := r.Errors[0].Message; !strings.Contains(msg, "password") {
			t.Fatalf("signUp with %q: message %q does not say why", pw, msg)
		}
	}
	// Nothing was created: the address is still free, and a login with a
	// common password is only checked (it is wrong, not refused).
	testkit.WantCode(t, s.Post(t, "", testkit.LoginMutation, testkit.LoginVars("weak@example.com", "password")), "INVALID_CREDENTIALS")
	s.SignUp(t, "weak@example.com")
}

func TestChangePasswordRefusesWeakPasswords(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	p := s.SignUp(t, "changer@example.com")
	other := s.Login(t, "changer@example.com", testkit.Password)
	for _, pw := range weakPasswords {
		r := s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": pw})
		testkit.WantCode(t, r, "BAD_USER_INPUT")
	}
	// Nothing changed: the old password still works and no session ended.
	testkit.WantOK(t, s.Post(t, other.AccessToken, testkit.MeQuery, nil))
	s.Login(t, "changer@example.com", testkit.Password)
	testkit.WantOK(t, s.Post(t, p.AccessToken, testkit.ChangePasswordMutation, map[string]any{"cur": testkit.Password, "new": "an uncommon passphrase"}))
}
