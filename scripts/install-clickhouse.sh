#!/usr/bin/env bash
# Installs a ClickHouse server for `moat dev` and the tests (internal/chserver
# runs it as a child process; nothing here starts it).
#
# Uses Debian's clickhouse-server/clickhouse-client packages (18.16 on
# bookworm). Idempotent and silent when a server binary is already present.
# The package's own system service is never started: a policy-rc.d denies
# service starts while the package installs, and the service is stopped and
# disabled afterwards in case anything started it anyway.
set -euo pipefail

# The same places internal/chserver looks (FindBinary). `command -v` alone
# is not enough: bash reports a non-executable file when nothing better is
# on PATH.
have_server() {
	local p
	for p in "$(command -v clickhouse-server || true)" "$(command -v clickhouse || true)" \
		/usr/sbin/clickhouse-server /usr/bin/clickhouse-server /usr/local/bin/clickhouse-server \
		/usr/bin/clickhouse /usr/local/bin/clickhouse; do
		if [ -n "$p" ] && [ -f "$p" ] && [ -x "$p" ]; then
			return 0
		fi
	done
	return 1
}

if have_server; then
	exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
	SUDO=()
elif command -v sudo >/dev/null 2>&1; then
	SUDO=(sudo)
else
	echo "install-clickhouse: ClickHouse is missing and installing it needs root (no sudo found)." >&2
	echo "install-clickhouse: run as root: apt-get install clickhouse-server clickhouse-client" >&2
	exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-clickhouse: no apt-get here; install clickhouse-server by other means." >&2
	exit 1
fi

echo "install-clickhouse: installing clickhouse-server and clickhouse-client with apt-get" >&2

# Deny service starts during the install (invoke-rc.d honours policy-rc.d),
# unless a policy is already in place, which we leave alone.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
	"${SUDO[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
	own_policy=1
fi
cleanup() {
	if [ "$own_policy" -eq 1 ]; then
		"${SUDO[@]}" rm -f "$policy"
	fi
}
trap cleanup EXIT

"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	clickhouse-server clickhouse-client >/dev/null

# Be defensive: whatever the init system, leave no packaged service running
# or enabled. Moat runs its own server process per directory.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	"${SUDO[@]}" systemctl disable --now clickhouse-server >/dev/null 2>&1 || true
elif [ -x /etc/init.d/clickhouse-server ]; then
	"${SUDO[@]}" /etc/init.d/clickhouse-server stop >/dev/null 2>&1 || true
	if command -v update-rc.d >/dev/null 2>&1; then
		"${SUDO[@]}" update-rc.d clickhouse-server disable >/dev/null 2>&1 || true
	fi
fi

if ! have_server; then
	echo "install-clickhouse: apt-get finished but no clickhouse-server binary was found" >&2
	exit 1
fi
echo "install-clickhouse: installed $(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)" >&2
