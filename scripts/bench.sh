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
# SPLIT=1 runs every role as its own process instead of `moat dev`:
# `moat broker` (kfake, persisted in the data dir), a ClickHouse server, and
# `moat ingest`, `scorer`, `projector`, `webhooker` and `api`, so that the
# report has CPU and RSS per role. The load goes to ingest; PREFIX defaults
# to split-. The devices path is not available (it is the api's, and moat
# load has one --url).
#   SPLIT=1 RATES=5000 DURATION=60s scripts/bench.sh
# WARMUP=20s first sends at each rate for that long (same paths, users and
# devices, every event still checked in ClickHouse, report kept as
# <PREFIX><rate>-warmup.md) and then runs the measured DURATION: the
# scorer has then restored every partition and the simulated users come
# back on known devices, as most logins do in production, instead of
# every call being a first sighting on a cold stack.
#   WARMUP=20s PATHS=risk=100 PREFIX=risk-warm- RATES=500 scripts/bench.sh
# INGEST_ONLY=1 (with SPLIT=1) pauses the scorer and projector (SIGSTOP)
# while sending and continues them for the drain: ingest and the broker
# are measured on their own, and every accepted event is still verified in
# ClickHouse afterwards. PREFIX defaults to ingest-.
#   SPLIT=1 INGEST_ONLY=1 RATES=10000 DURATION=60s LOAD_ARGS="--target-p99-latency 25ms" scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RATES="${RATES:-1000 3000 5000}"
DURATION="${DURATION:-60s}"
WARMUP="${WARMUP:-}"
# SEED (moat load --seed) picks the simulated users' devices; with WARMUP
# both runs use one, so the measured run's users come back on the devices
# the warm-up introduced.
SEED="${SEED:-}"
if [ -n "$WARMUP" ] && [ -z "$SEED" ]; then
	SEED=$((RANDOM * 32768 + RANDOM + 1))
fi
OUT="${OUT:-docs/bench}"
PATHS="${PATHS:-}"
SPLIT="${SPLIT:-0}"
INGEST_ONLY="${INGEST_ONLY:-0}"
if [ "$INGEST_ONLY" = 1 ] && [ "$SPLIT" != 1 ]; then
	echo "bench: INGEST_ONLY=1 needs SPLIT=1 (the roles it pauses are processes of their own there)" >&2
	exit 2
fi
if [ "$SPLIT" = 1 ]; then
	if [ "$INGEST_ONLY" = 1 ]; then
		PREFIX="${PREFIX-ingest-}"
	else
		PREFIX="${PREFIX-split-}"
	fi
	case ",$PATHS" in *,devices=* | *,devices.json=*)
		echo "bench: SPLIT=1 sends every call to ingest; the devices path is the api role's (moat load has one --url)" >&2
		exit 2
		;;
	esac
else
	PREFIX="${PREFIX:-}"
fi
LOAD_ARGS="${LOAD_ARGS:-}"
mkdir -p bin "$OUT"
go build -o bin/moat ./cmd/moat
dir="$(mktemp -d)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
HTTP=$(port); KAFKA=$(port); CH=$(port)
SECRET="bench-secret-$(date +%s)-0123456789"
[ -f "${MOAT_DATA_CACHE:-$HOME/.cache/moat}/paths.env" ] && { set -a; . "${MOAT_DATA_CACHE:-$HOME/.cache/moat}/paths.env"; set +a; }

if [ "$SPLIT" != 1 ]; then
	MOAT_API_SECRET="$SECRET" bin/moat dev --data-dir "$dir/data" --http-addr "127.0.0.1:$HTTP" \
		--kafka-port "$KAFKA" --clickhouse-port "$CH" --log-level warn >"$dir/moat.log" 2>&1 &
	MOAT=$!
	trap 'kill $MOAT 2>/dev/null; wait $MOAT 2>/dev/null; rm -rf "$dir"' EXIT
	for _ in $(seq 1 120); do
		curl -fs "http://127.0.0.1:$HTTP/readyz" >/dev/null 2>&1 && break
		sleep 0.5
	done
	CHPID=$(pgrep -f "$dir/data/clickhouse/config.xml" | head -1)
	PIDS="moat=$MOAT,clickhouse=$CHPID"
