#!/bin/bash
# Build (or reuse) Keel's lab node image. Prints the image directory on stdout (last line):
#   DIR/rootfs.qcow2  DIR/vmlinuz  DIR/initramfs.gz  DIR/manifest.json
# Cache: ${KEEL_NODE_IMAGE_CACHE:-/var/cache/keel/node-image}/<content-hash>/, keyed by the sha256
# of every recipe file (this directory + the in-guest fence agent) and of Keel's binaries
# (keel-hostd, keel, keel-clusterd from target/release or target/debug, installed at /usr/local/bin). A miss always rebuilds; the
# result is renamed into place atomically. Stage 1 (debootstrap) is cached by the hash of
# packages.txt + this script's DEBOOTSTRAP_REV, so config-only edits rebuild in seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
agent=$repo/tests/vmlab/fence_keel_lab
cache=${KEEL_NODE_IMAGE_CACHE:-/var/cache/keel/node-image}
suite=bookworm
mirror=${KEEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBOOTSTRAP_REV=1
log() { echo "[node-image] $*" >&2; }

# Keel's own binaries, installed at /usr/local/bin in the config stage: target/release if present
# and newer than target/debug, else target/debug. Their content hash is part of the image key
# (not of the debootstrap key), so a code change rebuilds only the config stage.
target=${CARGO_TARGET_DIR:-$repo/target}
pick_bin() {
  local r=$target/release/$1 d=$target/debug/$1
  if [ -x "$r" ] && { [ ! -x "$d" ] || [ "$r" -nt "$d" ]; }; then echo "$r"
  elif [ -x "$d" ]; then echo "$d"
  else
    echo "[node-image] ERROR: $1 not found in $target/release or $target/debug;" \
         "build it first: (cd $repo && cargo build -p keel-hostd -p keel-cli -p keel-clusterd)" >&2
    return 1
  fi
}
keel_bins=()
for b in keel-hostd keel keel-clusterd; do keel_bins+=("$(pick_bin "$b")") || exit 1; done
bins_hash=$(sha256sum "${keel_bins[@]}" | awk '{print $1}' | sha256sum | cut -c1-16)

# Debian's BMC and SBD fence agents, taken from the host's fence-agents package (same release as the
# image; the package's own dependencies pull ~200 MB of cloud SDKs the lab never uses).
fence_files=(/usr/sbin/fence_ipmilan /usr/sbin/fence_redfish /usr/sbin/fence_sbd /usr/share/fence/fencing.py)
fa_version=$(dpkg-query -W -f='${Version}' fence-agents 2>/dev/null) || fa_version=
for f in "${fence_files[@]}"; do
  [ -f "$f" ] || { echo "[node-image] ERROR: $f missing: install Debian's fence-agents on this host (apt-get install fence-agents)" >&2; exit 1; }
done
key=$( (cd "$repo" && find iso/node tests/vmlab/fence_keel_lab -type f | LC_ALL=C sort | xargs sha256sum; echo "keel-bins $bins_hash"; echo "fence-agents $fa_version") | sha256sum | cut -c1-16)
out=$cache/$key
mkdir -p "$cache"
exec 9>"$cache/.lock"; flock 9
if [ -f "$out/manifest.json" ]; then log "cache hit $key"; echo "$out"; exit 0; fi
log "cache miss $key: building"
t0=$(date +%s)
tmp=$cache/.tmp-$key-$$
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
pkgs=$(grep -v '^\s*#' "$here/packages.txt" | grep -v '^\s*$' | paste -sd, -)

# ---- stage 1: debootstrap (cached tarball) -------------------------------------------------
skey=$( (cat "$here/packages.txt"; echo "$suite $DEBOOTSTRAP_REV") | sha256sum | cut -c1-16)
stage=$cache/debootstrap-$skey.tar
R=$tmp/rootfs
if [ ! -f "$stage" ]; then
  log "debootstrap $suite ($pkgs)"
  mkdir -p "$cache/debs"
  debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$pkgs" "$suite" "$R" "$mirror" >&2
  rm -f "$R"/boot/initrd.img-*   # we boot with our own busybox initramfs
  chroot "$R" apt-get clean; rm -rf "$R"/var/lib/apt/lists/*
  tar -C "$R" -cf "$stage.part" . && mv "$stage.part" "$stage"
  log "debootstrap done in $(( $(date +%s) - t0 ))s"
else
  mkdir -p "$R"; tar -C "$R" -xf "$stage"
fi

# ---- stage 2: configure ------------------------------------------------------------------------
kver=$(ls "$R/lib/modules" | sort -V | tail -1)
cp -a "$here/files/." "$R/"
install -m 0755 "$agent" "$R/usr/sbin/fence_keel_lab"   # Pacemaker looks for fence agents in /usr/sbin
for f in "${fence_files[@]}"; do install -D -m "$([ "${f#/usr/sbin/}" != "$f" ] && echo 0755 || echo 0644)" "$f" "$R$f"; done
chroot "$R" python3 -m compileall -q /usr/share/fence >/dev/null   # no compile on a TCG guest's first fence
for b in "${keel_bins[@]}"; do
  install -D -m 0755 "$b" "$R/usr/local/bin/$(basename "$b")"; log "installed $b -> /usr/local/bin"
  # debug builds carry ~100 MiB of DWARF each: drop it in the image (symbols stay for backtraces)
  if command -v strip >/dev/null; then strip --strip-debug "$R/usr/local/bin/$(basename "$b")"; fi
done
echo 0123456789abcdef0123456789abcdef > "$R/etc/machine-id"   # valid => no first-boot; real id per node via systemd.machine_id=
rm -f "$R/var/lib/dbus/machine-id" "$R"/etc/ssh/ssh_host_*   # host keys are made per node at boot
echo lab > "$R/etc/hostname"
echo 'InitiatorName=iqn.2024-01.invalid.keel:unset' > "$R/etc/iscsi/initiatorname.iscsi"
passwd_hash=$(chroot "$R" passwd -l root >/dev/null 2>&1; echo locked)
chroot "$R" systemctl enable lab-init.service lab-net.service >&2
# The package's sample corosync.conf: Keel refuses to take over a corosync.conf it did not write
# (hand-made scenarios write their own). keel-hostd.service / keel-clusterd.service are installed
# but not enabled, corosync/pacemaker carry the installed node's drop-in (start only with a
# corosync.conf): a scenario that mimics an installed node writes /etc/keel/hostd.toml and enables
# keel-hostd, corosync, pacemaker and keel-clusterd itself.
rm -f "$R/etc/corosync/corosync.conf"
# cluster daemons are started by the scenarios; disable everything slow or irrelevant
for u in corosync pacemaker corosync-qdevice dlm lvmlockd lvmlocks open-iscsi iscsid.socket iscsid rtslib-fb-targetctl \
         apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap \
         fstrim.timer lvm2-monitor blk-availability logd drbd sbd; do
  chroot "$R" systemctl disable "$u" >/dev/null 2>&1 || true
done
chroot "$R" systemctl mask getty@tty1.service systemd-pstore.service networking.service ifupdown-pre.service >/dev/null 2>&1 || true
chroot "$R" systemctl set-default multi-user.target >/dev/null 2>&1
# libvirt's default NAT network needs dnsmasq, which the image does not carry: not autostarted
rm -f "$R/etc/libvirt/qemu/networks/autostart/default.xml"
log "configured ($passwd_hash root password; ssh key comes from the kernel command line)"

# ---- kernel + busybox initramfs ----------------------------------------------------------------
cp "$R/boot/vmlinuz-$kver" "$tmp/vmlinuz"
I=$tmp/initramfs.d; mkdir -p "$I"/{bin,dev,proc,sys,newroot,mod}
cp "$(command -v busybox)" "$I/bin/busybox"
for a in sh mount umount switch_root insmod mkdir sleep cat echo ls; do ln -s busybox "$I/bin/$a"; done
install -m 0755 "$here/initramfs-init" "$I/init"
for m in virtio_pci virtio_blk ext4; do chroot "$R" modprobe -S "$kver" --show-depends "$m"; done | awk '$1=="insmod"{print $2}' |
  awk '!seen[$0]++' | while read -r m; do b=$(basename "$m"); cp "$R$m" "$I/mod/$b"; echo "$b" >> "$I/mod/order"; done
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1) > "$tmp/initramfs.gz"
rm -rf "$I"

# ---- root filesystem image: mkfs.ext4 -d (no loop mount) -> qcow2 ------------------------------
truncate -s 4G "$tmp/rootfs.raw"
mkfs.ext4 -q -F -L keelroot -d "$R" "$tmp/rootfs.raw"
qemu-img convert -O qcow2 "$tmp/rootfs.raw" "$tmp/rootfs.qcow2"
rm -rf "$tmp/rootfs.raw" "$R"
size=$(stat -c %s "$tmp/rootfs.qcow2")
cat > "$tmp/manifest.json" <<J
{"key":"$key","keel_bins":"$bins_hash","keel_bins_from":"${keel_bins[*]}","suite":"$suite","kernel":"$kver","qcow2_bytes":$size,"build_seconds":$(( $(date +%s) - t0 )),"built":"$(date -u +%FT%TZ)"}
J
mv -T "$tmp" "$out"
trap - EXIT
# Every change of Keel's binaries makes a new ~0.9 GiB image: keep the three newest, and never
# remove one younger than 2 hours (a lab that just resolved it may not have started QEMU yet;
# running QEMUs hold their backing file open anyway).
ls -1dt "$cache"/[0-9a-f]*[0-9a-f] 2>/dev/null | grep -E '/[0-9a-f]{16}$' | tail -n +4 |
  while read -r old; do
    [ "$old" != "$out" ] && [ -n "$(find "$old" -maxdepth 0 -mmin +120)" ] && { rm -rf "$old"; log "pruned old image $old"; }
  done || true
log "built $out in $(( $(date +%s) - t0 ))s (qcow2 $((size / 1048576)) MiB)"
echo "$out"
