#!/usr/bin/env bash
# Load harness: starts `moat dev` on a fresh data dir and free ports, drives
# Castle-style traffic at it with `moat load` at each rate in RATES for
# DURATION, and writes each report to docs/bench/<rate>.md (the figures
# quoted in docs/performance.md). Everything runs on this machine.
#   RATES="1000 3000 5000" DURATION=60s scripts/bench.sh
# PATHS sets the mix of calls (moat load --paths; default track=80,log=20),
# PREFIX the report names (docs/bench/<PREFIX><rate>.md) and LOAD_ARGS more
# flags of moat load, e.g. for /v1/risk alone:
#   PATHS=risk=100 PREFIX=risk- RATES=500 LOAD_ARGS="--target-p99-latency 25ms" scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATES="${RATES:-1000 3000 5000}"
DURATION="${DURATION:-60s}"
OUT="${OUT:-docs/bench}"
PATHS="${PATHS:-}"
PREFIX="${PREFIX:-}"
LOAD_ARGS="${LOAD_ARGS:-}"
mkdir -p bin "$OUT"
go build -o bin/moat ./cmd/moat
dir="$(mktemp -d)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
HTTP=$(port); KAFKA=$(port); CH=$(port)
SECRET="bench-secret-$(date +%s)-0123456789"
[ -f "${MOAT_DATA_CACHE:-$HOME/.cache/moat}/paths.env" ] && { set -a; . "${MOAT_DATA_CACHE:-$HOME/.cache/moat}/paths.env"; set +a; }
MOAT_API_SECRET="$SECRET" bin/moat dev --data-dir "$dir/data" --http-addr "127.0.0.1:$HTTP" \
	--kafka-port "$KAFKA" --clickhouse-port "$CH" --log-level warn >"$dir/moat.log" 2>&1 &
MOAT=$!
trap 'kill $MOAT 2>/dev/null; wait $MOAT 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 120); do
	curl -fs "http://127.0.0.1:$HTTP/readyz" >/dev/null 2>&1 && break
	sleep 0.5
done
CHPID=$(pgrep -f "$dir/data/clickhouse/config.xml" | head -1)
status=0
for rate in $RATES; do
	echo "== $rate requests/s for $DURATION${PATHS:+ ($PATHS)}" >&2
	# shellcheck disable=SC2086 # LOAD_ARGS is a list of flags
	bin/moat load --url "http://127.0.0.1:$HTTP" --secret "$SECRET" --rate "$rate" --duration "$DURATION" \
		${PATHS:+--paths "$PATHS"} $LOAD_ARGS \
		--clickhouse-addr "127.0.0.1:$CH" --pids "moat=$MOAT,clickhouse=$CHPID" --markdown "$OUT/$PREFIX$rate.md" >/dev/null || status=1
	grep -E 'Achieved|Ingest latency|End-to-end lag|Lost|Result|^\| (POST|GET) ' "$OUT/$PREFIX$rate.md" >&2
done
exit $status
