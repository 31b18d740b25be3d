#!/usr/bin/env bash
# Installs what building and testing shardwatch needs on a fresh Debian
# machine. Safe to run again: it only installs what is missing.
set -euo pipefail

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# The interop tests use a real rsyslog as the syslog client.
command -v rsyslogd >/dev/null 2>&1 || [ -x /usr/sbin/rsyslogd ] || need_apt+=(rsyslog)
# The RELP interop test uses rsyslog's omrelp output module.
ls /usr/lib/*/rsyslog/omrelp.so /usr/lib/rsyslog/omrelp.so >/dev/null 2>&1 || need_apt+=(rsyslog-relp)
# The keepalive test puts a sender in a network namespace (ip netns).
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "setup: missing ${need_apt[*]}; install them (apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy || true
