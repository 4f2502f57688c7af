package auth

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// How emails compare
//
// An account is found by its email_key, never by the email as typed, so two
// spellings a person would read as the same address must give one key, and
// two different addresses two keys. The rule, applied by emailKey wherever an
// email is compared or throttled (sign-up, login, the per-email login
// throttle, the revoke-sessions command):
//
//   - The typed address is trimmed of surrounding white space and put in
//     Unicode Normalization Form C. That is the stored and displayed email:
//     what the user typed, in the one canonical spelling (a decomposed "ö"
//     becomes the precomposed one, the Kelvin sign K becomes K).
//   - The local part (before the last "@") is compared under Unicode's
//     compatibility caseless match (The Unicode Standard, D146): full case
//     folding and compatibility decomposition, stored recomposed (NFC). So
//     "Jörg", "JÖRG" and a decomposed "jörg" compare equal; so do the
//     fullwidth "ｋａｔｅ" and "kate", "ß" and "ss"; the folding is Unicode's
//     default, not a locale's, so the Turkish dotless "ı" stays a letter of
//     its own and "İ" folds to "i" with a combining dot, not to "i".
//   - The domain is converted by IDNA (UTS #46, the lookup profile:
//     nontransitional, STD3 rules, BiDi and joiner checks, DNS lengths) to
//     its lower-case A-labels, so "BÜCHER.de", "bücher.de" and
//     "xn--bcher-kva.de" are one domain.
//   - What cannot be compared that way is refused (BAD_USER_INPUT): a local
//     part with invisible or unassigned characters (control and format
//     characters such as zero-width spaces and BiDi overrides, variation
//     selectors, other default-ignorable code points, non-ASCII spaces,
//     private-use and unassigned code points), which would let two accounts
//     look identical, and a domain that IDNA refuses.
//
// For plain ASCII addresses with an ordinary host name the key is the
// lower-cased address, as it always was; only addresses with non-ASCII
// characters get a different key than before (migrations/20261130120000).
//
// Look-alikes from different scripts (a Cyrillic "а" for a Latin "a") are
// different characters and stay different addresses: telling them apart
// needs UTS #39 confusable detection, which this rule does not attempt.

// maxEmailKeyLen bounds the comparison key. Compatibility decomposition can
// make a key longer than the address (one ligature becomes up to 18
// characters); this keeps every key far below the index-entry limits of both
// backends. The address itself is limited to maxEmailLen bytes.
const maxEmailKeyLen = 1024

// emailDomains is the IDNA profile of UTS #46's lookup processing, plus
// DNS length checks (a label of at most 63 bytes, a name of at most 253).
var emailDomains = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.Transitional(false),
	idna.VerifyDNSLength(true),
)

var errBadEmail = badInput("the email address is not valid")

// checkEmail trims and normalises raw, checks it, and returns the address to
// store and show (NFC, trimmed). Errors: BAD_USER_INPUT, saying why.
func checkEmail(raw string) (string, error) {
	email, _, err := canonicalEmail(strings.TrimSpace(raw))
	return email, err
}

// validEmail reports whether email, already trimmed, is an address that
// emailKey can compare.
func validEmail(email string) bool {
	_, _, err := canonicalEmail(email)
	return err == nil
}

// emailKey is the canonical form under which emails compare (see "How emails
// compare" above). For a string that is not a valid address (only the
// revoke-sessions command looks one up without validating it first) it
// answers the rule used before 20261130, trimmed and lower-cased, so an
// operator can still reach an old account whose address the current rule
// refuses; no account created since has such a key.
func emailKey(email string) string {
	_, key, err := canonicalEmail(strings.TrimSpace(email))
	if err != nil {
		return strings.ToLower(strings.TrimSpace(email))
	}
	return key
}

// canonicalEmail returns the NFC form of email (which must be trimmed) and
// its comparison key. Errors: BAD_USER_INPUT.
func canonicalEmail(email string) (display, key string, err error) {
	if !utf8.ValidString(email) {
		return "", "", errBadEmail
	}
	display = norm.NFC.String(email)
	if len(display) > maxEmailLen {
		return "", "", badInput("the email address must be at most 254 bytes long")
	}
	addr, err := mail.ParseAddress(display)
	if err != nil || addr.Address != display || addr.Name != "" {
		return "", "", errBadEmail
	}
	at := strings.LastIndexByte(display, '@')
	if at <= 0 {
		return "", "", errBadEmail
	}
	local, domain := display[:at], display[at+1:]
	if strings.ContainsFunc(local, invisible) {
		return "", "", badInput("the email address contains an invisible, unassigned or private-use character")
	}
	domain, err = emailDomains.ToASCII(domain)
	if err != nil || !strings.Contains(domain, ".") {
		return "", "", badInput("the domain of the email address is not a valid domain name")
	}
	key = foldLocalPart(local) + "@" + domain
	if len(key) > maxEmailKeyLen {
		return "", "", errBadEmail
	}
	return display, key, nil
}

// foldLocalPart is the compatibility caseless form of s (The Unicode
// Standard, D146: NFKD(toCasefold(NFKD(toCasefold(NFD(s)))))), recomposed to
// NFC: two strings have the same form exactly when they match caselessly
// under compatibility equivalence.
func foldLocalPart(s string) string {
	fold := cases.Fold() // a Caser is not safe for concurrent use: one per call
	s = norm.NFD.String(s)
	s = norm.NFKD.String(fold.String(s))
	s = norm.NFKD.String(fold.String(s))
	return norm.NFC.String(s)
}

// invisible reports whether r may not appear in an email's local part: it
// would be invisible or render like something else, or (unassigned) its
// case folding and decomposition could change with a later Unicode version.
// ASCII was already checked by net/mail.
func invisible(r rune) bool {
	if r < utf8.RuneSelf {
		return false
	}
	return !unicode.IsGraphic(r) || // controls, unassigned, surrogates
		unicode.In(r, unicode.Zs, unicode.Cf, unicode.Co,
			unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
}
