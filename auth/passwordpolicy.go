package auth

import (
	_ "embed"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// The password policy of a new password (signUp, changePassword's new one;
// never login's, which is only checked against the stored hash):
//
//   - 8 to 128 characters (Unicode code points, not bytes);
//   - not only white space, and not one character repeated ("aaaaaaaa");
//   - not among the most common passwords (ASVS 5.0 V6.2.4):
//     common_passwords.txt, embedded in the binary, holds every password of
//     at least 8 characters among the 30,000 most common of zxcvbn's ranked
//     list; the shorter ones are refused by the length rule, so all 30,000
//     are refused.
//
// These checks compare a folded form of the password: trimmed of surrounding
// white space, NFKC-normalised and case-folded, so "PASSWORD", " password "
// and the fullwidth "ｐａｓｓｗｏｒｄ" are refused like "password". The
// password itself is hashed exactly as typed, neither trimmed nor normalised
// (as it always has been, so every stored hash still verifies).

//go:embed common_passwords.txt
var commonPasswordsFile string

// commonPasswords is the embedded list as a set, built on first use.
var commonPasswords = sync.OnceValue(loadCommonPasswords)

func loadCommonPasswords() map[string]struct{} {
	set := make(map[string]struct{}, strings.Count(commonPasswordsFile, "\n"))
	for line := range strings.Lines(commonPasswordsFile) {
		if p := strings.TrimRight(line, "\r\n"); p != "" {
			set[p] = struct{}{} // p shares the embedded file's bytes
		}
	}
	return set
}

// checkPassword enforces the policy on a new password.
// Errors: BAD_USER_INPUT, with a message that says which rule it broke.
func checkPassword(password string) error {
	if n := utf8.RuneCountInString(password); n < minPasswordLen || n > maxPasswordLen {
		return badInput("the password must be 8 to 128 characters long")
	}
	folded := foldPassword(password)
	if folded == "" {
		return badInput("the password must not be only white space")
	}
	if oneRepeatedRune(folded) {
		return badInput("the password must not be one character repeated")
	}
	if _, common := commonPasswords()[folded]; common {
		return badInput("this password is one of the most commonly used passwords, which attackers try first; choose another")
	}
	return nil
}

// foldPassword is the form in which passwords are compared with the list:
// trimmed, NFKC, case-folded.
func foldPassword(password string) string {
	return cases.Fold().String(norm.NFKC.String(strings.TrimSpace(password)))
}

func oneRepeatedRune(s string) bool {
	first, size := utf8.DecodeRuneInString(s)
	for _, r := range s[size:] {
		if r != first {
			return false
		}
	}
	return true
}
