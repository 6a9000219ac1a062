#!/usr/bin/env bash
# Pool benchmark (docs/storage.md, "Benchmark"): the VM lab's QMP part (two TCG guests, a
# drbd-gfs2 pool, and an iscsi-gfs2 and an iscsi-lvm pool on LUNs node1 exports) with
# KEEL_POOL_BENCH set, which measures from node1 sequential 1 MiB direct writes and random 4 KiB
# O_DSYNC writes on each GFS2 pool's mount, on an LV of the iscsi-lvm pool and on node1's own
# disk, and prints BENCH lines with the ratios to the local disk. Not part of scripts/test.sh (about 13 minutes). Run as root.
#   benches/pools-vmlab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "pools-vmlab.sh: run as root (QEMU, the VM lab)" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -q -p keel-hostd -p keel-cli -p keel-clusterd --bins
KEEL_POOL_BENCH=1 cargo test -q -p keel-tests --test vmlab_keel_cluster -- --ignored qmp_storage --nocapture 2>&1 \
    | tee /tmp/keel-pools-bench.log | grep -E '^BENCH|^METRIC vm_(drbd|iscsi)|panicked|test result'
