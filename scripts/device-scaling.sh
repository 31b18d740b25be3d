#!/usr/bin/env bash
# device-scaling.sh — what a lent multi-core machine is for (#8): scaling
# beyond the development machine's 2 CPUs, and the per-core and latency
# goals on a machine whose kernel transitions cost what bare metal's do.
# One prepared script, because a device call runs at most 10 minutes and
# a session gets about 15 minutes of device time in all.
#
#   here, first:     scripts/device-scaling.sh prepare
#                    (strips the shipping build, target/pgo/release/
#                    shardwatch or else target/release/shardwatch, and
#                    target/release/shardwatch-load into target/device/,
#                    about 14 MB; build them first)
#   on the device:   the `run` tool with
#                    command "bash scripts/device-scaling.sh run",
#                    carry ["target/device"], timeout_s 590
#
# `run` writes everything under $OUT (the device run's folder that comes
# back): device.txt (the machine, every command and its summary), and a
# folder per step with its report.json, summary.txt and plots. Steps, in
# order of worth, each bounded by `timeout` so that a slow one cannot take
# the ones after it:
#   1. TCP scaling: `scaling --cores 1,2,4,8 --rounds 2 --rate max`, a
#      connection and (auto) a sender thread per core, the built-in pack;
#   2. UDP scaling, the same over UDP sockets;
#   3. `goals --only tcp,latency --rounds 2`: 2 M lines/s per core, and
#      p99 under 1 ms at half the maximum;
#   4. (not in the default STEPS; about 2 minutes) `senders`: UDP flat out
#      at the largest core count with one sender thread and with one per
#      connection, to show how far one thread capped the earlier curves.
# With root, every run steers loopback's receive work to the harness's
# CPUs (`--steer-loopback`), as a deployment's NIC would keep it off the
# node's cores. Knobs (environment): CORES (1,2,4,8), ROUNDS (2),
# TCP_EVENTS (8000000), UDP_EVENTS (4000000), GOAL_TCP_EVENTS (6000000),
# MAX_EVENTS (6000000), PACED_S (10), STEPS ("tcp udp goals"; add
# "senders" where the time allows).
set -uo pipefail

D=target/device
mode=${1:-}

prepare() {
    local bin=target/pgo/release/shardwatch
    [ -x "$bin" ] || bin=target/release/shardwatch
    local load=target/release/shardwatch-load
    if [ ! -x "$bin" ] || [ ! -x "$load" ]; then
        echo "device-scaling: build first: cargo build --release -p shardwatch -p shardwatch-perf (scripts/build-pgo.sh for the PGO build)" >&2
        exit 1
    fi
    mkdir -p "$D"
    strip -o "$D/shardwatch" "$bin"
    strip -o "$D/shardwatch-load" "$load"
    {
        echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
        echo "node $bin: $("$bin" --version)"
        echo "harness $load"
    } > "$D/build.txt"
    cat "$D/build.txt"
    du -sh "$D"
}

step() {
    # step NAME SECONDS COMMAND...: runs one step under timeout, logs it,
    # appends its summary.
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date -u +%H:%M:%S) UTC, at most ${limit} s): $*"
    local t0=$SECONDS
    timeout --signal=TERM --kill-after=15 "$limit" "$@" > "$OUT/$name.stdout" 2> "$OUT/$name.stderr"
    local rc=$?
    echo "-- $name: exit $rc after $((SECONDS - t0)) s"
    if [ -f "$OUT/$name/summary.txt" ]; then
        cat "$OUT/$name/summary.txt"
    else
        tail -20 "$OUT/$name.stderr"
    fi
}

run() {
    : "${OUT:?set by the device run: the folder that comes back}"
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/device.txt") 2>&1
    local L=$D/shardwatch-load B=$D/shardwatch
    echo "== machine ($(date -u +%FT%TZ))"
    uname -r
    nproc
    lscpu | grep -E "^(Model name|Socket|Thread|Core|NUMA node\(s\)|Hypervisor)" || true
    cat /proc/cmdline
    free -g | head -2
    cat /sys/module/haltpoll/parameters/guest_halt_poll_ns 2>/dev/null || echo "no haltpoll"
    echo "== build"
    cat "$D/build.txt"
    if ! "$B" --version || ! "$L" --version; then
        echo "device-scaling: the binaries do not run here (glibc older than 2.34?)"
        exit 1
    fi
    local steer=()
    if [ -w /sys/class/net/lo/queues/rx-0/rps_cpus ]; then
        steer=(--steer-loopback)
    fi
    local cores=${CORES:-1,2,4,8} rounds=${ROUNDS:-2}
    for s in ${STEPS:-tcp udp goals}; do
        case $s in
        tcp)
            step scaling-tcp 230 "$L" scaling --binary "$B" --cores "$cores" --rounds "$rounds" \
                --transport tcp --rate max --events "${TCP_EVENTS:-8000000}" --rules none \
                --scenarios none "${steer[@]}" --out "$OUT/scaling-tcp" --quiet
            ;;
        udp)
            step scaling-udp 150 "$L" scaling --binary "$B" --cores "$cores" --rounds "$rounds" \
                --transport udp --rate max --events "${UDP_EVENTS:-4000000}" --rules none \
                --scenarios none "${steer[@]}" --out "$OUT/scaling-udp" --quiet
            ;;
        goals)
            step goals 170 "$L" goals --binary "$B" --only tcp,latency --rounds "$rounds" \
                --tcp-events "${GOAL_TCP_EVENTS:-6000000}" --max-events "${MAX_EVENTS:-6000000}" \
                --paced-s "${PACED_S:-10}" "${steer[@]}" \
                --out "$OUT/goals" --quiet
            ;;
        senders)
            local most=${cores##*,}
            for threads in 1 auto; do
                step "senders-$threads" 60 "$L" bench --binary "$B" --cores "$most" \
                    --connections "$most" --sender-threads "$threads" --transport udp \
                    --rate max --events "${UDP_EVENTS:-4000000}" --rules none \
                    --scenarios none "${steer[@]}" --out "$OUT/senders-$threads" --quiet
            done
            ;;
        *)
            echo "device-scaling: unknown step $s"
            ;;
        esac
    done
    # The reports come back; the data dirs were the harness's scratch.
    echo "== done ($(date -u +%H:%M:%S) UTC)"
}

case $mode in
prepare) prepare ;;
run) run ;;
*)
    echo "usage: scripts/device-scaling.sh prepare|run (see the comment at its top)" >&2
    exit 2
    ;;
esac
