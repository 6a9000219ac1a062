#!/usr/bin/env bash
# One command to a working Keel node on a fresh Debian 12 machine (as root): installs what is
# missing, builds Keel, starts libvirtd/virtlogd when no systemd runs them, starts keel-hostd,
# and boots a demo VM from the project's own live ISO. Safe to run again.
#
#   KEEL_STATE_DIR (default /var/lib/keel)  KEEL_LISTEN (default 0.0.0.0:8006)
#   KEEL_ADMIN_PASSWORD (default: generated on first start, stored 0600 in the state dir)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

STATE=${KEEL_STATE_DIR:-/var/lib/keel}
LISTEN=${KEEL_LISTEN:-0.0.0.0:8006}
PORT=${LISTEN##*:}
LOGDIR=/var/log/keel
PIDFILE=/run/keel-hostd.pid

keel_install_deps
keel_start_libvirt

keel_default_network

log "building Keel (release)"
cargo build --release --quiet -p keel-hostd -p keel-cli -p keel-clusterd
# Every binary a node runs, together in /usr/local/bin as on an installed node: hostd finds
# keel-clusterd next to itself (`keel cluster init` and `keel join` refuse without it), and
# keel-clusterd.service starts it from there. `install` replaces a running binary safely.
BIN=/usr/local/bin
for b in keel-hostd keel keel-clusterd; do
  install -m 0755 "target/release/$b" "$BIN/$b"
done
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  install -m 0644 iso/installer/files/etc/systemd/system/keel-clusterd.service /etc/systemd/system/
  systemctl daemon-reload
fi

log "building the web UI"
keel_build_ui

log "building the live ISO (cached by content hash)"
mkdir -p "$STATE/live"
ISO=$(bash iso/live/build.sh "$STATE/live" 2>"$STATE/live/build.log") || die "live ISO build failed, see $STATE/live/build.log"

# (Re)start hostd so the binary just built is the one running; only our own PID is stopped.
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  log "stopping the previous keel-hostd (pid $(cat "$PIDFILE"))"
  kill "$(cat "$PIDFILE")"
  for _ in $(seq 50); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
fi
mkdir -p "$LOGDIR"
log "starting keel-hostd on $LISTEN (log: $LOGDIR/hostd.log)"
nohup "$BIN/keel-hostd" --state-dir "$STATE" --listen "$LISTEN" --ui-dir "$PWD/ui/dist" >>"$LOGDIR/hostd.log" 2>&1 &
echo $! >"$PIDFILE"
for i in $(seq 300); do
  curl -skf "https://127.0.0.1:$PORT/api/v1/health" >/dev/null 2>&1 && break
  kill -0 "$(cat "$PIDFILE")" 2>/dev/null || die "keel-hostd exited; see $LOGDIR/hostd.log"
  [ "$i" = 300 ] && die "keel-hostd did not answer within 60 s; see $LOGDIR/hostd.log"
  sleep 0.2
done

export KEEL_URL="https://127.0.0.1:$PORT"
KEEL_FINGERPRINT=$(cat "$STATE/hostd.fingerprint")
export KEEL_FINGERPRINT
if [ -n "${KEEL_ADMIN_PASSWORD:-}" ]; then
  export KEEL_PASSWORD=$KEEL_ADMIN_PASSWORD
elif [ -f "$STATE/root-password" ]; then
  KEEL_PASSWORD=$(cat "$STATE/root-password")
  export KEEL_PASSWORD
else
  die "root's password is not in $STATE/root-password (it was set before); export KEEL_ADMIN_PASSWORD"
fi
keel() { "$BIN/keel" "$@"; }

volumes=$(keel --json storage content local)
vms=$(keel --json vm list)
if ! grep -q '"keel-live.iso"' <<<"$volumes"; then
  log "uploading the live ISO"
  keel storage upload local "$ISO" --name keel-live.iso
fi
if ! grep -q '"vmid": 100' <<<"$vms"; then
  log "creating and starting the demo VM 100 (keel-demo)"
  keel vm create --vmid 100 --name keel-demo --memory-mib 256 --disk local:64 \
    --cdrom local:keel-live.iso --boot cdrom,disk0 --start
elif [ "$(keel --json vm show 100 | grep -m1 -o '"state": "[a-z]*"')" != '"state": "running"' ]; then
  log "starting the demo VM 100"
  keel vm start 100
fi

log "waiting for the demo guest to print on its serial console"
for i in $(seq 120); do
  out=$(keel vm serial 100)
  if grep -q "KEEL-LIVE: guest booted" <<<"$out"; then break; fi
  [ "$i" = 120 ] && die "the demo guest printed nothing in 120 s; see 'keel vm serial 100'"
  sleep 1
done
keel vm serial 100 | grep "KEEL-LIVE" | tail -n 2

HOST=$(hostname -I 2>/dev/null | awk '{print $1}')
cat <<INFO

Keel is running.
  web UI:       https://${HOST:-127.0.0.1}:$PORT/   (also https://127.0.0.1:$PORT/)
  API:          https://${HOST:-127.0.0.1}:$PORT/api/v1/
  fingerprint:  $KEEL_FINGERPRINT
  login:        root / $KEEL_PASSWORD   (stored in $STATE/root-password)
  CLI:          export KEEL_URL=$KEEL_URL KEEL_FINGERPRINT=$KEEL_FINGERPRINT KEEL_PASSWORD=...
                $BIN/keel vm list
  demo VM:      100 keel-demo  ($BIN/keel vm serial 100 --follow)
INFO
