#!/bin/bash
# Build (or reuse) Keel's product root filesystem: the system the installer ISO runs live and the
# one the install program copies to the target disk. Prints the output directory on stdout
# (last line):
#   DIR/root.squashfs (zstd)  DIR/vmlinuz  DIR/initrd-live.gz (busybox: finds the ISO, mounts the
#   squashfs under a tmpfs overlay)  DIR/manifest.json
# Keel's own binaries are NOT in here: `keel-installer build-iso` packs them into a second, small
# squashfs per ISO, so a code change never rebuilds this image.
# Cache: ${KEEL_INSTALLER_CACHE:-/var/cache/keel/installer}/<content-hash>/, keyed by the sha256 of
# every file of this recipe. A miss always rebuilds; the result is renamed into place atomically.
# Stage 1 (debootstrap + apt-get of packages.txt) is cached as a tarball keyed by packages.txt and
# STAGE1_REV, so edits to files/ only redo the configure + squashfs steps.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${KEEL_INSTALLER_CACHE:-/var/cache/keel/installer}
suite=bookworm
mirror=${KEEL_DEBIAN_MIRROR:-http://deb.debian.org/debian}
STAGE1_REV=2
log() { echo "[installer-rootfs] $*" >&2; }

key=$( (cd "$repo" && find iso/installer -type f | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-16)
out=$cache/$key
mkdir -p "$cache"
exec 9>"$cache/.lock"; flock 9
if [ -f "$out/manifest.json" ]; then log "cache hit $key"; echo "$out"; exit 0; fi
log "cache miss $key: building"
t0=$(date +%s)
tmp=$cache/.tmp-$key-$$
R=$tmp/rootfs
mounts=()
cleanup() {
  for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
rm -rf "$tmp"; mkdir -p "$tmp"
# The chroot gets a private /dev (a tmpfs with the few nodes package scripts use), never the
# host's: with /dev bind-mounted, a postinst chgrp'ed the host's /dev/kvm to the chroot's kvm gid
# (another group on the host) and libvirtd re-probed QEMU on every call from then on.
chroot_mounts() {
  for d in proc sys dev; do mkdir -p "$R/$d"; done
  mount -t proc proc "$R/proc"; mounts+=("$R/proc")
  mount -t sysfs sys "$R/sys"; mounts+=("$R/sys")
  mount -t tmpfs -o mode=0755,nosuid,size=16m keel-chroot-dev "$R/dev"; mounts+=("$R/dev")
  local n
  for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
    set -- $n; mknod -m 0666 "$R/dev/$1" c "$2" "$3"
  done
  mkdir -p "$R/dev/pts" "$R/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 keel-chroot-pts "$R/dev/pts"; mounts+=("$R/dev/pts")
  ln -s pts/ptmx "$R/dev/ptmx"
  mount -t tmpfs -o mode=1777,nosuid,nodev,size=64m keel-chroot-shm "$R/dev/shm"; mounts+=("$R/dev/shm")
  ln -s /proc/self/fd "$R/dev/fd"
  ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
}
# Owner, group and mode of the host's device nodes (/dev and /dev/net): the build must leave
# them as they were (checked at the end; a node that appears or goes meanwhile is not compared).
host_dev_state() {
  find /dev /dev/net -maxdepth 1 \( -type c -o -type b \) -printf '%p %U:%G:%m\n' 2>/dev/null | LC_ALL=C sort -k1,1
}
dev_before=$(host_dev_state)
chroot_umounts() {
  for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -l "${mounts[$i]}"; done
  mounts=()
}
pkgs=$(grep -v '^\s*#' "$here/packages.txt" | grep -v '^\s*$' | tr '\n' ' ')

# ---- stage 1: debootstrap + packages (cached tarball) -----------------------------------------
skey=$( (cat "$here/packages.txt"; echo "$suite $STAGE1_REV") | sha256sum | cut -c1-16)
stage=$cache/stage1-$skey.tar
if [ ! -f "$stage" ]; then
  mkdir -p "$cache/debs"
  # Reuse the lab node image's downloaded packages when present (hard links, same filesystem).
  if [ -d /var/cache/keel/node-image/debs ]; then cp -lnr /var/cache/keel/node-image/debs/. "$cache/debs/" 2>/dev/null || true; fi
  log "debootstrap $suite (minbase)"
  debootstrap --variant=minbase --cache-dir="$cache/debs" "$suite" "$R" "$mirror" >&2
  chroot_mounts
  mkdir -p "$R/var/cache/apt/archives"
  mount --bind "$cache/debs" "$R/var/cache/apt/archives"; mounts+=("$R/var/cache/apt/archives")
  printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod 0755 "$R/usr/sbin/policy-rc.d"
  log "apt-get install ($pkgs)"
  chroot "$R" apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive chroot "$R" apt-get install -y -q --no-install-recommends $pkgs >&2
  # The BMC and SBD fence agents from Debian's fence-agents package of this release, without the
  # package's cloud-SDK dependencies (see packages.txt); files only, compiled once here so that a
  # node's first fence does not compile Python.
  fa=$tmp/fence-agents; mkdir -p "$fa"
  chroot "$R" sh -c 'cd /tmp && apt-get download -q fence-agents' >&2
  deb=$(ls "$R"/tmp/fence-agents_*.deb 2>/dev/null | head -1 || true)
  [ -n "$deb" ] || { log "ERROR: apt-get download fence-agents left no .deb"; exit 1; }
  dpkg-deb -x "$deb" "$fa/x"
  for f in usr/sbin/fence_ipmilan usr/sbin/fence_redfish usr/sbin/fence_sbd usr/share/fence/fencing.py; do
    [ -f "$fa/x/$f" ] || { log "ERROR: $f is not in $(basename "$deb")"; exit 1; }
    install -D -m "$([ "${f#usr/sbin/}" != "$f" ] && echo 0755 || echo 0644)" "$fa/x/$f" "$R/$f"
  done
  rm -rf "$fa" "$R"/tmp/fence-agents_*.deb
  chroot "$R" python3 -m compileall -q /usr/share/fence >/dev/null
  for a in fence_ipmilan fence_redfish fence_sbd; do
    chroot "$R" "/usr/sbin/$a" -o metadata >/dev/null || { log "ERROR: $a does not run in the image"; exit 1; }
  done
  chroot_umounts
  rm -f "$R/usr/sbin/policy-rc.d"
  rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin
  tar -C "$R" -cf "$stage.part" . && mv "$stage.part" "$stage"
  log "stage 1 done in $(( $(date +%s) - t0 ))s"
else
  mkdir -p "$R"; tar -C "$R" -xf "$stage"; touch "$stage"   # newest used = kept by the pruning below
fi

# ---- stage 2: configure ------------------------------------------------------------------------
kver=$(ls "$R/lib/modules" | sort -V | tail -1)
cp -a "$here/files/." "$R/"
chmod 0755 "$R/usr/local/sbin/"* 2>/dev/null || true
: > "$R/etc/machine-id"                       # empty: each boot (live) / each install gets its own
rm -f "$R/var/lib/dbus/machine-id" "$R"/etc/ssh/ssh_host_*   # host keys are made per node
echo keel-installer > "$R/etc/hostname"
chroot "$R" passwd -l root >/dev/null
# The packages' sample corosync.conf and Pacemaker authkey: Keel writes its own at `keel cluster
# init` / `keel join`, and refuses to take over a corosync.conf it did not write.
rm -f "$R/etc/corosync/corosync.conf" "$R/etc/pacemaker/authkey"
# corosync, Pacemaker and keel-clusterd are enabled but conditioned on /etc/corosync/corosync.conf
# (drop-ins in files/): a fresh node starts none of them, a clustered one restarts its stack at
# boot. hostd (service_manager = "systemd", /etc/keel/hostd.toml) starts them when it forms or
# joins a cluster.
chroot "$R" systemctl enable keel-install.service keel-hostd.service keel-firstboot.service \
  systemd-networkd.service corosync.service pacemaker.service keel-clusterd.service >&2
for u in corosync-qdevice dlm lvmlockd lvmlocks open-iscsi iscsid.socket iscsid rtslib-fb-targetctl \
         apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap \
         fstrim.timer blk-availability logd drbd networking.service ifupdown-pre.service \
         rpcbind.service rpcbind.socket sbd; do
  chroot "$R" systemctl disable "$u" >/dev/null 2>&1 || true
done
chroot "$R" systemctl mask systemd-pstore.service >/dev/null 2>&1 || true
chroot "$R" systemctl set-default multi-user.target >/dev/null 2>&1
# The installed system's initramfs (initramfs-tools, MODULES=most, root from root=UUID=… on the
# command line), made once here instead of in every install under emulation.
chroot_mounts
chroot "$R" update-initramfs -u -k "$kver" >&2
chroot_umounts
log "configured (kernel $kver)"

# ---- live initramfs (busybox): find the ISO, mount the squashfs layers under a tmpfs overlay ----
cp "$R/boot/vmlinuz-$kver" "$tmp/vmlinuz"
I=$tmp/initramfs.d; mkdir -p "$I"/{bin,dev,proc,sys,newroot,mod,run}
cp "$(command -v busybox)" "$I/bin/busybox"
for a in sh mount umount switch_root insmod mkdir sleep cat echo ls losetup grep; do ln -s busybox "$I/bin/$a"; done
install -m 0755 "$here/initramfs-init" "$I/init"
for m in virtio_pci virtio_blk virtio_scsi ata_piix ahci sr_mod sd_mod cdrom isofs squashfs overlay loop \
         usb_storage uas xhci_pci ehci_pci nvme vfat nls_cp437 nls_ascii; do
  chroot "$R" modprobe -S "$kver" --show-depends "$m"
done | awk '$1=="insmod"{print $2}' | awk '!seen[$0]++' | while read -r m; do
  b=$(basename "$m"); cp "$R$m" "$I/mod/$b"; echo "$b" >> "$I/mod/order"
done
(cd "$I" && find . | cpio -o -H newc --quiet | gzip -1) > "$tmp/initrd-live.gz"
rm -rf "$I"

# ---- squashfs ------------------------------------------------------------------------------------
mksquashfs "$R" "$tmp/root.squashfs" -comp zstd -Xcompression-level 6 -noappend -quiet -no-progress >&2
rsize=$(du -sb "$R" | awk '{print $1}')
rm -rf "$R"
size=$(stat -c %s "$tmp/root.squashfs")
# Nothing on the host changed: the host's device nodes kept their owner, group and mode.
changed=$(LC_ALL=C join <(echo "$dev_before") <(host_dev_state) | awk '$2 != $3 {print "  " $1 ": " $2 " -> " $3 " (uid:gid:mode)"}')
if [ -n "$changed" ]; then
  log "FAILED: the build changed the host's device nodes:"
  echo "$changed" >&2
  exit 1
fi
log "the host's device nodes are unchanged ($(echo "$dev_before" | wc -l) checked)"
cat > "$tmp/manifest.json" <<J
{"key":"$key","suite":"$suite","kernel":"$kver","rootfs_bytes":$rsize,"squashfs_bytes":$size,"build_seconds":$(( $(date +%s) - t0 )),"built":"$(date -u +%FT%TZ)"}
J
mv -T "$tmp" "$out"
trap - EXIT
# Keep the two newest root filesystems (an ISO being assembled holds hard links, not paths).
ls -1dt "$cache"/[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f] 2>/dev/null |
  tail -n +3 | while read -r old; do [ -f "$old/manifest.json" ] && rm -rf "$old"; done
# and the two newest stage-1 tarballs (~1.1 GB each; the one just used is the newest)
ls -1t "$cache"/stage1-*.tar 2>/dev/null | tail -n +3 | while read -r old; do
  [ "$old" != "$stage" ] && rm -f "$old" && log "pruned $old"; done || true
log "built $out in $(( $(date +%s) - t0 ))s (squashfs $((size / 1048576)) MiB of $((rsize / 1048576)) MiB)"
echo "$out"
