package auth

import (
	"context"
	"testing"
)

func BenchmarkNewToken(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		newToken()
	}
}

func BenchmarkHashToken(b *testing.B) {
	tok := newToken()
	b.ReportAllocs()
	for b.Loop() {
		hashToken(tok)
	}
}

// BenchmarkWellFormed and BenchmarkParseBearer cycle through many tokens, as
// a server does: with one token, the branch predictor learns its characters
// and hides what random ones cost.
func BenchmarkWellFormed(b *testing.B) {
	toks := benchTokens("")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if !wellFormed(toks[i%len(toks)]) {
			b.Fatal("a fresh token is not well formed")
		}
		i++
	}
}

func BenchmarkParseBearer(b *testing.B) {
	headers := benchTokens("Bearer ")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if ParseBearer(headers[i%len(headers)]) == "" {
			b.Fatal("ParseBearer rejected a good header")
		}
		i++
	}
}

func benchTokens(prefix string) []string {
	toks := make([]string, 4096)
	for i := range toks {
		toks[i] = prefix + newToken()
	}
	return toks
}

func BenchmarkArgon2Hash(b *testing.B) {
	ctx := context.Background()
	h := newHasher()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyKnown and BenchmarkVerifyUnknown should report the same
// time: a login for an unknown email verifies against the dummy hash, so its
// cost does not tell an attacker whether the email is registered.
func BenchmarkVerifyKnown(b *testing.B) {
	ctx := context.Background()
	h := newHasher()
	encoded, err := h.hash(ctx, "correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.verify(ctx, "wrong horse battery staple", encoded); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyUnknown(b *testing.B) {
	ctx := context.Background()
	h := newHasher()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.verify(ctx, "wrong horse battery staple", ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateAccess is the per-request cost of an access token:
// one indexed query (lastUsedAt is touched at most every 30 s).
func BenchmarkAuthenticateAccess(b *testing.B) {
	s := newTestService(b, testConfig)
	iss := signUp(b, s, "ann@example.com")
	authenticate(b, s, iss.AccessToken)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.authenticateAccess(ctx, iss.AccessToken); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRefresh rotates one session's pair along its chain: each
// iteration refreshes with the token the previous one was given.
func BenchmarkRefresh(b *testing.B) {
	s := newTestService(b, testConfig)
	token := signUp(b, s, "ann@example.com").RefreshToken
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		next, err := s.Refresh(ctx, token)
		if err != nil {
			b.Fatal(err)
		}
		token = next.RefreshToken
	}
}
