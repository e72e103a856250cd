package webhooker

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrAddressRefused is wrapped by the error of an attempt whose endpoint
// resolved to an address outbound requests must not reach. It is a
// permanent failure.
var ErrAddressRefused = errors.New("webhooker: destination address refused")

// refusedPrefixes are never dialled unless the endpoint has AllowPrivate:
// loopback, RFC 1918 and unique-local private ranges, link-local, CGNAT,
// "this network", multicast, reserved, documentation and benchmarking
// ranges, and the IPv4 broadcast address.
var refusedPrefixes = mustPrefixes(
	"0.0.0.0/8",       // this network
	"10.0.0.0/8",      // private
	"100.64.0.0/10",   // CGNAT (shared address space)
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local (cloud metadata lives here)
	"172.16.0.0/12",   // private
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation
	"192.88.99.0/24",  // 6to4 relay anycast
	"192.168.0.0/16",  // private
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation
	"203.0.113.0/24",  // documentation
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, and 255.255.255.255
	"::/128",          // unspecified
	"::1/128",         // loopback
	"100::/64",        // discard
	"2001:db8::/32",   // documentation
	"64:ff9b:1::/48",  // local-use NAT64
	"fc00::/7",        // unique local (fd00:ec2::254 is AWS metadata)
	"fe80::/10",       // link-local
	"ff00::/8",        // multicast
)

// metadataAddrs are cloud instance-metadata services. They are refused even
// for endpoints with AllowPrivate: no webhook receiver lives there, and
// they hand out credentials.
var metadataAddrs = map[netip.Addr]bool{
	netip.MustParseAddr("169.254.169.254"): true, // AWS, GCP, Azure, OpenStack, ...
	netip.MustParseAddr("169.254.170.2"):   true, // AWS ECS task metadata
	netip.MustParseAddr("fd00:ec2::254"):   true, // AWS IPv6
	netip.MustParseAddr("100.100.100.200"): true, // Alibaba Cloud
}

var (
	nat64 = netip.MustParsePrefix("64:ff9b::/96")
	six4  = netip.MustParsePrefix("2002::/16")
)

func mustPrefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

// CheckAddr reports whether a delivery may connect to ip: nil, or an error
// wrapping ErrAddressRefused. allowPrivate permits everything except the
// metadata services.
func CheckAddr(ip netip.Addr, allowPrivate bool) error {
	ip = ip.Unmap().WithZone("")
	if metadataAddrs[ip] {
		return fmt.Errorf("%w: %s is a cloud metadata service", ErrAddressRefused, ip)
	}
	if allowPrivate {
		return nil
	}
	if !ip.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrAddressRefused)
	}
	// IPv6 forms that embed an IPv4 address are judged by that address.
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			if err := CheckAddr(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), false); err != nil {
				return err
			}
		case six4.Contains(ip):
			if err := CheckAddr(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), false); err != nil {
				return err
			}
		}
	}
	for _, p := range refusedPrefixes {
		if p.Contains(ip) {
			return fmt.Errorf("%w: %s is in %s (loopback, private, link-local or reserved); set allow_private on the endpoint to permit it", ErrAddressRefused, ip, p)
		}
	}
	return nil
}

// dialControl checks every address the dialer is about to connect to, after
// DNS resolution, so neither a DNS name pointing inside nor a redirect
// reaches a refused address.
func dialControl(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot parse %q", ErrAddressRefused, address)
		}
		return CheckAddr(ap.Addr(), allowPrivate)
	}
}

// newClient returns the HTTP client of endpoints with (or without)
// AllowPrivate. Redirects are never followed: a 3xx is a permanent failure
// (a receiver that moved must have its URL updated; following a POST
// redirect would also change the method or replay the body elsewhere).
// Proxies from the environment are ignored, as a proxy would hide the
// destination address from the dial-time check.
func newClient(cfg Config, allowPrivate bool) *http.Client {
	dialer := &net.Dialer{
		Timeout:   cfg.ConnectTimeout,
		KeepAlive: 30 * time.Second,
		Control:   dialControl(allowPrivate),
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    cfg.ConnectTimeout,
		ResponseHeaderTimeout:  cfg.RequestTimeout,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    max(64, cfg.MaxConcurrencyPerEndpoint),
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
