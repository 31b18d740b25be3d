#!/usr/bin/env bash
# The test command: set up a fresh machine, then run every test in the
# workspace (unit, golden, end-to-end against the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# glommio registers io_uring buffers in locked memory; as root the binary
# raises the limit itself, otherwise the shell limit must allow it.
ulimit -l unlimited 2>/dev/null || true
ulimit -n 65536 2>/dev/null || true
cargo test --workspace --locked -- --test-threads 2
