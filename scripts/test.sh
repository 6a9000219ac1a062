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
keel_bmc_venv
keel_start_libvirt

# The cloud-init test guest (hostd/tests/vm_cloudinit.rs) is debootstrap'd on a cache miss
# (~3 min, mostly downloads and dpkg): start it now, beside the builds. The test runs the same
# script, which waits on the cache's lock and then finds the image.
log "cloud-init test guest: iso/cloud-guest/build.sh in the background (cache hit: instant)"
bash iso/cloud-guest/build.sh >/dev/null 2>&1 &

log "web UI: build and unit tests"
keel_build_ui
(cd ui && npm test --silent)

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "cargo build (every binary: the installer ISO and the VM lab's node image carry keel-hostd and keel)"
cargo build --workspace --bins
# Every test binary is compiled before any runs, so the runs below never wait on cargo's lock.
# (Compiling beside the install lab's guests was tried: rustc and TCG slowed each other down so
# much that the suite took longer.)
log "cargo test: compile every test binary"
cargo test --workspace --no-run --quiet
# The lab crate's test binaries by name (already built: cargo only names them). The labs that
# run beside something else run these directly: cargo holds its lock for as long as a `cargo
# test` runs, so two of them never run at once.
declare -A lab_bin
while read -r name path; do
    lab_bin[$name]=$path
done < <(cargo test -p keel-tests --tests --no-run 2>&1 |
    sed -n 's/^ *Executable tests\/\([a-z0-9_]*\)\.rs (\(.*\))$/\1 \2/p')
for t in tests/tests/*.rs; do
    t=$(basename "$t" .rs)
    [[ -x ${lab_bin[$t]:-} ]] || die "cargo did not name the $t test binary"
done
# run_labs NAME...: the lab test binaries one after the other, each line prefixed [NAME];
# fails if any failed, after running all of them
run_labs() {
    local rc=0 t
    for t in "$@"; do
        (
            set -o pipefail
            cd tests && "${lab_bin[$t]}" --nocapture 2>&1 | sed -u "s/^/[$t] /"
        ) || rc=1
    done
    return "$rc"
}

# The install lab (two unattended TCG installs, one after the other: ~17 min) keeps one core
# busy and mostly waits on its guests; its binary runs without cargo, so cargo's lock never
# waits on it. Beside it: the tests of every other crate (unit, golden, and the single-node
# end-to-end tests, whose waits are generous). (vmlab_iscsi, the raw LIO/open-iscsi check, is
# by hand now: the Keel VM lab's iSCSI pools drive the same engines.) On the core the install
# lab used, the Keel VM lab (vmlab_keel_cluster, its TCG nodes busy most of ~40 min: the
# suite's critical path) follows it at once; on the other core the netns labs run after the
# crate tests, one after the other: their nodes are processes in namespaces that mostly wait on
# timers (corosync runs with real-time priority), and their waits are generous enough for a
# loaded host. The labs' own step lines (with their seconds) are shown, not captured: the log
# says where a lab spent its time.
# Every group runs even if an earlier one fails; the script fails if any did.
status=0

log "vmlab_install starts in the background (its lines are prefixed [vmlab_install]), then vmlab_keel_cluster"
(
    rc=0
    run_labs vmlab_install || rc=1
    log "vmlab_keel_cluster starts (after vmlab_install; lines prefixed [vmlab_keel_cluster])"
    run_labs vmlab_keel_cluster || rc=1
    exit "$rc"
) &
install_pid=$!

log "cargo test: every crate but the lab tests"
cargo test --no-fail-fast --workspace --exclude keel-tests || status=1

# The crate tests end before the install lab: the three small netns labs (no guests, ~90 s
# together), then the larger ones, run on the core the crate tests used.
small_labs=(netns_cluster netns_corosync_key_rotation netns_daemons)
small_args=()
for t in "${small_labs[@]}"; do small_args+=(--test "$t"); done
log "cargo test: the small netns labs, beside vmlab_install"
cargo test --no-fail-fast -p keel-tests "${small_args[@]}" -- --nocapture || status=1
# the larger netns labs, longest first, each line prefixed with its name
netns_labs=(netns_ha netns_migration netns_keel_cluster netns_store)
log "the netns labs ${netns_labs[*]} (beside vmlab_install, then vmlab_keel_cluster)"
run_labs "${netns_labs[@]}" || status=1

log "waiting for vmlab_install and vmlab_keel_cluster"
wait "$install_pid" || status=1

labs=(--lib)
for f in tests/tests/*.rs; do
    name=$(basename "$f" .rs)
    case " vmlab_install vmlab_iscsi vmlab_keel_cluster ${small_labs[*]} ${netns_labs[*]} " in
    *" $name "*) ;;
    *) labs+=(--test "$name") ;;
    esac
done
log "cargo test: the lab crate's unit tests"
cargo test --no-fail-fast -p keel-tests "${labs[@]}" -- --nocapture || status=1

if [[ $status != 0 ]]; then
    log "FAILED: at least one test group failed (search this log for 'test result: FAILED', 'panicked' or 'error')"
fi
log "done"
exit "$status"
