package geoip

// datacenterASNs lists autonomous systems whose address space is, for the
// purposes of risk scoring, hosting/cloud/VPS space: a login from there is
// almost always a server, a VPN endpoint or a proxy, not a person's device.
//
// How it was chosen: the big public clouds and VPS/dedicated hosts (the
// list in the project's reference libs.md §2), plus a few smaller VPS hosts
// that are well known as commercial-VPN and bot egress, restricted to ASNs
// that carry (almost) only customer servers. Every owner name was checked against the
// @ip-location-db/asn CSV (2.3.2026061719). Deliberately left out: ASNs that
// mix hosting with eyeball (residential/mobile) users, e.g. Google's
// AS15169 is kept because its end-user access networks (Google Fiber AS16591,
// Google Fi) use other ASNs, but Cloudflare's AS13335 is left out because
// WARP and iCloud Private Relay egress make it look like consumer traffic
// that a privacy/proxy signal should judge instead. Keep the list short and
// certain: a false "datacenter" on a residential network hurts real users.
// Names are the owner strings in that CSV. Operators can add their own with
// DB.AddDatacenterASNs.
var datacenterASNs = map[uint32]string{
	// Amazon Web Services
	16509: "Amazon.com, Inc.",
	14618: "Amazon.com, Inc.",
	8987:  "Amazon Data Services Ireland Ltd",
	// Google Cloud (AS15169 also serves Google's own crawlers and 8.8.8.8)
	15169:  "Google LLC",
	396982: "Google LLC",
	19527:  "Google LLC",
	// Microsoft Azure
	8075: "Microsoft Corporation",
	// DigitalOcean
	14061: "DigitalOcean, LLC",
	// OVHcloud (35540: Kimsufi/So you Start)
	16276: "OVH SAS",
	35540: "OVH SAS",
	// Hetzner (213230: Hetzner Cloud)
	24940:  "Hetzner Online GmbH",
	213230: "Hetzner Online GmbH",
	// Akamai Connected Cloud, formerly Linode
	63949: "Akamai Technologies, Inc.",
	// Vultr / Choopa
	20473: "The Constant Company, LLC",
	// Oracle Cloud
	31898: "Oracle Corporation",
	// Alibaba Cloud
	45102: "Alibaba (US) Technology Co., Ltd.",
	37963: "Hangzhou Alibaba Advertising Co.,Ltd.",
	// Tencent Cloud
	132203: "Shenzhen Tencent Computer Systems Company Limited",
	45090:  "Shenzhen Tencent Computer Systems Company Limited",
	// Scaleway
	12876: "Scaleway SAS",
	// Contabo
	51167:  "Contabo GmbH",
	40021:  "Contabo Inc.",
	141995: "Contabo Asia Private Limited",
	// Leaseweb
	60781: "LeaseWeb Netherlands B.V.",
	16265: "LeaseWeb Network B.V.",
	28753: "Leaseweb Deutschland GmbH",
	30633: "Leaseweb USA, Inc.",
	7203:  "Leaseweb USA, Inc.",
	// M247 (much commercial-VPN egress)
	9009: "M247 Europe SRL",
	// Smaller VPS/dedicated hosts common as VPN and bot egress
	36352:  "HostPapa", // ColoCrossing
	53667:  "FranTech Solutions",
	62240:  "Clouvider Limited",
	197540: "netcup GmbH",
	200019: "ALEXHOST SRL",
	212238: "Datacamp Limited", // CDN77 / DataCamp, VPN egress
	60068:  "Datacamp Limited",
	46606:  "Unified Layer",
	26496:  "GoDaddy.com, LLC",
	9370:   "SAKURA Internet Inc.",
	4785:   "xTom Limited",
	8100:   "QuadraNet Enterprises LLC",
	20454:  "SECURED SERVERS LLC",
}

// IsDatacenterASN reports whether asn is on the curated hosting/cloud list.
// ASNs added with DB.AddDatacenterASNs are not seen here; use
// DB.IsDatacenter for those.
func IsDatacenterASN(asn uint32) bool {
	_, ok := datacenterASNs[asn]
	return ok
}

// DatacenterASNs returns a copy of the curated hosting/cloud ASN list
// (ASN → owner name as checked against the ASN data).
func DatacenterASNs() map[uint32]string {
	m := make(map[uint32]string, len(datacenterASNs))
	for k, v := range datacenterASNs {
		m[k] = v
	}
	return m
}
