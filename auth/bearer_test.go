package auth

import (
	"strings"
	"testing"
)

func TestParseBearer(t *testing.T) {
	tok := newToken()
	tests := []struct {
		name, header, want string
	}{
		{"Bearer", "Bearer " + tok, tok},
		{"LowerCaseScheme", "bearer " + tok, tok},
		{"UpperCaseScheme", "BEARER " + tok, tok},
		{"MixedCaseScheme", "bEaReR " + tok, tok},
		{"SeveralSpacesAfterScheme", "Bearer   " + tok, tok},
		{"TrailingSpaces", "Bearer " + tok + "  ", tok},
		{"Empty", "", ""},
		{"MissingScheme", tok, ""},
		{"SchemeOnly", "Bearer", ""},
		{"SchemeAndSpaceOnly", "Bearer ", ""},
		{"NoSpaceAfterScheme", "Bearer" + tok, ""},
		{"BasicScheme", "Basic " + tok, ""},
		{"OtherSchemeEndingInBearer", "XBearer " + tok, ""},
		{"TokenScheme", "Token " + tok, ""},
		{"OneShort", "Bearer " + tok[:TokenLength-1], ""},
		{"OneLong", "Bearer " + tok + "A", ""},
		{"TwoTokens", "Bearer " + tok + " " + tok, ""},
		{"Padded", "Bearer " + tok[:TokenLength-2] + "==", ""},
		{"StandardBase64Plus", "Bearer +" + tok[1:], ""},
		{"StandardBase64Slash", "Bearer " + tok[:TokenLength-1] + "/", ""},
		{"NonASCII", "Bearer " + tok[:TokenLength-2] + "é", ""},
		{"JWTLike", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseBearer(tt.header); got != tt.want {
				t.Fatalf("ParseBearer(%q) = %q, want %q", tt.header, got, tt.want)
			}
		})
	}
}

// FuzzParseBearer checks that ParseBearer never invents a token: whatever it
// is given, it answers "" or a well-formed token found in the input. Without
// -fuzz it runs the seed corpus as an ordinary test.
func FuzzParseBearer(f *testing.F) {
	tok := strings.Repeat("aB3-_", TokenLength/5) + "xyz0AB"[:TokenLength%5]
	for _, seed := range []string{
		"",
		"Bearer",
		"Bearer ",
		"Bearer " + tok,
		"bearer " + tok,
		"BEARER   " + tok + "  ",
		"Basic " + tok,
		tok,
		"Bearer " + tok[:TokenLength-1],
		"Bearer " + tok + "=",
		"Bearer " + tok + " " + tok,
		"Bearer\t" + tok,
		"Bearer " + strings.Repeat("+", TokenLength),
		"Bearer " + strings.Repeat("é", TokenLength/2),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		got := ParseBearer(header)
		if got == "" {
			return
		}
		if len(got) != TokenLength || !isTokenAlphabet(got) {
			t.Fatalf("ParseBearer(%q) = %q, not a 256-character token of [A-Za-z0-9_-]", header, got)
		}
		if !strings.Contains(header, got) {
			t.Fatalf("ParseBearer(%q) = %q, which is not in the input", header, got)
		}
		if again := ParseBearer("Bearer " + got); again != got {
			t.Fatalf("ParseBearer(\"Bearer \" + %q) = %q, want the token back", got, again)
		}
	})
}
