package auth

import (
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

func TestValidEmail(t *testing.T) {
	const domain = "@example.com"
	tests := []struct {
		name, in string
		want     bool
	}{
		{"Plain", "ann@example.com", true},
		{"Shortest", "a@b.c", true},
		{"Subdomain", "first.last+tag@mail.example.co.uk", true},
		{"At254Characters", strings.Repeat("a", 254-len(domain)) + domain, true},
		{"At255Characters", strings.Repeat("a", 255-len(domain)) + domain, false},
		{"Empty", "", false},
		{"MissingAt", "ann.example.com", false},
		{"MissingLocalPart", "@example.com", false},
		{"MissingDomain", "ann@", false},
		{"TwoAts", "ann@b@example.com", false},
		{"DisplayNameForm", "A <a@b.c>", false},
		{"AngleBrackets", "<a@b.c>", false},
		{"NoDotInDomain", "ann@localhost", false},
		{"SpaceInside", "ann smith@example.com", false},
		{"SurroundingSpace", " ann@example.com ", false}, // callers trim first
		{"InvalidUTF8", "ann\xff@example.com", false},

		{"UnicodeLocalPart", "jörg@example.de", true},
		{"DecomposedLocalPart", "jo\u0308rg@example.de", true},
		{"KelvinSign", "\u212Aate@example.com", true},
		{"FullwidthLocalPart", "ｋａｔｅ@example.com", true},
		{"UnicodeDomain", "jörg@bücher.de", true},
		{"PunycodeDomain", "jorg@xn--bcher-kva.de", true},
		{"FullwidthDomain", "kate@ｅｘａｍｐｌｅ．ｃｏｍ", true},

		// Invisible or unstable characters in the local part.
		{"ZeroWidthSpace", "ka\u200Bte@example.com", false},
		{"ZeroWidthJoiner", "ka\u200Dte@example.com", false},
		{"SoftHyphen", "ka\u00ADte@example.com", false},
		{"RightToLeftOverride", "\u202Eetak@example.com", false},
		{"NoBreakSpace", "ka\u00A0te@example.com", false},
		{"IdeographicSpace", "ka\u3000te@example.com", false},
		{"HangulFiller", "kate\u3164@example.com", false},
		{"VariationSelector", "kate\uFE0F@example.com", false},
		{"PrivateUse", "kate\uE000@example.com", false},
		{"Unassigned", "kate\u0378@example.com", false},
		{"C1Control", "kate\u0085@example.com", false},

		// Domains IDNA refuses.
		{"UnderscoreInDomain", "ann@ex_ample.com", false},
		{"LeadingHyphenLabel", "ann@-example.com", false},
		{"BadPunycode", "ann@xn--a.com", false},
		{"LabelOver63", "ann@" + strings.Repeat("a", 64) + ".com", false},
		{"MixedDirectionLabel", "ann@\u05D0a.com", false},
		{"ZeroWidthSpaceInDomain", "ann@exa\u200Bmple.com", true}, // UTS 46 maps it away: example.com
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validEmail(tt.in); got != tt.want {
				t.Fatalf("validEmail(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

// TestEmailKeySameAddress lists spellings a person reads as one address:
// each must give the same key, which is the one shown.
func TestEmailKeySameAddress(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		forms []string
	}{
		{"ASCIICase", "kate@example.com", []string{"kate@example.com", "Kate@Example.COM", "KATE@EXAMPLE.COM", " kate@example.com\t"}},
		// U+212A KELVIN SIGN is canonically equivalent to K (a singleton
		// decomposition): NFC turns it into K.
		{"KelvinSign", "kate@example.com", []string{"\u212Aate@example.com", "Kate@example.com"}},
		{"PrecomposedAndDecomposed", "jörg@example.de", []string{"j\u00F6rg@example.de", "jo\u0308rg@example.de", "J\u00D6RG@example.de", "JO\u0308RG@example.de"}},
		{"FullwidthLocalPart", "kate@example.com", []string{"ｋａｔｅ@example.com", "ＫＡＴＥ@example.com"}},
		{"FullwidthDomain", "kate@example.com", []string{"kate@ｅｘａｍｐｌｅ．ｃｏｍ", "kate@ＥＸＡＭＰＬＥ.com"}},
		{"Ligature", "file@example.com", []string{"\uFB01le@example.com", "FILE@example.com"}},
		{"SharpS", "strasse@example.de", []string{"straße@example.de", "STRASSE@example.de", "Straße@example.de"}},
		{"GreekFinalSigma", "όσοσ@example.gr", []string{"όσος@example.gr", "ΌΣΟΣ@example.gr"}},
		{"IDNDomain", "jörg@xn--bcher-kva.de", []string{"jörg@bücher.de", "jörg@BÜCHER.de", "jörg@bu\u0308cher.de", "jörg@xn--bcher-kva.de", "jörg@XN--BCHER-KVA.DE"}},
		{"DomainCase", "ann@example.com", []string{"ann@EXAMPLE.com", "ann@Example.Com"}},
		{"DottedCapitalI", "ki\u0307m@example.com", []string{"K\u0130M@example.com", "ki\u0307m@example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, form := range tt.forms {
				if !validEmail(strings.TrimSpace(form)) {
					t.Fatalf("validEmail(%q) = false", form)
				}
				if got := emailKey(form); got != tt.key {
					t.Errorf("emailKey(%q) = %q, want %q", form, got, tt.key)
				}
			}
		})
	}
}

// TestEmailKeyDifferentAddress lists pairs that are different addresses.
func TestEmailKeyDifferentAddress(t *testing.T) {
	tests := []struct{ name, a, b string }{
		// Unicode's default case folding, not Turkish: the dotless ı is a
		// letter of its own, and İ folds to i with a combining dot.
		{"TurkishDotlessI", "k\u0131m@example.com", "kim@example.com"},
		{"TurkishDotlessIUpper", "k\u0131m@example.com", "KIM@example.com"},
		{"TurkishDottedCapitalI", "K\u0130M@example.com", "kim@example.com"},
		{"UmlautIsNotPlainO", "jörg@example.de", "jorg@example.de"},
		{"IDNIsNotASCII", "jorg@bücher.de", "jorg@bucher.de"},
		// Left alone: look-alikes from other scripts need UTS #39.
		{"CyrillicA", "k\u0430te@example.com", "kate@example.com"},
		{"OtherDomain", "kate@example.com", "kate@example.co"},
		{"PlusTag", "kate+x@example.com", "kate@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !validEmail(tt.a) || !validEmail(tt.b) {
				t.Fatalf("validEmail(%q) = %v, validEmail(%q) = %v", tt.a, validEmail(tt.a), tt.b, validEmail(tt.b))
			}
			if ka, kb := emailKey(tt.a), emailKey(tt.b); ka == kb {
				t.Fatalf("emailKey(%q) = emailKey(%q) = %q", tt.a, tt.b, ka)
			}
		})
	}
}

// TestEmailKeyASCIIUnchanged: for plain ASCII addresses the key is what the
// rule before 20261130 computed (trimmed, lower-cased), so existing rows of
// such addresses need no new key.
func TestEmailKeyASCIIUnchanged(t *testing.T) {
	for _, in := range []string{
		"ann@example.com", "Ann.Smith+Tag@Mail.Example.CO.UK", "x@y.z", "O'Brien@example.ie",
		"weird!#$%&*/=?^_`{|}~-@example.com", "ann@xn--bcher-kva.de", " Bob@EXAMPLE.org ",
	} {
		if got, want := emailKey(in), strings.ToLower(strings.TrimSpace(in)); got != want {
			t.Errorf("emailKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestEmailKeyOfInvalidAddress: the operator's revoke-sessions looks up what
// it is given; an address the rule refuses gets the old key, so an account
// created under the old rule stays reachable.
func TestEmailKeyOfInvalidAddress(t *testing.T) {
	if got := emailKey(" Ann@Ex_Ample.com "); got != "ann@ex_ample.com" {
		t.Fatalf("emailKey = %q", got)
	}
}

func TestCheckEmail(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"Trimmed", "  ann@example.com\n", "ann@example.com"},
		{"CaseKept", "Ann@Example.COM", "Ann@Example.COM"},
		{"DecomposedStoredPrecomposed", "jo\u0308rg@bu\u0308cher.de", "j\u00F6rg@b\u00FCcher.de"},
		{"KelvinStoredAsK", "\u212Aate@example.com", "Kate@example.com"},
		{"FullwidthKept", "ｋａｔｅ@example.com", "ｋａｔｅ@example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkEmail(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("checkEmail(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
	for _, in := range []string{"", "not-an-email", "ka\u200Bte@example.com", "ann@ex_ample.com", strings.Repeat("a", 250) + "@example.com"} {
		if _, err := checkEmail(in); err == nil {
			t.Errorf("checkEmail(%q) accepted", in)
		} else {
			wantCode(t, "checkEmail", err, CodeBadUserInput)
		}
	}
}

// FuzzEmailKey: the stored address has the key of what was typed, and
// canonically equivalent spellings (NFC, NFD, NFKC of them) of a valid
// address are valid and have one key.
func FuzzEmailKey(f *testing.F) {
	for _, s := range []string{"kate@example.com", "\u212Aate@example.com", "jo\u0308rg@bu\u0308cher.de",
		"ｋａｔｅ@ｅｘａｍｐｌｅ．ｃｏｍ", "K\u0130M@example.com", "ka\u200Bte@example.com", "a@xn--bcher-kva.de"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		display, err := checkEmail(raw)
		if err != nil {
			return
		}
		key := emailKey(raw)
		if emailKey(display) != key {
			t.Fatalf("emailKey(%+q) = %+q but the stored %+q has %+q", raw, key, display, emailKey(display))
		}
		for _, form := range []norm.Form{norm.NFC, norm.NFD} {
			other := form.String(raw)
			if _, err := checkEmail(other); err != nil {
				t.Fatalf("%+q is valid, its %v form %+q is not: %v", raw, form, other, err)
			}
			if got := emailKey(other); got != key {
				t.Fatalf("emailKey(%+q) = %+q, emailKey(%+q) = %+q", raw, key, other, got)
			}
		}
	})
}

func BenchmarkEmailKey(b *testing.B) {
	for _, bm := range []struct{ name, email string }{
		{"ASCII", "Ann.Smith+tag@Mail.Example.com"},
		{"Unicode", "Jo\u0308rg.Müller+tag@BÜCHER.example.de"},
		// Near the most expansion the key limit lets through: U+FDFA decomposes to
		// 18 characters under NFKC, and a long IDN domain.
		{"Worst", strings.Repeat("\uFDFA", 28) + "@" + strings.Repeat("ü", 30) + "." + strings.Repeat("ö", 30) + ".de"},
	} {
		if !validEmail(bm.email) {
			b.Fatalf("%s: %+q is not valid", bm.name, bm.email)
		}
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				emailKey(bm.email)
			}
		})
	}
	// The most work an address within 254 bytes can ask for: its key would
	// pass 2,600 bytes, so it is refused, but only once computed.
	refused := strings.Repeat("\uFDFA", 81) + "@a.de"
	if len(refused) > maxEmailLen || validEmail(refused) {
		b.Fatalf("%+q: %d bytes, valid %v", refused, len(refused), validEmail(refused))
	}
	b.Run("WorstRefused", func(b *testing.B) {
		for b.Loop() {
			emailKey(refused)
		}
	})
}
