#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and golden tests, and the end-to-end tests
# that drive real libvirtd/QEMU (TCG) guests through hostd. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

keel_install_deps "${KEEL_TEST_APT_PACKAGES[@]}"
keel_cargo_target_cache
keel_install_ksvalidator
keel_install_schemathesis
keel_start_libvirt

log "web UI: build and unit tests"
keel_build_ui
(cd ui && npm test --silent)

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "cargo build (every binary: the VM lab's node image carries keel-hostd and keel)"
cargo build --workspace --bins
# Every test binary is compiled before any runs, so the runs below never wait on cargo's lock.
log "cargo test: compile every test binary"
cargo test --workspace --no-run --quiet

# The install lab (two unattended TCG installs, one after the other: ~20 min) keeps one core
# busy and mostly waits on its guests; it runs alongside the tests of every other crate (unit,
# golden, and the single-node end-to-end tests, whose waits are generous). The timing-sensitive
# netns labs (corosync tokens of 1 s) and the other VM labs run after it, one at a time.
# Every group runs even if an earlier one fails; the script fails if any did.
status=0
log "cargo test: vmlab_install starts in the background (its lines are prefixed [vmlab_install])"
(
    set -o pipefail
    cargo test --no-fail-fast -p keel-tests --test vmlab_install 2>&1 | sed -u 's/^/[vmlab_install] /'
) &
install_pid=$!

log "cargo test: every crate but the lab tests"
cargo test --no-fail-fast --workspace --exclude keel-tests || status=1

log "cargo test: waiting for vmlab_install"
wait "$install_pid" || status=1

labs=(--lib)
for f in tests/tests/*.rs; do
    [[ $f == */vmlab_install.rs ]] || labs+=(--test "$(basename "$f" .rs)")
done
log "cargo test: the lab crate's unit tests, the netns labs and the other VM labs"
cargo test --no-fail-fast -p keel-tests "${labs[@]}" || status=1

if [[ $status != 0 ]]; then
    log "FAILED: at least one test group failed (search this log for 'test result: FAILED' or 'panicked')"
fi
exit "$status"
