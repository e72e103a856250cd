package webhooker

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moat-dev/moat/schemas"
)

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		addr         string
		refused      bool // without AllowPrivate
		refusedAllow bool // with AllowPrivate
	}{
		{"8.8.8.8", false, false},
		{"1.1.1.1", false, false},
		{"2606:4700:4700::1111", false, false},
		{"127.0.0.1", true, false},
		{"127.1.2.3", true, false},
		{"::1", true, false},
		{"::ffff:127.0.0.1", true, false},
		{"0.0.0.0", true, false},
		{"::", true, false},
		{"10.1.2.3", true, false},
		{"172.16.0.1", true, false},
		{"172.31.255.255", true, false},
		{"172.32.0.1", false, false},
		{"192.168.1.1", true, false},
		{"100.64.0.1", true, false},
		{"100.127.255.254", true, false},
		{"169.254.1.1", true, false},
		{"fe80::1", true, false},
		{"fc00::1", true, false},
		{"fd12:3456::1", true, false},
		{"224.0.0.1", true, false},
		{"255.255.255.255", true, false},
		{"64:ff9b::7f00:1", true, false},   // NAT64 of 127.0.0.1
		{"64:ff9b::808:808", false, false}, // NAT64 of 8.8.8.8
		{"2002:a00:1::1", true, false},     // 6to4 of 10.0.0.1
		{"169.254.169.254", true, true},    // metadata: always
		{"fd00:ec2::254", true, true},
		{"::ffff:169.254.169.254", true, true},
		{"100.100.100.200", true, true},
	}
	for _, tc := range tests {
		ip := netip.MustParseAddr(tc.addr)
		if err := CheckAddr(ip, false); (err != nil) != tc.refused || (err != nil && !errors.Is(err, ErrAddressRefused)) {
			t.Errorf("CheckAddr(%s, false) = %v, want refused %v", tc.addr, err, tc.refused)
		}
		if err := CheckAddr(ip, true); (err != nil) != tc.refusedAllow {
			t.Errorf("CheckAddr(%s, true) = %v, want refused %v", tc.addr, err, tc.refusedAllow)
		}
	}
}

// TestPostRefusesPrivate checks the refusal at dial time: by IP, and by a
// name that resolves to loopback (so after DNS resolution), without a
// single byte reaching the receiver.
func TestPostRefusesPrivate(t *testing.T) {
	rc := newReceiver(t, []string{"s"}, always(200))
	port := rc.srv.URL[strings.LastIndexByte(rc.srv.URL, ':')+1:]
	cfg := testConfig([]string{"127.0.0.1:1"})
	w, err := New(cfg, registry(t, testApp("a")), nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	n := notification("a", 1)
	body, _ := Body(&n)
	d := &schemas.WebhookDelivery{DeliveryID: "d", Notification: n}
	for _, u := range []string{rc.srv.URL, "http://localhost:" + port + "/hook", "http://[::1]:" + port} {
		a := testApp("a", u)
		a.Webhooks[0].AllowPrivate = false
		e := newEndpoint(cfg, a, a.Webhooks[0], newClient(cfg, false), newClient(cfg, true))
		r := w.post(context.Background(), e, d, body, 1)
		if !errors.Is(r.err, ErrAddressRefused) || r.retryable {
			t.Errorf("%s: err %v retryable %v, want a permanent ErrAddressRefused", u, r.err, r.retryable)
		}
		if strings.Contains(r.err.Error(), "/hook") {
			t.Errorf("error leaks the url: %v", r.err)
		}
	}
	// The same endpoint with AllowPrivate goes through.
	a := testApp("a", rc.srv.URL)
	e := newEndpoint(cfg, a, a.Webhooks[0], newClient(cfg, false), newClient(cfg, true))
	if r := w.post(context.Background(), e, d, body, 1); r.err != nil {
		t.Fatalf("AllowPrivate: %v", r.err)
	}
	if got := rc.requestCount(); got != 1 {
		t.Fatalf("receiver got %d requests, want 1 (only the allowed one)", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		"-3":                            0,
		"nonsense":                      0,
		"999999999":                     24 * time.Hour,
		"Thu, 01 Jan 2026 00:02:00 GMT": 2 * time.Minute,
		"Wed, 31 Dec 2025 23:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}
