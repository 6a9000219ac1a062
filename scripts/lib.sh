# Shared by setup.sh and test.sh: install what Keel needs on Debian 12 and start the daemons
# that systemd would start on a real node. Sourced, not run.

KEEL_APT_PACKAGES=(
  build-essential pkg-config ca-certificates curl
  libvirt-dev libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
  qemu-system-x86 ovmf dnsmasq-base iptables iproute2
  xorriso isolinux syslinux-common busybox-static cpio
  # clusterd links corosync's client libraries (rust-corosync)
  libcpg-dev libquorum-dev libvotequorum-dev libcmap-dev libcfg-dev libcorosync-common-dev
  # the installer ISO: hybrid BIOS+UEFI with grub-mkrescue, the node rootfs as squashfs
  grub-pc-bin grub-efi-amd64-bin grub2-common mtools squashfs-tools dosfstools gdisk
  # hostd's sftp backup targets link the system libssh2 (ssh2 crate, found by pkg-config)
  libssh2-1-dev
)
# What a node runs besides libvirt/QEMU (the same engines the installer puts on a node,
# iso/installer/packages.txt): the cluster stack, cluster storage, fencing, time, and the NFS
# client for nfs backup targets. Installing them starts no daemon; Keel starts them when a
# cluster, a pool or a fence device needs them.
KEEL_NODE_APT_PACKAGES=(corosync corosync-qdevice pacemaker pacemaker-cli-utils resource-agents fence-agents
  drbd-utils lvm2 thin-provisioning-tools lvm2-lockd dlm-controld gfs2-utils open-iscsi targetcli-fb sbd chrony nfs-common)
# Only the tests need these: a browser (Debian's; the test tools never download one) and the
# cluster stack the netns lab runs, and what builds and drives the VM lab's node image.
KEEL_TEST_APT_PACKAGES=(chromium corosync pacemaker pacemaker-cli-utils resource-agents fence-agents corosync-qnetd corosync-qdevice debootstrap socat e2fsprogs openssh-client chrony openssl
  # keel-storage's engine tests: drbd-utils' own parser, LVM and mkfs.gfs2 on loop devices
  drbd-utils lvm2 gfs2-utils
  # the sftp backup target's tests start their own sshd on loopback (vm_backups, ui_e2e)
  openssh-server
  # the VM lab's emulated BMCs (virtualbmc, sushy-tools) drive libvirt from Debian's Python
  python3-libvirt python3-venv ipmitool
  # the install lab's NFS server for nfs backup targets (userspace: the host kernel has no nfsd)
  nfs-ganesha nfs-ganesha-vfs)

# Each line carries the seconds since the script started (bash's SECONDS), so a CI log shows
# where its time went.
log() { printf '\033[1m==> [%5ds] %s\033[0m\n' "$SECONDS" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

keel_install_deps() {
  [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts libvirtd)"
  local missing=() wanted=("${KEEL_APT_PACKAGES[@]}" "${KEEL_NODE_APT_PACKAGES[@]}" "$@")
  command -v node >/dev/null || wanted+=(nodejs npm)
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # qemu-img: any version will do. Listing qemu-utils above would make apt refuse when a
  # newer backport is already installed, so only install it when the command is missing.
  if ! command -v qemu-img >/dev/null; then
    log "installing qemu-utils"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-utils >/dev/null
  fi
  if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] || {
      log "installing Rust with rustup"
      curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy -c rustfmt >/dev/null \
        || die "no cargo, and rustup could not be fetched: install a Rust toolchain (1.80+) and rerun"
    }
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  keel_need_node 20 "the web UI build (Vite 8)"
}

# Build outputs live outside the clone, so a fresh clone (CI) reuses the compiled dependencies
# of the last run: cargo still rebuilds whatever changed (it fingerprints every input). An
# explicit CARGO_TARGET_DIR wins. The cache is dropped when it passes KEEL_TARGET_CACHE_GIB
# (default 20), so incremental leftovers cannot fill the disk.
keel_cargo_target_cache() {
  if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR=/var/cache/keel/cargo-target
  fi
  mkdir -p "$CARGO_TARGET_DIR"
  local kib
  kib=$(du -sk "$CARGO_TARGET_DIR" | cut -f1)
  if [ "$kib" -gt $(( ${KEEL_TARGET_CACHE_GIB:-20} * 1024 * 1024 )) ]; then
    log "cargo target cache $CARGO_TARGET_DIR is $((kib / 1024 / 1024)) GiB: starting it afresh"
    rm -rf "$CARGO_TARGET_DIR" && mkdir -p "$CARGO_TARGET_DIR"
  fi
  log "cargo target dir: $CARGO_TARGET_DIR"
}

# keel_need_node MAJOR WHAT: the UI's build and test tools need Node.js 20 (Debian 12 ships 18:
# install 20 from another source first).
keel_need_node() {
  local major
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  [ "$major" -ge "$1" ] || die "$2 needs Node.js $1 or newer (found $(node --version 2>/dev/null || echo none))"
}

