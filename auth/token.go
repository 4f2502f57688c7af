package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

// TokenLength is the length of every access and refresh token: 256 characters
// of the URL-safe base64 alphabet, which encode 192 random bytes (1,536 bits).
const TokenLength = 256

const tokenBytes = TokenLength / 4 * 3

// newToken returns a fresh opaque token from crypto/rand.
func newToken() string {
	b := make([]byte, tokenBytes)
	rand.Read(b) // never returns an error; it crashes the program if the OS fails it
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashToken is what the database stores and looks tokens up by. Tokens carry
// 1,536 bits of entropy, so a fast unsalted hash is enough: nobody can guess
// a preimage, and equal tokens must map to one indexed value.
func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// wellFormed reports whether s could be one of our tokens, so that garbage is
// rejected without a database round trip.
func wellFormed(s string) bool {
	if len(s) != TokenLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// tokenPair is an access and a refresh token in plain text, as handed to a
// client.
type tokenPair struct {
	Access           string
	Refresh          string
	AccessExpiresAt  time.Time
	RefreshExpiresAt time.Time
}

// Idempotent refresh needs to hand the same successor pair to every retry of
// one refresh token, yet the database must never hold a usable token. We
// keep the successor pair sealed (AES-256-GCM) under a key derived from the
// parent refresh token itself, which only its holder knows:
//
//   - nothing secret is stored: the row has SHA-256(parent) and the sealed
//     pair, and opening it needs the parent, which a database thief lacks;
//   - no server-side key has to be configured, shared between instances or
//     rotated, and a leaked server key could not unroll a token chain (as it
//     would with successors derived by HMAC from the parent);
//   - whoever holds the parent can open the pair, which is exactly what
//     idempotence grants anyway, and only while the row keeps it.
//
// The key is derived with a domain-separation prefix, so it is never the
// value stored in refresh_hash.
func sealingKey(parentRefresh string) []byte {
	h := sha256.New()
	h.Write([]byte("sessionauth/successor-key/v1\x00"))
	h.Write([]byte(parentRefresh))
	return h.Sum(nil)
}

func newAEAD(parentRefresh string) cipher.AEAD {
	block, err := aes.NewCipher(sealingKey(parentRefresh))
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// sealPair encrypts p (tokens and expiries) under parentRefresh, bound to
// the session id.
func sealPair(parentRefresh, sessionID string, p tokenPair) []byte {
	aead := newAEAD(parentRefresh)
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	plain := make([]byte, 0, sealedLen)
	plain = append(plain, p.Access...)
	plain = append(plain, p.Refresh...)
	plain = binary.BigEndian.AppendUint64(plain, uint64(p.AccessExpiresAt.UnixMicro()))
	plain = binary.BigEndian.AppendUint64(plain, uint64(p.RefreshExpiresAt.UnixMicro()))
	return aead.Seal(nonce, nonce, plain, []byte(sessionID))
}

const sealedLen = 2*TokenLength + 2*8

// openPair reverses sealPair.
func openPair(parentRefresh, sessionID string, sealed []byte) (tokenPair, error) {
	aead := newAEAD(parentRefresh)
	if len(sealed) < aead.NonceSize() {
		return tokenPair{}, errors.New("sealed pair too short")
	}
	nonce, box := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
	plain, err := aead.Open(nil, nonce, box, []byte(sessionID))
	if err != nil {
		return tokenPair{}, err
	}
	if len(plain) != sealedLen {
		return tokenPair{}, errors.New("sealed pair has the wrong length")
	}
	expiries := plain[2*TokenLength:]
	return tokenPair{
		Access:           string(plain[:TokenLength]),
		Refresh:          string(plain[TokenLength : 2*TokenLength]),
		AccessExpiresAt:  time.UnixMicro(int64(binary.BigEndian.Uint64(expiries))).UTC(),
		RefreshExpiresAt: time.UnixMicro(int64(binary.BigEndian.Uint64(expiries[8:]))).UTC(),
	}, nil
}
