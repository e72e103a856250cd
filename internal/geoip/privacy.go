package geoip

// proxyASNs lists autonomous systems registered to commercial VPN and proxy
// operators themselves: an address there is a VPN or proxy exit, so
// Info.Proxy (the proxy_ip signal, ip.privacy.proxy and .anonymous) is set.
//
// How it was chosen. No redistributable VPN/proxy IP list is reachable from
// Moat's install-time sources (npm, Debian; see docs/data.md), so this is a
// short curated list. A candidate came from the community list
// X4BNet/lists_vpn (input/vpn/ASN.txt, which names the VPN brand of each
// ASN; no licence is stated, so nothing is copied from it) or from the
// owner name being the VPN brand or its operating company. Each entry was
// kept only if the owner name in the @ip-location-db/asn CSV (2.3.2026061719;
// the name recorded here) is that VPN brand or the company known to run it,
// and the ASN is not an ISP's or a general host's. TestFetchedCuratedNames
// checks every name against the fetched CSV.
//
// Deliberately left out: hosting providers that many VPNs rent servers
// from (M247, Datacamp/CDN77, ...) — they are on the datacenter list, and
// most of their addresses are not VPN exits; ExpressVPN, CyberGhost and
// PIA, which have no ASN of their own in this data (they rent); enterprise
// and browser-bundled services whose users are ordinary employees or
// readers (Check Point, Zscaler, Opera's browser VPN and Opera Mini
// proxies); iCloud Private Relay and Cloudflare WARP, whose egress is
// address ranges inside CDN ASNs, not an ASN of their own. So proxy_ip
// covers the big VPN brands that run their own networks and misses VPNs
// and proxies on rented hosting (datacenter_ip often fires for those).
// Operators can add ASNs with DB.AddProxyASNs.
var proxyASNs = map[uint32]string{
	// Mullvad VPN: its own AS and that of 31173 Services AB, the company
	// that owns Mullvad's own servers.
	216025: "Mullvad VPN AB",
	39351:  "31173 Services AB",
	// Proton VPN (Proton AG). These ASNs also carry Proton Mail, whose
	// servers do not sign in to other sites, so the whole ASNs are taken.
	62371:  "Proton AG",
	199218: "Proton AG",
	209103: "Proton AG",
	208172: "Proton AG",
	// NordVPN: PacketHub S.A., Nord Security's server company
	// (X4BNet/lists_vpn: "NordVPN (TEFINCOM S.A.)", "Packethub (NordVPN)").
	136787: "PacketHub S.A.",
	207137: "PacketHub S.A.",
	147049: "PacketHub S.A.",
	// Surfshark (X4BNet/lists_vpn: "Surfshark").
	209854: "Cyberzone S.A.",
	// Windscribe.
	397540: "Windscribe",
	// IVPN.
	203619: "IVPN Limited",
	// StrongVPN and Ziff Davis's other VPN brands (AS62651 is
	// NETPROTECT-62651).
	62651:  "Strong Technology, LLC.",
	140952: "Strong Technology, LLC",
	13926:  "Strong Technology, LLC.",
	// IPVanish (Mudhook Marketing, its operator before StackPath).
	46253: "Mudhook Marketing Inc",
	// Avast SecureLine VPN and HMA (Gen Digital).
	198605: "AVAST Software s.r.o.",
	// Rayobyte (formerly Blazing SEO): datacenter proxies sold by the IP.
	64267: "Sprious LLC",
}

// torASNs lists autonomous systems of non-profits that exist to run Tor
// exit relays. An address there is almost surely a Tor exit, so Info.Tor is
// set even without a Tor exit list. They carry only a small share of Tor's
// exits: the exit list (LoadTorExits, --tor-exits-file) is what covers Tor.
var torASNs = map[uint32]string{
	// torservers.net / Zwiebelfreunde (X4BNet/lists_vpn: "Tor Servers
	// (Tor exit nodes)").
	60729: "Stiftung Erneuerbare Freiheit",
	// Foundation for Applied Privacy (applied-privacy.net), Vienna.
	208323: "Foundation for Applied Privacy",
	// Emerald Onion, Seattle.
	396507: "Emerald Onion",
}

// IsProxyASN reports whether asn is on the curated VPN/proxy operator list.
// ASNs added with DB.AddProxyASNs are not seen here; use DB.IsProxy.
func IsProxyASN(asn uint32) bool {
	_, ok := proxyASNs[asn]
	return ok
}

// ProxyASNs returns a copy of the curated VPN/proxy operator ASN list
// (ASN → owner name as checked against the ASN data).
func ProxyASNs() map[uint32]string { return copyNames(proxyASNs) }

// IsTorASN reports whether asn is on the curated list of networks run
// only for Tor exit relays.
func IsTorASN(asn uint32) bool {
	_, ok := torASNs[asn]
	return ok
}

// TorASNs returns a copy of the curated Tor-operator ASN list.
func TorASNs() map[uint32]string { return copyNames(torASNs) }

func copyNames(src map[uint32]string) map[uint32]string {
	m := make(map[uint32]string, len(src))
	for k, v := range src {
		m[k] = v
	}
	return m
}