else
	# The processes of the split stack by name, stopped in this order.
	declare -A PID=()
	ORDER="ingest api scorer projector webhooker broker clickhouse dev"
	cleanup() {
		for name in $ORDER; do
			[ -n "${PID[$name]:-}" ] || continue
			kill "${PID[$name]}" 2>/dev/null || true
			wait "${PID[$name]}" 2>/dev/null || true
		done
		rm -rf "$dir"
	}
	trap cleanup EXIT
	fail() {
		echo "bench: $*" >&2
		for f in "$dir"/*.log; do
			[ -s "$f" ] && { echo "== $(basename "$f") (tail)" >&2; tail -n 20 "$f" >&2; }
		done
		exit 1
	}
	# wait_ok URL WHAT: until URL answers 200, for a minute.
	wait_ok() {
		for _ in $(seq 1 120); do
			curl -fs "$1" >/dev/null 2>&1 && return 0
			sleep 0.5
		done
		fail "$2 not ready ($1)"
	}

	# ClickHouse: `moat dev` writes the server's config (the same as in the
	# default mode) and applies the migrations; it is then stopped and the
	# server started on its own with that config, as chserver starts it.
	DEVHTTP=$(port)
	MOAT_API_SECRET="$SECRET" bin/moat dev --data-dir "$dir/data" --http-addr "127.0.0.1:$DEVHTTP" \
		--kafka-port "$(port)" --clickhouse-port "$CH" --log-level warn >"$dir/bootstrap.log" 2>&1 &
	PID[dev]=$!
	wait_ok "http://127.0.0.1:$DEVHTTP/readyz" "moat dev (ClickHouse bootstrap)"
	kill "${PID[dev]}"
	wait "${PID[dev]}" || true
	unset 'PID[dev]'
	chdir="$dir/data/clickhouse"
	CHHTTP=$(sed -n 's:.*<http_port>\([0-9]*\)</http_port>.*:\1:p' "$chdir/config.xml")
	chbin=""
	chargs=()
	for b in "$(command -v clickhouse-server || true)" /usr/sbin/clickhouse-server /usr/bin/clickhouse-server /usr/local/bin/clickhouse-server; do
		[ -n "$b" ] && [ -x "$b" ] && { chbin=$b; break; }
	done
	if [ -z "$chbin" ]; then
		chbin=$(command -v clickhouse) || fail "no clickhouse-server or clickhouse binary"
		chargs=(server)
	fi
	(cd "$chdir" && exec "$chbin" ${chargs[@]+"${chargs[@]}"} --config-file="$chdir/config.xml") >>"$dir/clickhouse.log" 2>&1 &
	PID[clickhouse]=$!
	wait_ok "http://127.0.0.1:$CHHTTP/ping" "ClickHouse"

	bin/moat broker --data-dir "$dir/kafka" --kafka-port "$KAFKA" --log-level warn >"$dir/broker.log" 2>&1 &
	PID[broker]=$!
	# The default app of moat dev, with the same secret.
	cat >"$dir/apps.json" <<-EOF
		{"apps":[{"id":"default","name":"Default app","secret":"$SECRET","test":true,"allow_private_endpoints":true}]}
	EOF
	ENDPOINTS_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
	# role NAME ARGS...: start `moat NAME ARGS` on the split stack. Topics
	# are not compressed, as in moat dev (loopback).
	role() {
		local name=$1
		shift
		env MOAT_KAFKA_BROKERS="127.0.0.1:$KAFKA" MOAT_KAFKA_COMPRESSION=none \
			MOAT_CLICKHOUSE_ADDR="127.0.0.1:$CH" MOAT_APPS_FILE="$dir/apps.json" \
			MOAT_DEVICE_KEY="bench-device-key-$SECRET" MOAT_ENDPOINTS_KEY="$ENDPOINTS_KEY" \
			MOAT_LOG_LEVEL=warn bin/moat "$name" "$@" >"$dir/$name.log" 2>&1 &
		PID[$name]=$!
	}
	API=$(port); MSC=$(port); MPJ=$(port); MWH=$(port)
	role ingest --http-addr "127.0.0.1:$HTTP"
	role scorer --metrics-addr "127.0.0.1:$MSC"
	role projector --metrics-addr "127.0.0.1:$MPJ"
	role webhooker --metrics-addr "127.0.0.1:$MWH"
	role api --http-addr "127.0.0.1:$API"
	wait_ok "http://127.0.0.1:$HTTP/readyz" "ingest"
	wait_ok "http://127.0.0.1:$API/readyz" "api"
	wait_ok "http://127.0.0.1:$MSC/healthz" "scorer"
	wait_ok "http://127.0.0.1:$MPJ/healthz" "projector"
	wait_ok "http://127.0.0.1:$MWH/healthz" "webhooker"
	# Warm up: a risk call answered by the scorer (it has joined its group)
	# and its event in ClickHouse (so has the projector).
	ok=""
	for _ in $(seq 1 120); do
		code=$(curl -s -o /dev/null -w '%{http_code}' -u ":$SECRET" -H 'Content-Type: application/json' \
			-d '{"type":"$login","status":"$succeeded","user":{"id":"bench-warmup"},"request_token":"warmup","context":{"ip":"192.0.2.1","headers":{"User-Agent":"curl/8"}}}' \
			"http://127.0.0.1:$HTTP/v1/risk" || true)
		[ "$code" = 201 ] && { ok=1; break; }
		sleep 0.5
	done
	[ -n "$ok" ] || fail "the scorer never answered a risk call (last status $code)"
	ok=""
	for _ in $(seq 1 120); do
		n=$(curl -fs "http://127.0.0.1:$CHHTTP/" --data-binary "SELECT count() FROM moat.events WHERE app_id = 'default'" || true)
		[ "${n:-0}" -gt 0 ] 2>/dev/null && { ok=1; break; }
		sleep 0.5
	done
	[ -n "$ok" ] || fail "the warm-up event never reached ClickHouse"
	for name in $ORDER; do
		[ -n "${PID[$name]:-}" ] && { kill -0 "${PID[$name]}" 2>/dev/null || fail "$name exited"; }
	done
	PIDS="broker=${PID[broker]},ingest=${PID[ingest]},scorer=${PID[scorer]},projector=${PID[projector]},webhooker=${PID[webhooker]},api=${PID[api]},clickhouse=${PID[clickhouse]}"
	echo "split stack ready: $PIDS" >&2
	if [ "$INGEST_ONLY" = 1 ]; then
		# The paused roles catch up after sending: give them time.
		LOAD_ARGS="--pause scorer=${PID[scorer]},projector=${PID[projector]} --drain-timeout 15m $LOAD_ARGS"
	fi
fi
# load RATE DURATION REPORT: one `moat load` run against the stack.
load() {
	# shellcheck disable=SC2086 # LOAD_ARGS is a list of flags
	bin/moat load --url "http://127.0.0.1:$HTTP" --secret "$SECRET" --rate "$1" --duration "$2" \
		${PATHS:+--paths "$PATHS"} ${SEED:+--seed "$SEED"} $LOAD_ARGS \
		--clickhouse-addr "127.0.0.1:$CH" --pids "$PIDS" --markdown "$3" >/dev/null
}
status=0
for rate in $RATES; do
	if [ -n "$WARMUP" ]; then
		echo "== warm-up: $rate requests/s for $WARMUP${PATHS:+ ($PATHS)}" >&2
		load "$rate" "$WARMUP" "$OUT/$PREFIX$rate-warmup.md" || status=1
		grep -E 'Lost|^\| (POST|GET) ' "$OUT/$PREFIX$rate-warmup.md" >&2
	fi
	echo "== $rate requests/s for $DURATION${PATHS:+ ($PATHS)}" >&2
	load "$rate" "$DURATION" "$OUT/$PREFIX$rate.md" || status=1
	grep -E 'Achieved|Ingest latency|End-to-end lag|Lost|Result|^\| (POST|GET) ' "$OUT/$PREFIX$rate.md" >&2
done
exit $status
