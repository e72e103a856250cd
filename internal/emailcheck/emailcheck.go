// Package emailcheck normalises email addresses and classifies them:
// syntactically valid or not, on a disposable-email domain or not, and
// whether the local part looks machine-generated. It never does DNS or SMTP.
package emailcheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// Info is the result of Check.
type Info struct {
	// Normalized is the canonical base address: lower-cased and trimmed; for
	// Gmail (and googlemail.com, mapped to gmail.com) dots in the local part
	// and a +tag removed; for other providers known to support
	// subaddressing, a +tag removed. All aliases of one mailbox share it.
	// Empty when the input has no '@'.
	Normalized string
	// Domain is the lower-cased domain (after googlemail → gmail).
	Domain string
	// Valid: a dot-atom local part of 1–64 characters and a domain of at
	// least two labels with a plausible top-level domain.
	Valid bool
	// Disposable: the domain, or a parent of it, is on the disposable list.
	Disposable bool
	// Generated: the local part looks random (see LooksGenerated).
	Generated bool
	// Aliased: the address differs from Normalized other than by case and
	// surrounding space, i.e. it used a +tag or Gmail dots (googlemail.com
	// for gmail.com alone does not count).
	Aliased bool
}

// Checker holds the disposable-domain set. It is safe for concurrent use.
type Checker struct {
	disposable map[string]struct{}
}

// New returns a Checker whose disposable set is the given domains plus the
// small built-in list (BuiltinDisposable). Domains are lower-cased; blank
// entries and comments are ignored.
func New(disposableDomains []string) *Checker {
	c := &Checker{disposable: make(map[string]struct{}, len(disposableDomains)+len(builtinDisposable))}
	for _, list := range [][]string{builtinDisposable, disposableDomains} {
		for _, d := range list {
			d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
			if d == "" || d[0] == '#' {
				continue
			}
			c.disposable[d] = struct{}{}
		}
	}
	return c
}

// Len is the number of disposable domains known.
func (c *Checker) Len() int { return len(c.disposable) }

// LoadDisposable reads a disposable-domain list: either a JSON array of
// strings (npm disposable-email-domains-js) or plain text with one domain a
// line ('#' comments allowed, the format of the upstream
// disposable_email_blocklist.conf).
func LoadDisposable(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("emailcheck: %w", err)
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '[' {
		var out []string
		if err := json.Unmarshal(t, &out); err != nil {
			return nil, fmt.Errorf("emailcheck: %s: %w", path, err)
		}
		return out, nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		out = append(out, line)
	}
	return out, sc.Err()
}

// subaddressing lists providers where local+tag@domain reaches local@domain.
var subaddressing = map[string]bool{
	"gmail.com": true, "googlemail.com": true,
	"outlook.com": true, "hotmail.com": true, "live.com": true, "msn.com": true,
	"hotmail.co.uk": true, "outlook.fr": true, "hotmail.fr": true, "live.co.uk": true,
	"icloud.com": true, "me.com": true, "mac.com": true,
	"protonmail.com": true, "protonmail.ch": true, "proton.me": true, "pm.me": true,
	"fastmail.com": true, "fastmail.fm": true,
	"yandex.ru": true, "yandex.com": true, "ya.ru": true,
	"zoho.com": true, "hey.com": true, "gmx.com": true, "gmx.de": true,
	"mail.ru": true, "tutanota.com": true, "tuta.io": true,
}

// Alias returns the normalized base address of email (Info.Normalized):
// addresses that reach the same mailbox share it. Empty without an '@'.
func Alias(email string) string {
	n, _, _ := normalize(email)
	return n
}

// normalize returns the base address, the domain and the local part as
// used for it.
func normalize(email string) (norm, domain, local string) {
	e := strings.ToLower(strings.TrimSpace(email))
	at := strings.LastIndexByte(e, '@')
	if at < 0 {
		return "", "", ""
	}
	local, domain = e[:at], strings.TrimSuffix(e[at+1:], ".")
	same := len(domain) == len(e)-at-1 // e is local@domain so far
	if domain == "googlemail.com" {
		domain, same = "gmail.com", false
	}
	if subaddressing[domain] {
		if i := strings.IndexByte(local, '+'); i > 0 {
			local, same = local[:i], false
		}
	}
	if domain == "gmail.com" && strings.IndexByte(local, '.') >= 0 {
		local, same = strings.ReplaceAll(local, ".", ""), false
	}
	if same {
		return e, domain, local // the common case: no new string
	}
	return local + "@" + domain, domain, local
}

// Check normalises and classifies email.
func (c *Checker) Check(email string) Info {
	var info Info
	norm, domain, local := normalize(email)
	if norm == "" {
		return info
	}
	info.Normalized, info.Domain = norm, domain
	lower := strings.ToLower(strings.TrimSpace(email))
	info.Aliased = norm != lower && norm != strings.Replace(lower, "@googlemail.com", "@gmail.com", 1)
	info.Valid = validLocal(lower[:strings.LastIndexByte(lower, '@')]) && validDomain(domain)
	info.Disposable = c.IsDisposableDomain(domain)
	info.Generated = LooksGenerated(local)
	return info
}

