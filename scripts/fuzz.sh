#!/usr/bin/env bash
# Runs one Go fuzz target for FUZZTIME and fails on a real finding.
#   scripts/fuzz.sh FuzzDecode ./ingest/ 15s
# Go 1.26's fuzz coordinator can fail a run at the -fuzztime boundary with a
# bare "context deadline exceeded" when a loaded machine delays its workers
# (go.dev/issue/75804, fixed in Go 1.27). Such a run wrote no failing input:
# it is retried once, and passes if it again ends with nothing but that
# deadline. A failing input (a crash, a property violated, a hang) always
# fails, and the input is left in testdata/fuzz/<target>/ to reproduce it.
set -uo pipefail
target=$1 pkg=$2 fuzztime=$3
GO="${GO:-go}"
corpus="$pkg/testdata/fuzz/$target"
count() { find "$corpus" -type f 2>/dev/null | wc -l; }
for attempt in 1 2; do
	before=$(count)
	out=$("$GO" test -run='^$' -fuzz="^$target\$" -fuzztime="$fuzztime" "$pkg" 2>&1)
	status=$?
	printf '%s\n' "$out" | tail -n 4
	[ $status -eq 0 ] && exit 0
	if [ "$(count)" -eq "$before" ] && ! grep -q 'Failing input written' <<<"$out" &&
		grep -q '^    context deadline exceeded$' <<<"$out" &&
		[ "$(grep -c -- '--- FAIL' <<<"$out")" -eq 1 ]; then
		echo "fuzz: $target: only the coordinator's deadline (go.dev/issue/75804), no failing input (attempt $attempt)" >&2
		[ $attempt -eq 2 ] && exit 0
		continue
	fi
	printf '%s\n' "$out" >&2
	exit $status
done
