package auth

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
)

// isTokenAlphabet reports whether every byte of s is in [A-Za-z0-9_-]. It is
// written independently of wellFormed so that each checks the other.
func isTokenAlphabet(s string) bool {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(alphabet, s[i]) < 0 {
			return false
		}
	}
	return true
}

func TestNewToken(t *testing.T) {
	t.Run("256URLSafeCharacters", func(t *testing.T) {
		for range 100 {
			tok := newToken()
			if len(tok) != TokenLength || TokenLength != 256 {
				t.Fatalf("len(newToken()) = %d, want 256", len(tok))
			}
			if !isTokenAlphabet(tok) {
				t.Fatalf("newToken() = %q has a character outside [A-Za-z0-9_-]", tok)
			}
		}
	})
	t.Run("AllDistinct", func(t *testing.T) {
		const n = 5000
		seen := make(map[string]struct{}, n)
		for range n {
			tok := newToken()
			if _, dup := seen[tok]; dup {
				t.Fatalf("newToken() repeated a token after %d calls", len(seen))
			}
			seen[tok] = struct{}{}
		}
	})
}

func TestHashToken(t *testing.T) {
	tok := newToken()
	h := hashToken(tok)
	t.Run("Is32Bytes", func(t *testing.T) {
		if len(h) != 32 {
			t.Fatalf("len(hashToken) = %d, want 32", len(h))
		}
	})
	t.Run("Deterministic", func(t *testing.T) {
		if again := hashToken(tok); !bytes.Equal(h, again) {
			t.Fatalf("hashToken differs between calls: %x, %x", h, again)
		}
		want := sha256.Sum256([]byte(tok))
		if !bytes.Equal(h, want[:]) {
			t.Fatalf("hashToken = %x, want SHA-256 %x", h, want)
		}
	})
	t.Run("DiffersPerToken", func(t *testing.T) {
		if bytes.Equal(h, hashToken(newToken())) {
			t.Fatal("two different tokens have the same hash")
		}
	})
}

func TestWellFormed(t *testing.T) {
	tok := newToken()
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"FreshToken", tok, true},
		{"AllLetters", strings.Repeat("aZ", TokenLength/2), true},
		{"AllDigitsDashUnderscore", strings.Repeat("0-9_", TokenLength/4), true},
		{"Empty", "", false},
		{"OneShort", tok[:TokenLength-1], false},
		{"OneLong", tok + "A", false},
		{"Doubled", tok + tok, false},
		{"Plus", "+" + tok[1:], false},
		{"Slash", tok[:100] + "/" + tok[101:], false},
		{"Padding", tok[:TokenLength-1] + "=", false},
		{"Dot", tok[:10] + "." + tok[11:], false},
		{"Space", tok[:10] + " " + tok[11:], false},
		{"NUL", tok[:10] + "\x00" + tok[11:], false},
		{"MultiByteRune", tok[:10] + "é" + tok[12:], false}, // 256 bytes, 255 runes
		{"HighByte", tok[:10] + "\xff" + tok[11:], false},
	}
	// Every byte value, in the middle and at both ends, against the
	// alphabet spelled out independently of wellFormed's table.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for c := 0; c < 256; c++ {
		want := strings.IndexByte(alphabet, byte(c)) >= 0
		for _, at := range []int{0, 128, TokenLength - 1} {
			in := tok[:at] + string([]byte{byte(c)}) + tok[at+1:]
			tests = append(tests, struct {
				name string
				in   string
				want bool
			}{fmt.Sprintf("Byte%#02xAt%d", c, at), in, want})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := wellFormed(tt.in); got != tt.want {
				t.Fatalf("wellFormed(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSealPair(t *testing.T) {
	parent := newToken()
	const sessionID = "0b7c6f5e-3a34-4c39-9d55-8a9d2f8e6a11"
	pair := tokenPair{Access: newToken(), Refresh: newToken()}
	sealed := sealPair(parent, sessionID, pair)

	t.Run("RoundTrip", func(t *testing.T) {
		got, err := openPair(parent, sessionID, sealed)
		if err != nil {
			t.Fatalf("openPair: %v", err)
		}
		if got != pair {
			t.Fatal("openPair returned a different pair from the one sealed")
		}
	})
	t.Run("HoldsNoTokenInClear", func(t *testing.T) {
		for _, s := range []string{pair.Access, pair.Refresh, parent} {
			if bytes.Contains(sealed, []byte(s[:32])) {
				t.Fatal("the sealed pair contains a token in plain text")
			}
		}
	})
	t.Run("NonceIsRandom", func(t *testing.T) {
		if bytes.Equal(sealed, sealPair(parent, sessionID, pair)) {
			t.Fatal("sealing the same pair twice gave the same bytes")
		}
	})
	t.Run("DifferentParentFails", func(t *testing.T) {
		if _, err := openPair(newToken(), sessionID, sealed); err == nil {
			t.Fatal("openPair succeeded with another parent token")
		}
	})
	t.Run("DifferentSessionFails", func(t *testing.T) {
		if _, err := openPair(parent, "1b7c6f5e-3a34-4c39-9d55-8a9d2f8e6a11", sealed); err == nil {
			t.Fatal("openPair succeeded with another session id")
		}
	})
	t.Run("TruncatedFails", func(t *testing.T) {
		for _, n := range []int{0, 1, 11, 12, 13, len(sealed) / 2, len(sealed) - 16, len(sealed) - 1} {
			if _, err := openPair(parent, sessionID, sealed[:n]); err == nil {
				t.Fatalf("openPair succeeded on the first %d of %d bytes", n, len(sealed))
			}
		}
	})
	t.Run("TamperedFails", func(t *testing.T) {
		for _, i := range []int{0, 12, len(sealed) / 2, len(sealed) - 1} {
			bad := bytes.Clone(sealed)
			bad[i] ^= 1
			if _, err := openPair(parent, sessionID, bad); err == nil {
				t.Fatalf("openPair succeeded with byte %d flipped", i)
			}
		}
	})
	t.Run("KeyIsNotTheStoredHash", func(t *testing.T) {
		if bytes.Equal(sealingKey(parent), hashToken(parent)) {
			t.Fatal("the sealing key equals the refresh_hash stored in the database")
		}
	})
}
