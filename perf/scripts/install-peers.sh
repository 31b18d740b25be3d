#!/bin/sh
# Installs the peers that `shardwatch-load peers` compares shardwatch with:
#
#   rsyslog  - installed as a normal Debian package (/usr/sbin/rsyslogd);
#   sec      - the Simple Event Correlator, a normal package (/usr/bin/sec);
#   syslog-ng - `syslog-ng-core` conflicts with rsyslog as a package, so its
#              .deb is fetched with `apt-get download` and unpacked with
#              `dpkg -x` into $PEERS_DIR/syslog-ng (default
#              /opt/shardwatch-peers/syslog-ng). Its shared libraries that
#              do not conflict are installed as packages; the harness runs
#              it with LD_LIBRARY_PATH and --module-path pointing into the
#              unpacked tree.
#
# Idempotent: what is already there is left alone. Services are not started
# (the packages' init scripts are not needed; the harness starts each peer
# in the foreground with its own generated config).
#
# Usage: perf/scripts/install-peers.sh [PEERS_DIR]
set -eu

PEERS_DIR="${1:-${SHARDWATCH_PEERS_DIR:-/opt/shardwatch-peers}}"
SYSLOG_NG_DIR="$PEERS_DIR/syslog-ng"
export DEBIAN_FRONTEND=noninteractive

need_update=1
apt_update() {
    if [ "$need_update" = 1 ]; then
        apt-get update -q
        need_update=0
    fi
}

# rsyslog and sec as packages.
missing=""
for pkg in rsyslog sec; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
if [ -n "$missing" ]; then
    apt_update
    # policy-rc.d (when present) keeps rsyslog's service from starting;
    # the harness never relies on a system rsyslog.
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
fi

# syslog-ng-core unpacked privately, its libraries as packages.
if [ ! -x "$SYSLOG_NG_DIR/usr/sbin/syslog-ng" ]; then
    apt_update
    apt-get install -y -q --no-install-recommends \
        libcap2 libglib2.0-0 libivykis0 libjson-c5 libnet1 libpcre3 \
        libssl3 libsystemd0 libwrap0
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get download syslog-ng-core)
    mkdir -p "$SYSLOG_NG_DIR"
    dpkg -x "$work"/syslog-ng-core_*.deb "$SYSLOG_NG_DIR"
fi

# Report what is there, and how to run syslog-ng from the private tree.
echo "rsyslogd:  $(command -v rsyslogd || echo /usr/sbin/rsyslogd)"
echo "sec:       $(command -v sec || echo missing)"
echo "syslog-ng: $SYSLOG_NG_DIR/usr/sbin/syslog-ng"
LD_LIBRARY_PATH="$SYSLOG_NG_DIR/usr/lib/syslog-ng" \
    "$SYSLOG_NG_DIR/usr/sbin/syslog-ng" --version | head -n 1
