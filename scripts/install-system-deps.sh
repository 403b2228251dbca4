#!/usr/bin/env bash
# Install the Debian packages a make target needs, if they are missing.
#
# Usage: scripts/install-system-deps.sh GROUP...   (groups: scripts/system-packages/*.txt)
#
# Uses the host's own apt sources. Daemons pulled in here (haproxy, keepalived, etcd) are
# only used as binaries and validators by the tests, so no service may start on install: a
# policy-rc.d that forbids it is put in place for the duration if the host has none.
set -euo pipefail
cd "$(dirname "$0")/.."

want=()
for group in "$@"; do
    list="scripts/system-packages/$group.txt"
    [ -f "$list" ] || { echo "install-system-deps: no package list $list" >&2; exit 2; }
    while read -r pkg _; do
        [ -z "$pkg" ] || [ "${pkg:0:1}" = "#" ] && continue
        want+=("$pkg")
    done <"$list"
done

missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: missing ${missing[*]}; run as root (or install them) first" >&2
    exit 1
fi

echo "[system] installing: ${missing[*]}"
made_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
fi
cleanup() { [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d; return 0; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