// IsDisposableDomain reports whether domain or one of its parent domains is
// on the list (so "x.mailinator.com" counts as "mailinator.com").
func (c *Checker) IsDisposableDomain(domain string) bool {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	for domain != "" {
		if _, ok := c.disposable[domain]; ok {
			return true
		}
		i := strings.IndexByte(domain, '.')
		if i < 0 {
			return false
		}
		domain = domain[i+1:]
		if strings.IndexByte(domain, '.') < 0 {
			return false // never match a bare TLD
		}
	}
	return false
}

// validLocal accepts an RFC 5322 dot-atom of 1–64 bytes (quoted local parts
// are rejected: real sign-ups never use them). UTF-8 letters are allowed
// (RFC 6531).
func validLocal(s string) bool {
	if len(s) == 0 || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch >= 0x80:
		case strings.IndexByte(".!#$%&'*+/=?^_`{|}~-", ch) >= 0:
		default:
			return false
		}
	}
	return utf8.ValidString(s)
}

// reservedTLDs are never deliverable on the public Internet.
var reservedTLDs = map[string]bool{
	"test": true, "example": true, "invalid": true, "localhost": true,
	"local": true, "internal": true, "lan": true, "home": true, "corp": true,
	"localdomain": true, "onion": true, "arpa": true,
}

// validDomain: 2+ labels of 1–63 letters, digits and hyphens (not at a label's
// ends; UTF-8 letters allowed for IDNs), at most 253 bytes, and a top-level
// label that is alphabetic (2+ letters) or punycode ("xn--…") and not
// reserved.
func validDomain(d string) bool {
	if len(d) < 4 || len(d) > 253 || !utf8.ValidString(d) {
		return false
	}
	dot := strings.LastIndexByte(d, '.')
	if dot <= 0 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch >= 0x80) {
				return false
			}
		}
	}
	tld := d[dot+1:]
	if reservedTLDs[tld] {
		return false
	}
	if strings.HasPrefix(tld, "xn--") {
		return len(tld) > 4
	}
	if len(tld) < 2 {
		return false
	}
	for i := 0; i < len(tld); i++ {
		if ch := tld[i]; !(ch >= 'a' && ch <= 'z' || ch >= 0x80) {
			return false
		}
	}
	return true
}

// Thresholds of LooksGenerated.
const (
	genMinLen         = 8   // shorter local parts are never judged
	genMinDigits      = 4   // (a) digits...
	genDigitRatioLo   = 0.3 // ...making up 30–90% of the characters
	genDigitRatioHi   = 0.9
	genMinTransitions = 3   // (b) letter↔digit switches
	genConsonantRun   = 6   // (c) consonants in a row (y counts as a vowel)
	genMaxVowelRatio  = 0.2 // (d) vowels among ≥ 6 letters
	genHexMinLen      = 16  // (e) hex strings this long (hashes, UUIDs)
)

// LooksGenerated reports whether a local part looks machine-generated. It
// ignores '.', '_', '-' and '+', then, for local parts of at least 8
// characters, counts these indicators:
//
//	(a) at least 4 digits making up 30–90% of the characters
//	    (all-digit local parts are left alone: QQ and phone-number mailboxes);
//	(b) at least 3 switches between letters and digits ("a8f3k2");
//	(c) a run of 6 or more consonants ("xkqztp"; y counts as a vowel);
//	(d) fewer than 20% vowels among at least 6 letters.
//
// Two or more indicators mean generated. A hexadecimal string of 16 or more
// characters with both letters and digits (a hash or UUID) is generated on
// its own. Single indicators are common in real addresses (john1985,
// mkrtchyan, strengths, user83921047), hence the two-indicator rule.
// Shannon entropy was not used: on 8–20 characters it mostly measures
// length.
func LooksGenerated(local string) bool {
	var n, digits, letters, vowels, transitions, run, maxRun int
	hex := true
	prev := byte(0) // 'a' letter, '0' digit
	for i := 0; i < len(local); i++ {
		ch := local[i]
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		switch {
		case ch == '.' || ch == '_' || ch == '-' || ch == '+':
			continue
		case ch >= '0' && ch <= '9':
			digits++
			run = 0
			if prev == 'a' {
				transitions++
			}
			prev = '0'
		case ch >= 'a' && ch <= 'z':
			letters++
			if ch > 'f' {
				hex = false
			}
			if strings.IndexByte("aeiouy", ch) >= 0 {
				vowels++
				run = 0
			} else {
				run++
				maxRun = max(maxRun, run)
			}
			if prev == '0' {
				transitions++
			}
			prev = 'a'
		default: // other symbols and non-ASCII: not judged
			hex = false
			run = 0
		}
		n++
	}
	if n < genMinLen {
		return false
	}
	if hex && n >= genHexMinLen && digits > 0 && letters > 0 {
		return true
	}
	score := 0
	if r := float64(digits) / float64(n); digits >= genMinDigits && r >= genDigitRatioLo && r <= genDigitRatioHi {
		score++
	}
	if transitions >= genMinTransitions {
		score++
	}
	if maxRun >= genConsonantRun {
		score++
	}
	if letters >= 6 && float64(vowels)/float64(letters) < genMaxVowelRatio {
		score++
	}
	return score >= 2
}
