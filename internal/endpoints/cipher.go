package endpoints

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size of the endpoints key: AES-256.
const KeySize = 32

// SecretPrefix starts every signing secret Moat generates.
const SecretPrefix = "whsec_"

// Errors of secret decryption.
var (
	// ErrNoKey: the table was built without a key, so it cannot decrypt
	// the secrets of API-managed endpoints.
	ErrNoKey = errors.New("endpoints: no endpoints key configured (--endpoints-key)")
	// ErrWrongKey: a secret was sealed under another key, or was altered.
	ErrWrongKey = errors.New("endpoints: secret cannot be decrypted with the configured endpoints key")
)

// Cipher seals endpoint signing secrets with AES-256-GCM under the
// deployment's endpoints key, so that the endpoints topic never holds them
// in plaintext. Each sealed secret is bound to its app and endpoint (GCM
// additional data): a sealed value copied to another endpoint's record does
// not open. It is safe for concurrent use.
type Cipher struct {
	aead  cipher.AEAD
	keyID string
}

// NewCipher returns a Cipher for a KeySize-byte key.
func NewCipher(key []byte) (*Cipher, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("endpoints: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("endpoints: key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("endpoints: key: %w", err)
	}
	sum := sha256.Sum256(append([]byte("moat-endpoints-key-id\x00"), key...))
	return &Cipher{aead: aead, keyID: hex.EncodeToString(sum[:4])}, nil
}

// ParseKey decodes a hex-encoded KeySize-byte key (surrounding white space
// is ignored), as given to --endpoints-key or kept in --endpoints-key-file.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	key, err := hex.DecodeString(s)
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("endpoints: the key must be %d hex characters, %d random bytes (generate one with `openssl rand -hex %d`)", 2*KeySize, KeySize, KeySize)
	}
	return key, nil
}

// KeyID names the key (a short hash of it) so that a secret sealed under
// another key is recognised as such.
func (c *Cipher) KeyID() string { return c.keyID }

func aad(appID, endpointID string) []byte {
	return []byte("moat-endpoint-secret\x00" + appID + "\x00" + endpointID)
}

// seal encrypts secret for endpoint endpointID of app appID: base64url of
// nonce || ciphertext || tag.
func (c *Cipher) seal(appID, endpointID, secret string) (string, error) {
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(secret)+c.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("endpoints: nonce: %w", err)
	}
	box := c.aead.Seal(nonce, nonce, []byte(secret), aad(appID, endpointID))
	return base64.RawURLEncoding.EncodeToString(box), nil
}

// open decrypts what seal returned for the same app and endpoint.
func (c *Cipher) open(appID, endpointID, sealed string) (string, error) {
	box, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil || len(box) < c.aead.NonceSize()+c.aead.Overhead() {
		return "", ErrWrongKey
	}
	n := c.aead.NonceSize()
	plain, err := c.aead.Open(nil, box[:n], box[n:], aad(appID, endpointID))
	if err != nil {
		return "", ErrWrongKey
	}
	return string(plain), nil
}

// NewSecret returns a new signing secret: SecretPrefix and the base64url
// form of 32 random bytes (256 bits).
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("endpoints: generate secret: %w", err)
	}
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Hint masks a secret for display: its prefix and last four characters
// ("whsec_…x9Qa"), enough to tell secrets apart, not to guess one.
func Hint(secret string) string {
	if len(secret) < 16 {
		return "…"
	}
	prefix := ""
	if strings.HasPrefix(secret, SecretPrefix) {
		prefix = SecretPrefix
	}
	return prefix + "…" + secret[len(secret)-4:]
}

// newID returns a new endpoint id: "ep_" and 24 hex characters.
func newID() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("endpoints: generate id: %w", err)
	}
	return "ep_" + hex.EncodeToString(b), nil
}
