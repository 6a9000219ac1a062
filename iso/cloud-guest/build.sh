#!/bin/bash
# Build (or reuse) the cloud-init test guest: Debian bookworm with Debian's own cloud-init,
# debootstrap'd (no cloud image is downloaded). Prints the image directory on stdout (last line):
#   DIR/rootfs.qcow2  the root file system (ext4 on the whole disk; the VM's first virtio disk)
#   DIR/boot.iso      a BIOS-bootable ISO with the guest's kernel and a busybox initramfs that
#                     mounts /dev/vda and starts systemd (the image has no boot loader)
# At boot the guest runs cloud-init (NoCloud seed: the CD labelled cidata that Keel makes), then
# keel-ci-report prints what cloud-init configured on the serial console.
# Cache: ${KEEL_CLOUD_GUEST_CACHE:-/var/cache/keel/cloud-guest}/<content-hash>/, keyed by every
# recipe file here and the node image's initramfs /init it shares; a miss rebuilds, renamed into
# place atomically. Needs root, debootstrap, busybox-static, cpio, xorriso, isolinux, e2fsprogs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
init=$repo/iso/node/initramfs-init
cache=${KEEL_CLOUD_GUEST_CACHE:-/var/cache/keel/cloud-guest}
suite=bookworm
mirror=${KEEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "[cloud-guest] $*" >&2; }

key=$( (cd "$repo" && find iso/cloud-guest iso/node/initramfs-init -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16)
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
R=$tmp/rootfs
mkdir -p "$cache/debs"
log "debootstrap $suite ($pkgs)"
debootstrap --variant=minbase --cache-dir="$cache/debs" --include="$pkgs" "$suite" "$R" "$mirror" >&2
rm -f "$R"/boot/initrd.img-*   # booted with our own busybox initramfs
chroot "$R" apt-get clean; rm -rf "$R"/var/lib/apt/lists/*
kver=$(ls "$R/lib/modules" | sort -V | tail -1)

# configure: the report unit, NoCloud only, no machine-id (each clone gets its own at first boot)
cp -a "$here/files/." "$R/"
chroot "$R" systemctl enable keel-ci-report.service >&2
: > "$R/etc/machine-id"; rm -f "$R/var/lib/dbus/machine-id" "$R"/etc/ssh/ssh_host_*
echo unconfigured > "$R/etc/hostname"
[ -L "$R/etc/resolv.conf" ] || rm -f "$R/etc/resolv.conf"   # a copy of the build host's, unless resolvconf linked it
chroot "$R" passwd -l root >/dev/null
for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer; do
  chroot "$R" systemctl disable "$u" >/dev/null 2>&1 || true
done
chroot "$R" systemctl mask getty@tty1.service systemd-pstore.service >/dev/null 2>&1 || true

# kernel + busybox initramfs (virtio + ext4, then switch_root), on an isolinux ISO
I=$tmp/initramfs.d; mkdir -p "$I"/{bin,dev,proc,sys,newroot,mod} "$tmp/iso/isolinux"
cp "$(command -v busybox)" "$I/bin/busybox"
for a in sh mount umount switch_root insmod mkdir sleep cat echo ls; do ln -s busybox "$I/bin/$a"; done
install -m 0755 "$init" "$I/init"
for m in virtio_pci virtio_blk ext4; do chroot "$R" modprobe -S "$kver" --show-depends "$m"; done | awk '$1=="insmod"{print $2}' |
  awk '!seen[$0]++' | while read -r m; do b=$(basename "$m"); cp "$R$m" "$I/mod/$b"; echo "$b" >> "$I/mod/order"; done
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1) > "$tmp/iso/initramfs.gz"
cp "$R/boot/vmlinuz-$kver" "$tmp/iso/vmlinuz"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$here/isolinux.cfg" "$tmp/iso/isolinux/"
xorriso -as mkisofs -quiet -r -V KEEL_CI_BOOT -o "$tmp/boot.iso" \
  -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table "$tmp/iso"

# root file system: mkfs.ext4 -d (no loop mount) -> qcow2
truncate -s 3G "$tmp/rootfs.raw"
mkfs.ext4 -q -F -L keelci -d "$R" "$tmp/rootfs.raw"
qemu-img convert -c -O qcow2 "$tmp/rootfs.raw" "$tmp/rootfs.qcow2"
rm -rf "$tmp/rootfs.raw" "$R" "$I" "$tmp/iso"
size=$(stat -c %s "$tmp/rootfs.qcow2")
ci=$(ls "$cache"/debs/cloud-init_*.deb 2>/dev/null | sed 's/.*cloud-init_//; s/_all.deb//' | tail -1)
cat > "$tmp/manifest.json" <<J
{"key":"$key","suite":"$suite","kernel":"$kver","cloud_init":"$ci","qcow2_bytes":$size,"build_seconds":$(( $(date +%s) - t0 )),"built":"$(date -u +%FT%TZ)"}
J
mv -T "$tmp" "$out"
trap - EXIT
# keep the two newest images
ls -1dt "$cache"/[0-9a-f]*[0-9a-f] 2>/dev/null | grep -E '/[0-9a-f]{16}$' | tail -n +3 | while read -r old; do
  [ "$old" != "$out" ] && { rm -rf "$old"; log "pruned old image $old"; }
done || true
log "built $out in $(( $(date +%s) - t0 ))s (qcow2 $((size / 1048576)) MiB)"
echo "$out"
