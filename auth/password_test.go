package auth

import (
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
)

func TestHasher(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	h := newHasher()
	const password = "correct horse battery staple"
	encoded, err := h.hash(ctx, password)
	if err != nil {
		t.Fatalf("hash: %v", err)
	}

	t.Run("HashThenVerify", func(t *testing.T) {
		ok, err := h.verify(ctx, password, encoded)
		if err != nil || !ok {
			t.Fatalf("verify(right password) = %v, %v; want true, nil", ok, err)
		}
	})
	t.Run("WrongPassword", func(t *testing.T) {
		ok, err := h.verify(ctx, password+"!", encoded)
		if err != nil || ok {
			t.Fatalf("verify(wrong password) = %v, %v; want false, nil", ok, err)
		}
	})
	t.Run("UnknownUserIsFalseWithoutError", func(t *testing.T) {
		ok, err := h.verify(ctx, password, "")
		if err != nil || ok {
			t.Fatalf(`verify(password, "") = %v, %v; want false, nil`, ok, err)
		}
		ok, err = h.verify(ctx, "", "")
		if err != nil || ok {
			t.Fatalf(`verify("", "") = %v, %v; want false, nil`, ok, err)
		}
	})
	t.Run("PHCStringWithStatedParameters", func(t *testing.T) {
		// OWASP's m=19 MiB, t=2, p=1; 16-byte salt and 32-byte key,
		// unpadded standard base64.
		phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
		if !phc.MatchString(encoded) {
			t.Fatalf("hash = %q, not of the form $argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>", encoded)
		}
		if strings.Contains(encoded, password) {
			t.Fatal("the hash contains the password")
		}
	})
	t.Run("SaltIsRandom", func(t *testing.T) {
		again, err := h.hash(ctx, password)
		if err != nil {
			t.Fatalf("hash: %v", err)
		}
		if again == encoded {
			t.Fatal("hashing one password twice gave the same string")
		}
	})
	t.Run("MalformedHashIsError", func(t *testing.T) {
		ok, err := h.verify(ctx, password, "$2a$10$notanargon2hash")
		if err == nil || ok {
			t.Fatalf("verify(bcrypt string) = %v, %v; want false and an error", ok, err)
		}
	})
}

func TestParseArgon2id(t *testing.T) {
	salt := base64.RawStdEncoding.EncodeToString([]byte("0123456789abcdef"))
	key := base64.RawStdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	valid := "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key

	t.Run("Valid", func(t *testing.T) {
		p, err := parseArgon2id(valid)
		if err != nil {
			t.Fatalf("parseArgon2id(%q): %v", valid, err)
		}
		if p.memory != 19456 || p.time != 2 || p.threads != 1 || len(p.salt) != 16 || len(p.key) != 32 {
			t.Fatalf("parseArgon2id = m=%d t=%d p=%d salt=%d key=%d; want 19456, 2, 1, 16, 32",
				p.memory, p.time, p.threads, len(p.salt), len(p.key))
		}
	})

	tests := []struct {
		name, in string
	}{
		{"Empty", ""},
		{"NoDollars", "argon2id"},
		{"TooFewParts", "$argon2id$v=19$m=19456,t=2,p=1$" + salt},
		{"TooManyParts", valid + "$extra"},
		{"Argon2i", "$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key},
		{"Bcrypt", "$2a$10$abcdefghijklmnopqrstuuJ6i8b1bq4xUE2xwh5ZHN6x3Q3OeBd5W"},
		{"OldVersion", "$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key},
		{"VersionNotNumber", "$argon2id$v=x$m=19456,t=2,p=1$" + salt + "$" + key},
		{"VersionMissing", "$argon2id$$m=19456,t=2,p=1$" + salt + "$" + key},
		{"MemoryNotNumber", "$argon2id$v=19$m=x,t=2,p=1$" + salt + "$" + key},
		{"ThreadsMissing", "$argon2id$v=19$m=19456,t=2$" + salt + "$" + key},
		{"ParamsOutOfOrder", "$argon2id$v=19$t=2,m=19456,p=1$" + salt + "$" + key},
		{"ThreadsOverflowUint8", "$argon2id$v=19$m=19456,t=2,p=256$" + salt + "$" + key},
		{"MemoryOverflowUint32", "$argon2id$v=19$m=4294967296,t=2,p=1$" + salt + "$" + key},
		{"NegativeTime", "$argon2id$v=19$m=19456,t=-1,p=1$" + salt + "$" + key},
		{"SaltNotBase64", "$argon2id$v=19$m=19456,t=2,p=1$!!!!$" + key},
		{"SaltPadded", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + key},
		{"KeyEmpty", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$"},
		{"KeyURLAlphabet", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key[:10] + "-_" + key[12:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseArgon2id(tt.in); err == nil {
				t.Fatalf("parseArgon2id(%q) succeeded, want an error", tt.in)
			}
		})
	}
}
