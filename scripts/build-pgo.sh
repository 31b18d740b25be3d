#!/usr/bin/env bash
# build-pgo.sh — the shipping build of the node: a profile-guided (PGO)
# release binary of `shardwatch`, trained on the load harness's mixed
# stream.
#
# Steps: build an instrumented binary, run it over a generated corpus
# (`shardwatch replay`, built-in rules and the harness's scenario rules)
# and as a node fed by `shardwatch-load bench` (TCP flat out, TCP at a
# fixed rate with the scenario rules, UDP), merge the profiles with the
# toolchain's own `llvm-profdata`, and build again using them.
#
# The training corpus is generated with its own seed and entity count
# (`TRAIN_SEED`, `TRAIN_ENTITIES`), not the defaults the benchmarks use, so
# a benchmark of the result does not replay the very lines it was trained
# on. Lines unlike the generator's mix (another vendor's format, say) are
# still parsed by the same code; PGO only moves what was never run out of
# the hot layout, it changes no behaviour.
#
# Run: bash scripts/build-pgo.sh    (about 10 minutes on 2 cores)
# Result: target/pgo/release/shardwatch (same CLI, same tests' behaviour).
# Knobs (environment): TRAIN_EVENTS (300000 lines replayed),
# BENCH_EVENTS (1000000 lines sent to the node), TRAIN_SEED (7),
# TRAIN_ENTITIES (1000), CHECK_EVENTS (100000 lines of the final check),
# EXTRA_RUSTFLAGS (added to both builds, e.g. "-Ctarget-cpu=x86-64-v3" for
# servers that all have AVX2; the default build runs on any x86-64),
# TRAIN_CORPUS (a file of the site's own syslog lines, one per line, also
# replayed in training, so the profile weighs the formats it really gets).
# Last, it checks that the result raises the same alerts as the build
# without the profile over a corpus the training did not see.
# Needs the `llvm-tools` rustup component (installed here if missing).
set -euo pipefail
# A relative TRAIN_CORPUS is relative to where the script was started.
if [ -n "${TRAIN_CORPUS:-}" ]; then TRAIN_CORPUS=$(realpath -m "$TRAIN_CORPUS"); fi
cd "$(dirname "$0")/.."
root=$(pwd)

TRAIN_EVENTS=${TRAIN_EVENTS:-300000}
BENCH_EVENTS=${BENCH_EVENTS:-1000000}
TRAIN_SEED=${TRAIN_SEED:-7}
TRAIN_ENTITIES=${TRAIN_ENTITIES:-1000}
CHECK_EVENTS=${CHECK_EVENTS:-100000}
EXTRA_RUSTFLAGS=${EXTRA_RUSTFLAGS:-}
TRAIN_CORPUS=${TRAIN_CORPUS:-}

bash scripts/setup.sh
if ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
  rustup component add llvm-tools
fi
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata=$sysroot/lib/rustlib/$host/bin/llvm-profdata
[ -x "$profdata" ] || { echo "build-pgo: $profdata missing (rustup component add llvm-tools)" >&2; exit 1; }

work=$root/target/pgo-train
profiles=$work/profiles
rm -rf "$work"
mkdir -p "$profiles"

echo "build-pgo: 1/4 the harness and an instrumented node" >&2
cargo build --release --locked -p shardwatch-perf
RUSTFLAGS="-Cprofile-generate=$profiles $EXTRA_RUSTFLAGS" \
  cargo build --release --locked -p shardwatch --target-dir target/pgo-instrumented
instrumented=target/pgo-instrumented/release/shardwatch
load=target/release/shardwatch-load

echo "build-pgo: 2/4 training (replay and a node under load)" >&2
# A step's output goes to its log, shown only if the step fails.
quietly() {
  local log=$1
  shift
  "$@" >"$work/$log.log" 2>&1 || { cat "$work/$log.log" >&2; echo "build-pgo: $* failed" >&2; exit 1; }
}
corpus=$work/corpus.log
quietly gen "$load" gen --out "$corpus" --events "$TRAIN_EVENTS" --seed "$TRAIN_SEED" \
  --entities "$TRAIN_ENTITIES"
if [ -n "$TRAIN_CORPUS" ]; then
  # A site's own lines, replayed as well as the generated mix.
  [ -s "$TRAIN_CORPUS" ] || { echo "build-pgo: TRAIN_CORPUS $TRAIN_CORPUS is missing or empty" >&2; exit 1; }
  quietly replay-site "$instrumented" replay "$TRAIN_CORPUS"
fi
quietly replay "$instrumented" replay "$corpus"
quietly replay-scenarios "$instrumented" replay --rules perf/rules/scenarios.yml "$corpus"
quietly bench-tcp "$load" bench --binary "$instrumented" --cores 1 --transport tcp \
  --rate max --events "$BENCH_EVENTS" --rules none --out "$work/tcp" --quiet
quietly bench-scenarios "$load" bench --binary "$instrumented" --cores 1 --transport tcp \
  --rate 50000 --duration 5s --rules perf/rules/scenarios.yml --out "$work/scenarios" --quiet
quietly bench-udp "$load" bench --binary "$instrumented" --cores 1 --transport udp \
  --rate max --events "$((BENCH_EVENTS / 4))" --rules none --out "$work/udp" --quiet
ls "$profiles"/*.profraw >/dev/null 2>&1 || { echo "build-pgo: the training wrote no profile" >&2; exit 1; }

echo "build-pgo: 3/4 merging profiles" >&2
"$profdata" merge -o "$work/merged.profdata" "$profiles"

echo "build-pgo: 4/4 the optimised build" >&2
RUSTFLAGS="-Cprofile-use=$work/merged.profdata $EXTRA_RUSTFLAGS" \
  cargo build --release --locked -p shardwatch --target-dir target/pgo

# The same alerts as the code built without the profile (the instrumented
# binary), over a corpus the training did not see (the generator's
# defaults), wall-clock fields aside.
echo "build-pgo: checking the result against the instrumented build" >&2
check=$work/check.log
quietly gen-check "$load" gen --out "$check" --events "$CHECK_EVENTS"
alerts() {
  "$1" replay --rules perf/rules/scenarios.yml "$check" 2>/dev/null |
    sed -e 's/"detected_at":"[^"]*"//' -e 's/"latency_us":[0-9]*//'
}
alerts "$instrumented" >"$work/check-instrumented.jsonl"
alerts target/pgo/release/shardwatch >"$work/check-pgo.jsonl"
[ -s "$work/check-pgo.jsonl" ] || { echo "build-pgo: the check corpus raised no alerts" >&2; exit 1; }
if ! cmp -s "$work/check-instrumented.jsonl" "$work/check-pgo.jsonl"; then
  echo "build-pgo: the PGO build's alerts differ from the instrumented build's:" >&2
  diff "$work/check-instrumented.jsonl" "$work/check-pgo.jsonl" | head -20 >&2
  exit 1
fi
# It says what it is (engine/build.rs reads the flags).
version=$(target/pgo/release/shardwatch --version)
case $version in
  *profile-guided*) ;;
  *) echo "build-pgo: the result does not say it is profile-guided: $version" >&2; exit 1 ;;
esac
echo "build-pgo: built target/pgo/release/shardwatch ($(wc -l <"$work/check-pgo.jsonl") alerts over $CHECK_EVENTS lines, as the instrumented build): $version" >&2
