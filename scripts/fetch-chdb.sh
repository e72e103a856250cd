#!/usr/bin/env bash
# Fetch chDB (an in-process ClickHouse engine, libchdb.so) from a pinned npm
# package into a cache directory outside the repo. Used only by the
# ClickHouse portability tests (internal/chdb); never by the server, and the
# library is never committed. Idempotent: skipped when already present.
#
# Usage: scripts/fetch-chdb.sh [CACHE_DIR]
#   CACHE_DIR defaults to ${MOAT_DATA_CACHE:-$HOME/.cache/moat}
#   FORCE=1 re-downloads.
# Prints the absolute path of libchdb.so on stdout (progress goes to stderr),
# e.g.  export MOAT_CHDB_LIB="$(scripts/fetch-chdb.sh)"
set -euo pipefail

# Pinned version (bump here; see docs/operations.md "ClickHouse portability").
CHDB_PKG="@chdb/lib-linux-x64-gnu@26.7.3-stable.1"
# sha1 of the npm tarball (npm view "$CHDB_PKG" dist.shasum).
CHDB_SHASUM="d2905fafd0e0ac0e231cccadd1f0f6d010977297"

CACHE="${1:-${MOAT_DATA_CACHE:-$HOME/.cache/moat}}"
mkdir -p "$CACHE/chdb"
CACHE="$(cd "$CACHE" && pwd)"

dir="$CACHE/chdb/$(echo "$CHDB_PKG" | tr '@/' '_-' | sed 's/^_//')"

find_lib() { find "$1" -name libchdb.so -type f 2>/dev/null | head -n1; }

if [[ -f "$dir/.done" && -z "${FORCE:-}" ]]; then
	lib="$(find_lib "$dir")"
	if [[ -n "$lib" ]]; then
		echo "$lib"
		exit 0
	fi
fi

command -v npm >/dev/null || { echo "fetch-chdb: npm is required (apt-get install npm)" >&2; exit 1; }

rm -rf "$dir"
tmp="$(mktemp -d "$CACHE/chdb/.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS
(cd "$tmp" && npm pack --silent --loglevel=error "$CHDB_PKG" >/dev/null 2>"$tmp/npm.log") || {
	cat "$tmp/npm.log" >&2
	echo "fetch-chdb: npm pack $CHDB_PKG failed" >&2
	exit 1
}
tgz="$(ls "$tmp"/*.tgz)"
got="$(sha1sum "$tgz" | cut -d' ' -f1)"
if [[ "$got" != "$CHDB_SHASUM" ]]; then
	echo "fetch-chdb: $CHDB_PKG: sha1 $got, want $CHDB_SHASUM" >&2
	exit 1
fi
mkdir -p "$tmp/x"
tar xzf "$tgz" -C "$tmp/x"
lib="$(find_lib "$tmp/x")"
[[ -n "$lib" ]] || { echo "fetch-chdb: no libchdb.so in $CHDB_PKG" >&2; exit 1; }
mv "$tmp/x" "$dir"
touch "$dir/.done"
echo "fetch-chdb: fetched $CHDB_PKG in $((SECONDS - t0))s" >&2
find_lib "$dir"
