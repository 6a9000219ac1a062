#!/usr/bin/env bash
# Scale benchmark (docs/cluster.md, "Scale"): an N-node Keel cluster (default 16) formed in the
# netns lab by `keel cluster init` and N-1 `keel join`s, then measured — formation time per
# join, `keel cluster status` latency against corosync-quorumtool and crm_mon on the same node,
# config-store write latency, forwarding, memory per node, and a crashed node fenced with the
# survivors quorate and writable. Not part of scripts/test.sh (about 10 minutes at 16 nodes on
# 2 cores). Run as root; exits non-zero on any functional failure.
#   benches/scale-netns.sh [--nodes N] [--reps R] [--out FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scale-netns.sh: run as root (network namespaces, corosync, Pacemaker)" >&2; exit 1; }
for t in corosync pacemakerd crm_mon corosync-quorumtool curl nsenter; do
    command -v "$t" >/dev/null || { echo "scale-netns.sh: $t is missing (scripts/setup.sh installs the lab's packages)" >&2; exit 1; }
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build -p keel-hostd -p keel-cli -p keel-clusterd -p keel-tests --bins
exec "$CARGO_TARGET_DIR/debug/keel-bench-scale" "$@"
