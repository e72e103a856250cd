package geoip

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// TorExits is a set of Tor exit addresses, read from a file the operator
// downloads (Moat never fetches it). Contains is safe for concurrent use and
// does not allocate.
type TorExits struct {
	addrs    map[netip.Addr]struct{}
	prefixes []netip.Prefix
}

// LoadTorExits reads a Tor exit list file; see ParseTorExits for the
// formats.
func LoadTorExits(path string) (*TorExits, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geoip: tor exit list: %w", err)
	}
	defer f.Close()
	t, err := ParseTorExits(f)
	if err != nil {
		return nil, fmt.Errorf("geoip: tor exit list %s: %w", path, err)
	}
	return t, nil
}

// ParseTorExits reads a Tor exit list. Accepted, line by line:
//
//   - the Tor Project's bulk exit list (https://check.torproject.org/torbulkexitlist):
//     one IPv4 or IPv6 address a line;
//   - its exit-addresses document (https://check.torproject.org/exit-addresses):
//     the address of each "ExitAddress ADDR DATE TIME" line is taken and the
//     ExitNode, Published and LastStatus lines are skipped;
//   - a CIDR prefix a line (firehol-style ipsets such as tor_exits.ipset).
//
// Empty lines and everything after a '#' are ignored. Any other line is an
// error naming its line number, so a wrong file (an HTML error page saved
// by a failed download) is refused instead of read as an empty list.
func ParseTorExits(r io.Reader) (*TorExits, error) {
	t := &TorExits{addrs: map[netip.Addr]struct{}{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		tok := f[0]
		switch tok {
		case "ExitNode", "Published", "LastStatus":
			continue
		case "ExitAddress":
			if len(f) < 2 {
				return nil, fmt.Errorf("line %d: ExitAddress without an address", n)
			}
			tok = f[1]
		default:
			if len(f) > 1 {
				return nil, fmt.Errorf("line %d: not an address: %q", n, line)
			}
		}
		if strings.Contains(tok, "/") {
			p, err := netip.ParsePrefix(tok)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			if p.Addr().Is4In6() {
				if p.Bits() < 96 {
					return nil, fmt.Errorf("line %d: IPv4-mapped prefix shorter than /96: %s", n, tok)
				}
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			p = p.Masked()
			if p.IsSingleIP() {
				t.addrs[p.Addr()] = struct{}{}
			} else {
				t.prefixes = append(t.prefixes, p)
			}
			continue
		}
		a, err := netip.ParseAddr(tok)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		t.addrs[a.Unmap().WithZone("")] = struct{}{}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

// Contains reports whether addr is on the list. A nil list contains nothing.
func (t *TorExits) Contains(addr netip.Addr) bool {
	if t == nil || !addr.IsValid() {
		return false
	}
	addr = addr.Unmap().WithZone("")
	if _, ok := t.addrs[addr]; ok {
		return true
	}
	for _, p := range t.prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Len returns the number of single addresses plus prefixes on the list.
func (t *TorExits) Len() int {
	if t == nil {
		return 0
	}
	return len(t.addrs) + len(t.prefixes)
}