# ksvalidator (pykickstart, PyPI only) checks the installer's RHEL kickstarts in the tests:
# into the machine's Python when pip may install there (pyenv), else into a venv of ours
# (Debian's own Python refuses pip installs).
keel_install_ksvalidator() {
  command -v ksvalidator >/dev/null && return 0
  log "installing pykickstart (ksvalidator)"
  if python3 -m pip install -q pykickstart 2>/dev/null; then
    if command -v pyenv >/dev/null; then pyenv rehash; fi
  fi
  command -v ksvalidator >/dev/null && return 0
  python3 -m venv --help >/dev/null 2>&1 \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  python3 -m venv /var/cache/keel/pyvenv
  /var/cache/keel/pyvenv/bin/pip install -q pykickstart
  ln -sf /var/cache/keel/pyvenv/bin/ksvalidator /usr/local/bin/ksvalidator
  command -v ksvalidator >/dev/null || die "ksvalidator is missing after installing pykickstart"
}

# schemathesis (PyPI only) checks the live API against its OpenAPI document in the tests: into
# the machine's Python when pip may install there, else into the same venv as ksvalidator.
keel_install_schemathesis() {
  command -v schemathesis >/dev/null && return 0
  log "installing schemathesis"
  if python3 -m pip install -q schemathesis 2>/dev/null; then
    if command -v pyenv >/dev/null; then pyenv rehash; fi
  fi
  command -v schemathesis >/dev/null && return 0
  python3 -m venv --help >/dev/null 2>&1 \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  [ -x /var/cache/keel/pyvenv/bin/pip ] || python3 -m venv /var/cache/keel/pyvenv
  /var/cache/keel/pyvenv/bin/pip install -q schemathesis
  ln -sf /var/cache/keel/pyvenv/bin/schemathesis /usr/local/bin/schemathesis
  command -v schemathesis >/dev/null || die "schemathesis is missing after installing it"
}

# The VM lab's emulated BMCs (tests/src/bmc.rs): virtualbmc (IPMI) and sushy-tools (Redfish),
# PyPI only, in a venv on Debian's Python (/usr/bin/python3) that sees its python3-libvirt.
# Pinned; the venv is rebuilt when the pins change.
KEEL_BMC_PINS="virtualbmc==3.3.0 sushy-tools==2.2.0"
keel_bmc_venv() {
  local v=${KEEL_BMC_VENV:-/var/cache/keel/bmc-venv}
  [ "$(cat "$v/.pins" 2>/dev/null)" = "$KEEL_BMC_PINS" ] && [ -x "$v/bin/vbmcd" ] && return 0
  log "installing $KEEL_BMC_PINS into $v"
  rm -rf "$v"
  /usr/bin/python3 -m venv --system-site-packages "$v"
  # shellcheck disable=SC2086
  "$v/bin/pip" install -q $KEEL_BMC_PINS
  "$v/bin/python" -c 'import libvirt, virtualbmc, sushy_tools, bcrypt' \
    || die "the BMC venv $v cannot import libvirt/virtualbmc/sushy_tools/bcrypt (python3-libvirt installed?)"
  echo "$KEEL_BMC_PINS" > "$v/.pins"
}

# Build the web UI into ui/dist (npm ci: exactly the versions in package-lock.json).
keel_build_ui() {
  (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent) >&2
}

# Without udev, /dev/kvm stays root-only 0600. libvirt then finds KVM "enabled when probing
# but not available now" and re-probes QEMU on every API call (minutes per call). A real
# node's udev rule makes it root:kvm 0660; do the same. Whether guests may *use* KVM is
# decided separately by hostd's probe.
keel_fix_kvm_node() {
  if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  fi
}

keel_start_libvirt() {
  keel_fix_kvm_node
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl start virtlogd.socket libvirtd.socket libvirtd.service
  else
    # No systemd here: start the daemons ourselves, once.
    pgrep -x virtlogd >/dev/null || /usr/sbin/virtlogd -d
    pgrep -x libvirtd >/dev/null || /usr/sbin/libvirtd -d
  fi
  for _ in $(seq 100); do
    virsh -c qemu:///system version >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "libvirtd did not come up (see /var/log/libvirt/libvirtd.log)"
}

# Debian defines libvirt's `default` NAT network but leaves it stopped, and a VM on it is refused
# at create: start it and start it at boot, so `--net network=default` works. A network that
# cannot start (its 192.168.122.0/24 already used on the host) stops setup with libvirt's reason.
keel_default_network() {
  local v="virsh -q -c qemu:///system"
  if ! $v net-info default >/dev/null 2>&1; then
    [ -f /usr/share/libvirt/networks/default.xml ] \
      || die "libvirt has no network named default and no /usr/share/libvirt/networks/default.xml to define it from"
    log "defining libvirt's default network"
    $v net-define /usr/share/libvirt/networks/default.xml >/dev/null
  fi
  if ! $v net-info default | grep -Eq '^Active:[[:space:]]+yes'; then
    log "starting libvirt's default network"
    $v net-start default >/dev/null || die "libvirt's default network does not start (see above); fix it or remove it with 'virsh net-undefine default'"
  fi
  if ! $v net-info default | grep -Eq '^Autostart:[[:space:]]+yes'; then
    $v net-autostart default >/dev/null
  fi
}
