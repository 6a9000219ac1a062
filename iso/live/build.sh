#!/usr/bin/env bash
# Build Keel's tiny live ISO demo/test guest: a Debian cloud kernel plus a
# busybox initramfs (/init = ./init) on a BIOS-bootable isolinux ISO.
#
#   usage: build.sh OUTDIR
#
# Puts keel-live.iso, vmlinuz and initrd.gz into OUTDIR (hostd boots the bare
# kernel to probe KVM) and prints the ISO path as the last line of stdout.
# Results are cached by content hash, so repeated runs only copy files.
# Needs: apt-get, dpkg-deb, busybox-static, cpio, gzip, xorriso, isolinux,
# syslinux-common, and the shared libraries of Debian's qemu-guest-agent (the
# ones qemu-system-x86 pulls in; see GA_LIBS). Run as root (apt sandbox,
# /dev/console node, default cache).
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { echo "live-iso: $*" >&2; }
die() { log "error: $*"; exit 1; }

cache_root=${KEEL_CACHE:-/var/cache/keel}/live-iso
mkdir -p "$cache_root"
# apt-cache is the slow part of a cache hit, and Docker-derived images disable
# apt's binary cache (Dir::Cache::pkgcache ""), making each call rebuild it
# (~0.7 s). Keep our own; apt revalidates it against the package lists.
apt_opts=(-o Dir::Cache::pkgcache="$cache_root/apt-pkgcache.bin")

# Resolve the kernel through the metapackage so Debian ABI bumps are picked up.
# The metapackage pins the exact version "(= V)", which ShowVersion prints, so
# one apt-cache call yields both name and version.
read -r kpkg kver < <(apt-cache "${apt_opts[@]}" depends -o APT::Cache::ShowVersion=true linux-image-cloud-amd64 |
  sed -n 's/^ *Depends: \(linux-image-[^ ]*\) (= \([^)]*\))$/\1 \2/p') || true
[[ -n ${kpkg:-} && -n ${kver:-} ]] ||
  die "cannot resolve linux-image-cloud-amd64 (missing apt lists? run apt-get update)"
