package auth

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// cycle returns n runes taken in turn from s.
func cycle(s string, n int) string {
	rs := []rune(s)
	out := make([]rune, n)
	for i := range out {
		out[i] = rs[i%len(rs)]
	}
	return string(out)
}

func TestCheckPassword(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"Empty", "", false},
		{"7ASCII", cycle("xq3Vb9Kt", 7), false},
		{"8ASCII", cycle("xq3Vb9Kt", 8), true},
		{"128ASCII", cycle("xq3Vb9Kt", 128), true},
		{"129ASCII", cycle("xq3Vb9Kt", 129), false},
		// Characters, not bytes: 7 two-byte runes are 14 bytes yet too short,
		// 128 three-byte runes are 384 bytes yet allowed.
		{"7TwoByteRunes", cycle("éà", 7), false},
		{"8TwoByteRunes", cycle("éà", 8), true},
		{"8FourByteRunes", cycle("🔑🔒", 8), true},
		{"128ThreeByteRunes", cycle("日本", 128), true},
		{"129ThreeByteRunes", cycle("日本", 129), false},
		{"128FourByteRunes", cycle("🔑🔒", 128), true},
		{"129FourByteRunes", cycle("🔑🔒", 129), false},

		{"Passphrase", "correct horse battery", true},
		{"UncommonWord", "abcdefgh", true},
		{"SpacesInside", "pass word", true},

		// Only white space, or one character repeated.
		{"EightSpaces", "        ", false},
		{"Tabs", "\t\t\t\t\t\t\t\t\t", false},
		{"MixedWhiteSpace", " \t\n\u00A0\u3000 \t ", false},
		{"EightA", "aaaaaaaa", false},
		{"RepeatedAnyCase", "AaAaAaAa", false},
		{"RepeatedWithSpaces", "  zzzzzzzz  ", false},
		{"RepeatedNonASCII", strings.Repeat("é", 10), false},
		{"RepeatedEmoji", strings.Repeat("🔑", 8), false},

		// Among the most common, in any case, padded, or fullwidth.
		{"password", "password", false},
		{"PASSWORD", "PASSWORD", false},
		{"Password", "Password", false},
		{"PaddedPassword", "  password  ", false},
		{"FullwidthPassword", "ｐａｓｓｗｏｒｄ", false},
		{"12345678", "12345678", false},
		{"qwertyuiop", "qwertyuiop", false},
		{"iloveyou", "iloveyou", false},
		{"password1", "Password1", false},
		{"trustno1", "trustno1", false},
		{"1qaz2wsx", "1qaz2wsx", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPassword(tt.in)
			if tt.ok && err != nil {
				t.Fatalf("checkPassword(%q) = %v, want nil", tt.in, err)
			}
			if !tt.ok {
				wantCode(t, "checkPassword", err, CodeBadUserInput)
			}
		})
	}
}

// TestCommonPasswordsList checks the embedded list: long enough, every entry
// in the folded form lookups use, none the length rule refuses anyway.
func TestCommonPasswordsList(t *testing.T) {
	set := commonPasswords()
	if len(set) < 3000 {
		t.Fatalf("%d common passwords, want at least 3,000", len(set))
	}
	lines := strings.Split(strings.TrimSuffix(commonPasswordsFile, "\n"), "\n")
	if len(lines) != len(set) {
		t.Fatalf("%d lines but %d distinct passwords", len(lines), len(set))
	}
	for _, p := range lines {
		if n := utf8.RuneCountInString(p); n < minPasswordLen || n > maxPasswordLen {
			t.Errorf("%q: %d characters, outside what the length rule lets through", p, n)
		}
		if foldPassword(p) != p {
			t.Errorf("%q is not in folded form (%q): lookups would miss it", p, foldPassword(p))
		}
		if err := checkPassword(p); ErrorCode(err) != CodeBadUserInput {
			t.Errorf("checkPassword(%q) = %v, want BAD_USER_INPUT", p, err)
		}
	}
}

func BenchmarkCheckPassword(b *testing.B) {
	commonPasswords()
	for b.Loop() {
		_ = checkPassword("correct horse battery staple")
	}
}

// BenchmarkLoadCommonPasswords: B/op is the memory the list's set holds.
func BenchmarkLoadCommonPasswords(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = loadCommonPasswords()
	}
}
