#!/usr/bin/env bash
# Runs one shardwatch node on its embedded defaults (syslog on UDP and TCP
# 0.0.0.0:5514, data in ./shardwatch-data, built-in rules). Extra arguments
# go to `shardwatch run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ulimit -l unlimited 2>/dev/null || true
ulimit -n 65536 2>/dev/null || true
exec cargo run --release --locked --bin shardwatch -- run "$@"
