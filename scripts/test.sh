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
log "cargo test"
cargo test --workspace