kabi=${kpkg#linux-image-}

# The guest agent: Debian's qemu-ga, with the host's copies of the libraries it
# links (these packages; their versions are part of the cache key).
gaver=$(apt-cache "${apt_opts[@]}" policy qemu-guest-agent | sed -n 's/^ *Candidate: //p')
[[ -n $gaver && $gaver != "(none)" ]] ||
  die "no qemu-guest-agent candidate in apt (missing apt lists? run apt-get update)"
GA_LIBS=(libc6 libglib2.0-0 libnuma1 libudev1 liburing2 libpcre2-8-0)
galibs=$(dpkg-query -W -f='${Package}=${Version}\n' "${GA_LIBS[@]}") ||
  die "qemu-guest-agent needs these host packages: ${GA_LIBS[*]} (apt-get install them)"

# Cache key: every recipe file here (README excluded, docs don't change the
# image), the kernel, and the host packages whose files end up in the image.
hash=$({
  (cd "$here" && find . -maxdepth 1 -type f ! -name README.md -print0 | sort -z | xargs -0 sha256sum)
  echo "$kpkg=$kver"
  echo "qemu-guest-agent=$gaver"
  echo "$galibs"
  dpkg-query -W -f='${Package}=${Version}\n' busybox-static isolinux syslinux-common
} | sha256sum | cut -d' ' -f1)
dest=$cache_root/$hash
files=(keel-live.iso vmlinuz initrd.gz)

complete() { for f in "${files[@]}"; do [[ -f $1/$f ]] || return 1; done; }

publish() {
  mkdir -p "$out"
  # Copy + rename, never overwrite in place: a running VM may have the old ISO open.
  for f in "${files[@]}"; do
    cp --reflink=auto "$dest/$f" "$out/.$f.tmp"
    mv -f "$out/.$f.tmp" "$out/$f"
  done
  echo "$(cd "$out" && pwd)/keel-live.iso"
}

if complete "$dest"; then
  publish
  exit 0
fi

log "cache miss, building $dest ($kpkg $kver)"
# Build next to the cache entry so the final rename is atomic (same filesystem).
work=$(mktemp -d "$cache_root/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
mkdir -p "$work"/{deb,out,iso/isolinux}

# --- Kernel and modules, unpacked from the .deb (nothing is installed on the host).
# apt-get drops privileges to _apt for downloads; let it write the target dir.
chown _apt "$work/deb" 2>/dev/null || true
(cd "$work/deb" && apt-get "${apt_opts[@]}" download -q "$kpkg=$kver" >&2) ||
  die "apt-get download $kpkg=$kver failed (stale apt lists? run apt-get update)"
(cd "$work/deb" && apt-get "${apt_opts[@]}" download -q "qemu-guest-agent=$gaver" >&2) ||
  die "apt-get download qemu-guest-agent=$gaver failed (stale apt lists? run apt-get update)"
dpkg-deb -x "$work"/deb/qemu-guest-agent_*.deb "$work/ga"
dpkg-deb -x "$work"/deb/"${kpkg}"_*.deb "$work/kernel"
# Newer Debian (trixie) ships modules as .ko.xz in /usr/lib/modules, while
# busybox depmod looks in lib/; both are handled (only bookworm is tested).
[[ -e $work/kernel/lib ]] || ln -s usr/lib "$work/kernel/lib"
moddir=$work/kernel/lib/modules/$kabi
cp "$work/kernel/boot/vmlinuz-$kabi" "$work/out/vmlinuz"
# The package ships no modules.dep (its postinst runs depmod), so make one.
busybox depmod -b "$work/kernel" "$kabi"

# --- Initramfs: busybox, /init, the acpid handler and the modules.
root=$work/initramfs
mkdir -p "$root"/{bin,sbin,dev,proc,sys,run,mnt,lib/modules,etc/acpi/PWRF}
cp /bin/busybox "$root/bin/"
# Only the applets that init, power-button and shutdown use.
for applet in sh mount sleep insmod grep acpid uname sync poweroff reboot hostname ip mkdir dd losetup mke2fs ln cat; do
  ln -s busybox "$root/bin/$applet"
done
install -m 755 "$here/init" "$root/init"
install -m 755 "$here/power-button" "$root/etc/acpi/PWRF/00000080"
# qemu-ga runs /sbin/shutdown for guest-shutdown; what it reports as the guest's OS.
install -m 755 "$here/shutdown" "$root/sbin/shutdown"
install -m 644 "$here/os-release" "$root/etc/os-release"
mkdir -p "$root/var" && ln -s ../run "$root/var/run"  # qemu-ga keeps its state in /var/run
# qemu-ga and the shared libraries it links, at the paths the loader looks at.
install -m 755 "$work/ga/usr/sbin/qemu-ga" "$root/bin/qemu-ga"
if ldd "$work/ga/usr/sbin/qemu-ga" | grep -q 'not found'; then
  die "qemu-ga needs libraries this host lacks: $(ldd "$work/ga/usr/sbin/qemu-ga" | grep 'not found' | tr -s ' \n' ' ')"
fi
while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done < <(ldd "$work/ga/usr/sbin/qemu-ga" | grep -oE '/[^ ]+')
# The kernel opens /dev/console for PID 1 before /init can mount devtmpfs.
mknod -m 600 "$root/dev/console" c 5 1 ||
  log "warning: cannot mknod /dev/console (not root?); the kernel will warn at boot"

# button + evdev: ACPI power button -> /dev/input/eventN -> acpid -> poweroff.
# virtio_*: extras, so the guest can see virtio NICs and disks, and the balloon
# (virtio_balloon: hot-plug tests lower a running guest's memory).
# virtio_console: the guest agent's virtio-serial port; loop: the small file
# system qemu-ga freezes (see init).
wanted=(button evdev virtio_pci virtio_net virtio_blk virtio_balloon virtio_console loop)
order=()
add_module() {  # $1: path relative to $moddir; appends its dependencies first
  local dep
  [[ " ${order[*]} " == *" $1 "* ]] && return
  # shellcheck disable=SC2013 # modules.dep lists dependencies as words
  for dep in $(sed -n "s|^$1: *||p" "$moddir/modules.dep"); do add_module "$dep"; done
  order+=("$1")
}
for name in "${wanted[@]}"; do
  path=$(grep -m1 -oE "^[^:]*/$name\.ko(\.xz)?" "$moddir/modules.dep") || die "$kpkg has no $name.ko"
  add_module "$path"
done
# Number the files so /init can insmod them in dependency order with a glob.
i=10
for m in "${order[@]}"; do
  dst=$root/lib/modules/$i-${m##*/}
  cp "$moddir/$m" "$dst"
  [[ $dst != *.xz ]] || busybox unxz "$dst"  # /init loads plain *.ko
  i=$((i + 1))
done
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc -R 0:0 --quiet) |
  gzip -9n >"$work/out/initrd.gz"

# --- ISO. BIOS boot only (El Torito via isolinux + isohybrid MBR); UEFI boot is
# not supported, Keel's demo domains boot with SeaBIOS.
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 \
  "$here/isolinux.cfg" "$work/iso/isolinux/"
cp "$work/out/vmlinuz" "$work/out/initrd.gz" "$work/iso/"
xorriso -as mkisofs -quiet -r -V KEEL_LIVE -o "$work/out/keel-live.iso" \
  -isohybrid-mbr /usr/lib/ISOLINUX/isohdpfx.bin \
  -b isolinux/isolinux.bin -c isolinux/boot.cat \
  -no-emul-boot -boot-load-size 4 -boot-info-table \
  "$work/iso"

# Publish atomically. A miss always rebuilds: drop a stale or partial entry,
# but if a concurrent build just published a complete one, keep that.
if ! mv -T "$work/out" "$dest" 2>/dev/null; then
  complete "$dest" || { rm -rf "$dest"; mv -T "$work/out" "$dest"; }
fi
publish
