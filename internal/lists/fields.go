package lists

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"github.com/moat-dev/moat/internal/emailcheck"
	"github.com/moat-dev/moat/schemas"
)

// MaxValueLen bounds an item's primary and secondary values (after
// normalization), in bytes.
const MaxValueLen = 512

// ipField reports whether field holds IP addresses.
func ipField(field string) bool {
	return field == schemas.ListFieldIPValue || field == schemas.ListFieldIPAddress
}

// Normalize returns v in the canonical form list items of field are kept
// and matched in: a canonical IP address or masked CIDR range (ip.value,
// ip.address), the ASN in decimal without "AS", the upper-case country
// code, a lower-case email, the email's normalized mailbox (aliases and
// Gmail dots removed, as the scorer computes email.normalized), a
// lower-case domain; user ids, device fingerprints and tokens are kept as
// given. The error says what is wrong with v.
func Normalize(field, v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", errors.New("is required")
	}
	var out string
	switch field {
	case schemas.ListFieldIPValue, schemas.ListFieldIPAddress:
		if a, err := netip.ParseAddr(v); err == nil {
			out = a.Unmap().WithZone("").String()
			break
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return "", errors.New("is not an IP address or CIDR range")
		}
		a := p.Addr().Unmap()
		bits := p.Bits()
		if p.Addr().Is4In6() {
			bits -= 96
			if bits < 0 {
				return "", errors.New("is not an IP address or CIDR range")
			}
		}
		p = netip.PrefixFrom(a, bits).Masked()
		if p.IsSingleIP() {
			out = p.Addr().String()
		} else {
			out = p.String()
		}
	case schemas.ListFieldIPASN:
		s := strings.TrimPrefix(strings.TrimPrefix(v, "AS"), "as")
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return "", errors.New("is not an AS number")
		}
		out = strconv.FormatUint(n, 10)
	case schemas.ListFieldIPCountryCode:
		if len(v) != 2 || !isLetters(v) {
			return "", errors.New("is not a two-letter country code")
		}
		out = strings.ToUpper(v)
	case schemas.ListFieldUserEmail:
		if !strings.Contains(v, "@") {
			return "", errors.New("is not an email address")
		}
		out = strings.ToLower(v)
	case schemas.ListFieldEmailNormalized:
		if !strings.Contains(v, "@") {
			return "", errors.New("is not an email address")
		}
		out = strings.ToLower(v)
		if n := emailcheck.Alias(v); n != "" {
			out = n
		}
	case schemas.ListFieldEmailDomain:
		out = strings.ToLower(strings.TrimPrefix(v, "@"))
		if out == "" || strings.ContainsAny(out, "@ ") {
			return "", errors.New("is not a domain")
		}
	default:
		out = v
	}
	if len(out) > MaxValueLen {
		return "", errors.New("is longer than " + strconv.Itoa(MaxValueLen) + " bytes")
	}
	return out, nil
}

func isLetters(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}
