package webhooker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Headers of every delivery.
const (
	// HeaderCastleSignature is Castle's signature:
	// base64(HMAC-SHA256(secret, raw body)). The official SDKs verify it.
	HeaderCastleSignature = "X-Castle-Signature"
	// HeaderSignature is Moat's timestamped signature,
	// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>", with
	// one v1 per active secret (two during a rotation).
	HeaderSignature = "X-Moat-Signature"
	// HeaderDeliveryID is stable per notification and endpoint and
	// identical across retries and replays: receivers deduplicate on it.
	HeaderDeliveryID = "X-Moat-Delivery-Id"
	// HeaderAttempt is the attempt number, from 1.
	HeaderAttempt = "X-Moat-Attempt"
	// HeaderIdempotencyKey repeats the delivery id under the name Go's
	// http.Transport (and many frameworks) recognise, which lets the
	// transport retry a POST on a pooled connection the receiver closed.
	HeaderIdempotencyKey = "Idempotency-Key"
)

// DefaultTolerance is the replay window VerifyTimestamped is meant to be
// used with: a signature older (or newer) than this is rejected.
const DefaultTolerance = 5 * time.Minute

// Verification errors.
var (
	ErrNoSignature        = errors.New("webhooker: no signature")
	ErrSignatureMalformed = errors.New("webhooker: malformed signature header")
	ErrSignatureMismatch  = errors.New("webhooker: signature does not match")
	ErrSignatureExpired   = errors.New("webhooker: signature timestamp outside tolerance")
)

// Sign returns the X-Castle-Signature value of body:
// base64(HMAC-SHA256(secret, body)). It is what Castle's SDKs check
// (Castle::Webhooks::Verify, castle.verifyWebhookSignature, ...).
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature is body's X-Castle-Signature under
// secret, comparing in constant time. The Castle signature signs no
// timestamp, so it cannot detect replays: prefer VerifyTimestamped.
func Verify(secret string, body []byte, signature string) bool {
	if signature == "" || len(body) == 0 {
		return false
	}
	want := Sign(secret, body)
	return hmac.Equal([]byte(want), []byte(strings.TrimSpace(signature)))
}

// SignTimestamped returns the X-Moat-Signature value of body at t, with one
// v1 signature per secret: "t=1700000000,v1=<hex>,v1=<hex>".
func SignTimestamped(t time.Time, body []byte, secrets ...string) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(ts)
	for _, s := range secrets {
		b.WriteString(",v1=")
		b.WriteString(hex.EncodeToString(timestampedMAC(s, ts, body)))
	}
	return b.String()
}

func timestampedMAC(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifyTimestamped checks an X-Moat-Signature header: it succeeds when any
// v1 signature matches body under any of secrets (so both sides can rotate
// secrets without downtime) and the timestamp is within tolerance of now
// (tolerance <= 0 skips the age check). Receivers should also drop
// deliveries whose X-Moat-Delivery-Id they have already processed.
func VerifyTimestamped(header string, body []byte, now time.Time, tolerance time.Duration, secrets ...string) error {
	if strings.TrimSpace(header) == "" {
		return ErrNoSignature
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrSignatureMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return ErrSignatureMalformed
			}
			sigs = append(sigs, sig)
		}
		// Unknown keys (future schemes) are ignored.
	}
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrSignatureMalformed
	}
	if tolerance > 0 {
		if age := now.Sub(time.Unix(unix, 0)); age > tolerance || age < -tolerance {
			return fmt.Errorf("%w: signed %s ago", ErrSignatureExpired, age.Round(time.Second))
		}
	}
	for _, s := range secrets {
		want := timestampedMAC(s, ts, body)
		for _, sig := range sigs {
			if hmac.Equal(want, sig) {
				return nil
			}
		}
	}
	return ErrSignatureMismatch
}
