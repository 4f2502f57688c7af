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
	var buf [TokenLength]byte // a token's copy on the stack, not the heap
	h := sha256.Sum256(append(buf[:0], token...))
	return h[:]
}

// wellFormed reports whether s could be one of our tokens, so that garbage is
// rejected without a database round trip. Every request that carries a token
// pays for it, so it looks each byte up in a table and branches only on the
// length: a chain of range tests per byte mispredicts on random tokens (four
// classes of character in no order) and cost 2 µs a token under load.
func wellFormed(s string) bool {
	if len(s) != TokenLength {
		return false
	}
	var bad byte
	for i := 0; i < len(s); i++ {
		bad |= notInAlphabet[s[i]]
	}
	return bad == 0
}

// notInAlphabet is 1 for every byte outside the URL-safe base64 alphabet.
var notInAlphabet = func() (t [256]byte) {
	for c := range t {
		t[c] = 1
	}
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = 0
	}
	return t
}()

// tokenPair is an access and a refresh token in plain text, as handed to a
// client.
type tokenPair struct {
	Access           string
	Refresh          string
	AccessExpiresAt  time.Time
	RefreshExpiresAt time.Time
}

// Idempotent refresh needs to hand the same successor pair to every retry of
// one refresh token, yet the database must never hold a token a thief could
// use. We keep the successor pair sealed (AES-256-GCM) under a key derived
// from the parent refresh token itself: the row has SHA-256(parent) and the
// sealed pair, and no server-side key has to be configured, shared between
// instances or rotated.
//
// Sealing alone does not keep that promise. The pair sealed under refresh
// token n holds token n+1, which opens the pair sealed under it, and so on:
// the seals form a chain, and whoever holds a copy of the database and any
// old refresh token whose seal is still there unrolls it offline up to the
// session's current pair, where replay detection never sees him. (Until
// migration 20261130110000 every seal was kept in retired_refresh_tokens for
// REFRESH_TOKEN_TTL, so one token from the last week was enough.) The chain
// cannot be cut by construction: a retry of token n must get token n+1
// verbatim, and token n+1 is exactly what its own retries present, so
// whatever lets the holder of n get n+1 back also opens n+1's seal; only a
// key the database does not hold could prevent it.
//
// What keeps the promise is time. A seal is needed only while presenting its
// token to refresh would return that pair: while the pair is unused, or
// within REFRESH_REUSE_WINDOW of the rotation (superseded.retriable). While
// it is needed, its token's holder gets online, without any replay being
// detected, exactly what a thief gets offline from it, and the chain
// onwards too, for each later seal is still needed as well. Once it is not
// needed, it goes:
//
//   - rotate copies the seal of the token it retires into
//     retired_refresh_tokens only while that rotation's window lasts (the
//     pair was used: its refresh token is being presented);
//   - touch erases the session row's seal when the pair is first used after
//     its window;
//   - a pair first used within its window keeps its seal until the window
//     has passed: eraseSpentSeals, which every instance runs every
//     sealSweepInterval (5 s), erases it then, as it does retired seals whose
//     window has passed.
//
// So a seal outlives its last legitimate use by at most sealSweepInterval
// plus one sweep's duration; a copy of the database taken after that opens
// nothing with any token. A seal whose pair is never used stays until the
// session ends (a retry of its token may still come), and opens only to that
// token's holder, as refresh would. Erasing a seal keeps its token's hash and
// rotation time, so a later replay is still answered REFRESH_TOKEN_REUSED.
// Seals of revoked or expired sessions are not hurried: every token they hold
// is refused, and they go with the session.
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
