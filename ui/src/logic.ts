// Pure UI logic (no DOM): validation mirroring api/src/vm.rs, formatting, state mapping.
// Everything here is unit-tested in test/logic.test.ts.

import type { TaskState, VmSpec, VmState } from "./types";

export const VMID_MIN = 100;
export const VMID_MAX = 999_999_999;
export const MAX_VCPUS = 288;
export const MIN_MEMORY_MIB = 16;
export const MAX_MEMORY_MIB = 16 * 1024 * 1024;
export const MAX_DISK_MIB = 64 * 1024 * 1024;

/** field path (as the API names it) → message */
export type FieldErrors = Record<string, string>;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/;
const OBJECT_RE = /^[A-Za-z0-9_.+-]{1,200}$/;

export function validName(s: string): boolean {
  return NAME_RE.test(s);
}
export function validObjectName(s: string): boolean {
  return OBJECT_RE.test(s) && !s.startsWith(".");
}

/** Parse a form's integer field; `NaN` for anything that is not a plain non-negative integer. */
export function parseIntField(s: string): number {
  const t = s.trim();
  return /^\d+$/.test(t) ? Number(t) : NaN;
}

/** Client-side checks of a spec, the same rules (and field paths) as VmSpec::validate. */
export function validateSpec(spec: VmSpec): FieldErrors {
  const e: FieldErrors = {};
  if (!Number.isInteger(spec.vmid) || spec.vmid < VMID_MIN || spec.vmid > VMID_MAX)
    e.vmid = `Use an integer from ${VMID_MIN} to ${VMID_MAX}.`;
  if (!validName(spec.name))
    e.name = spec.name === ""
      ? "A name is required."
      : "Use 1–63 letters, digits, '-' or '.', starting with a letter or digit.";
  const vcpus = spec.vcpus ?? 1;
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) e.vcpus = `Use 1 to ${MAX_VCPUS} vCPUs.`;
  const mem = spec.memory_mib ?? 512;
  if (!Number.isInteger(mem) || mem < MIN_MEMORY_MIB || mem > MAX_MEMORY_MIB)
    e.memory_mib = `Use ${MIN_MEMORY_MIB} to ${MAX_MEMORY_MIB} MiB.`;
  (spec.disks ?? []).forEach((d, i) => {
    const f = `disks[${i}]`;
    if (!d.pool && !d.path) e[`${f}.pool`] = "Choose a storage pool.";
    else if (d.pool && !validObjectName(d.pool)) e[`${f}.pool`] = "Not a valid pool name.";
    if (d.size_mib !== undefined && (!Number.isInteger(d.size_mib) || d.size_mib < 1 || d.size_mib > MAX_DISK_MIB))
      e[`${f}.size_mib`] = `Use 1 to ${MAX_DISK_MIB} MiB (64 TiB).`;
    if (d.pool && d.volume === undefined && d.size_mib === undefined) e[`${f}.size_mib`] = "Give a size for the new disk.";
  });
  if (spec.cdrom && (spec.cdrom.pool || spec.cdrom.volume) && !(spec.cdrom.pool && spec.cdrom.volume))
    e.cdrom = "An ISO needs both a pool and a volume.";
  (spec.nics ?? []).forEach((n, i) => {
    if (!!n.network === !!n.bridge) e[`nics[${i}]`] = "Choose a network or a bridge.";
  });
  return e;
}

/** The form control that shows an API error's `field` (unknown fields go to the form-level slot). */
export function fieldForError(field: string | undefined, known: string[]): string {
  if (!field) return "_form";
  if (known.includes(field)) return field;
  // `disks[0].throttle.total_iops` → try `disks[0].throttle`, then `disks[0]`.
  let f = field;
  while (true) {
    const dot = f.lastIndexOf(".");
    const br = f.lastIndexOf("[");
    const cut = Math.max(dot, br);
    if (cut <= 0) break;
    f = f.slice(0, cut);
    if (known.includes(f)) return f;
  }
  return "_form";
}

/** Human label and colour class of a VM state. */
export function vmStateBadge(s: VmState): { label: string; tone: "ok" | "warn" | "off" | "bad" | "info" } {
  switch (s) {
    case "running": return { label: "Running", tone: "ok" };
    case "paused": return { label: "Paused", tone: "warn" };
    case "suspended": return { label: "Suspended", tone: "warn" };
    case "shutdown": return { label: "Shutting down", tone: "info" };
    case "stopped": return { label: "Stopped", tone: "off" };
    case "crashed": return { label: "Crashed", tone: "bad" };
    default: return { label: "Unknown", tone: "bad" };
  }
}

export function taskStateBadge(s: TaskState): { label: string; tone: "ok" | "bad" | "info" } {
  switch (s) {
    case "running": return { label: "Running", tone: "info" };
    case "ok": return { label: "OK", tone: "ok" };
    default: return { label: "Error", tone: "bad" };
  }
}

/** Same as VmState::is_active in keel-api. */
export function isActive(s: VmState): boolean {
  return s === "running" || s === "paused" || s === "shutdown" || s === "suspended";
}

export type PowerOp = "start" | "shutdown" | "stop" | "reboot" | "reset" | "suspend" | "resume";
export const POWER_OPS: PowerOp[] = ["start", "shutdown", "stop", "reboot", "reset", "suspend", "resume"];

/** Whether hostd accepts this power operation in this state (mirrors hostd's 409 checks). */
export function powerAllowed(op: PowerOp, s: VmState): boolean {
  switch (op) {
    case "start": return !isActive(s);
    case "resume": return s === "paused";
    case "suspend": return s === "running";
    default: return isActive(s);
  }
}

export function canDelete(s: VmState): boolean {
  return !isActive(s);
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n) || n < 0) return "—";
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
  const s = i === 0 ? String(v) : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
  return `${s} ${UNITS[i]}`;
}

export function formatMib(mib: number): string {
  return formatBytes(mib * 1024 * 1024);
}

export function formatUptime(s: number | null | undefined): string {
  if (s === null || s === undefined || s < 0) return "—";
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  if (d > 0) return `${d}d ${h}h ${m}m`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

export function formatDuration(start: number, end: number | null, now = Date.now() / 1000): string {
  const d = Math.max(0, Math.round((end ?? now) - start));
  return d < 60 ? `${d}s` : formatUptime(d);
}

export function formatTime(unix: number): string {
  const d = new Date(unix * 1000);
  const p = (x: number) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function percent(used: number, total: number): number {
  if (!total || total <= 0) return 0;
  return Math.min(100, Math.max(0, (used / total) * 100));
}

/** Volume names hostd accepts for upload. */
export function uploadNameProblem(name: string): string | null {
  if (!validObjectName(name)) return "Use letters, digits, '-', '_', '.', '+' only (no leading dot).";
  if (!/\.(iso|img|qcow2|raw|vmdk)$/i.test(name)) return "The file name must end in .iso, .img, .qcow2, .raw or .vmdk.";
  return null;
}

/** Pool kinds whose volumes are LVs (raw block devices), not files: lvm-thin (thin LVs on this
 *  node) and iscsi-lvm (LVs on a cluster's shared iSCSI LUN, each active on the node that runs
 *  its VM). A disk there must be format raw (the API answers 400 on `disks[i].format`
 *  otherwise), and nothing can be uploaded to them: they have no directory. */
export const RAW_ONLY_POOL_KINDS: readonly string[] = ["lvm-thin", "iscsi-lvm"];

/** Whether a pool of this kind holds raw disks only (see RAW_ONLY_POOL_KINDS). */
export function rawOnlyPool(kind: string | null | undefined): boolean {
  return !!kind && RAW_ONLY_POOL_KINDS.includes(kind);
}

/** The format a new disk gets on a pool of this kind: raw on a raw-only pool, else the one chosen. */
export function diskFormatFor(kind: string | null | undefined, chosen: "qcow2" | "raw"): "qcow2" | "raw" {
  return rawOnlyPool(kind) ? "raw" : chosen;
}

/** What a raw-only pool holds, in one sentence (for hints on disk and upload forms). */
export function rawOnlyPoolText(kind: string): string {
  return kind === "iscsi-lvm"
    ? "An iscsi-lvm pool holds raw disks only: one LV on the shared iSCSI LUN per VM disk, active on the node that runs the VM."
    : `An ${kind} pool holds raw disks only (thin LVs on this node).`;
}

/** Why nothing can be uploaded to this pool, or null when it can: uploads go to pools with a
 *  directory (dir pools, and the cluster's GFS2 pools), never to lvm-thin or iscsi-lvm ones. */
export function uploadRefusal(p: { kind: string; path: string | null }): string | null {
  if (p.kind === "lvm-thin")
    return "An lvm-thin pool holds raw disks (thin LVs), made when a VM gets a disk here; ISOs and images are uploaded to dir pools.";
  if (p.kind === "iscsi-lvm")
    return "An iscsi-lvm pool holds raw disks (one LV per VM disk on the shared iSCSI LUN), made when a VM gets a disk here; ISOs and images are uploaded to dir pools.";
  if (p.path == null) return `A ${p.kind} pool has no directory: ISOs and images are uploaded to dir pools.`;
  return null;
}

/** The first problem of a node-local pool form (the API's LocalPoolCreate rules), if any:
 *  `field` blocks the submit; `shown` says whether to show it yet (not for a field still
 *  empty). `mib` is the size in MiB when one was given as a size, not a percentage. */
export function localPoolProblem(f: { name: string; kind: "dir" | "lvm-thin"; path: string; vg: string; size: string }):
  { field: string | null; message: string; shown: boolean; mib?: number } {
  const bad = (field: string, message: string, value: string) => ({ field, message, shown: value.trim() !== "" });
  if (!/^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$/.test(f.name))
    return bad("name", "1-30 of a-z, 0-9 and '-', starting with a letter, not ending with '-'.", f.name);
  if (f.kind === "dir") {
    const p = f.path.trim();
    if (!p.startsWith("/") || p === "/" || p.endsWith("/") || p.includes("//") || /(^|\/)\.\.?(\/|$)/.test(p))
      return bad("path", "An absolute directory path, like /srv/vmdata (no '.', '..', '//' or trailing '/').", f.path);
    return { field: null, message: "", shown: false };
  }
  if (!f.vg.trim()) return bad("vg", "The volume group, e.g. keel.", f.vg);
  const s = f.size.trim();
  if (s === "") return { field: null, message: "", shown: false };
  const pct = /^(\d+)%$/.exec(s);
  if (pct) {
    const n = Number(pct[1]);
    return n >= 1 && n <= 95 ? { field: null, message: "", shown: false }
      : bad("size", "A share of the free space is 1% to 95% (LVM needs room for the pool's metadata).", s);
  }
  const m = /^(\d+)\s*(m|mb|mib|g|gb|gib|t|tb|tib)?$/i.exec(s);
  if (!m) return bad("size", "MiB, a size like 200G, or a percentage like 90%.", s);
  const unit = (m[2] ?? "m").toLowerCase()[0];
  const mib = Number(m[1]) * (unit === "t" ? 1024 * 1024 : unit === "g" ? 1024 : 1);
  if (mib < 64) return bad("size", "A thin pool has at least 64 MiB.", s);
  return { field: null, message: "", shown: false, mib };
}

/** Lowest free vmid ≥ 100 (fallback when GET …/vms/nextid is not available). */
export function nextFreeVmid(used: (number | null)[]): number {
  const set = new Set(used.filter((x): x is number => x !== null));
  let id = VMID_MIN;
  while (set.has(id)) id++;
  return id;
}

export interface CreateForm {
  vmid: string;
  name: string;
  vcpus: string;
  memory_mib: string;
  firmware: "bios" | "uefi";
  machine: "q35" | "pc";
  addDisk: boolean;
  diskPool: string;
  diskSize: string;
  diskFormat: "qcow2" | "raw";
  diskBus: "virtio" | "sata" | "scsi";
  iso: string; // "pool/volume" or ""
  addNic: boolean;
  nic: string; // "network:NAME" | "bridge:NAME"
  nicModel: "virtio" | "e1000";
  start: boolean;
}

/** Turn the wizard's form into a VmSpec (boot from the ISO first when there is one). */
export function specFromForm(f: CreateForm): VmSpec {
  const spec: VmSpec = {
    vmid: parseIntField(f.vmid),
    name: f.name.trim(),
    vcpus: parseIntField(f.vcpus),
    memory_mib: parseIntField(f.memory_mib),
    firmware: f.firmware,
    machine: f.machine,
  };
  const boot: string[] = [];
  if (f.iso) {
    const i = f.iso.indexOf("/");
    spec.cdrom = { pool: f.iso.slice(0, i), volume: f.iso.slice(i + 1) };
    boot.push("cdrom");
  }
  if (f.addDisk) {
    spec.disks = [{ pool: f.diskPool, size_mib: parseIntField(f.diskSize), format: f.diskFormat, bus: f.diskBus }];
    boot.push("disk0");
  }
  if (f.addNic && f.nic) {
    const [kind, name] = [f.nic.slice(0, f.nic.indexOf(":")), f.nic.slice(f.nic.indexOf(":") + 1)];
    spec.nics = [kind === "bridge" ? { bridge: name, model: f.nicModel } : { network: name, model: f.nicModel }];
    boot.push("net0");
  }
  if (spec.cdrom) spec.boot = boot;
  return spec;
}

/** Which wizard step shows a given field. */
export function stepOfField(field: string): number {
  if (field === "vmid" || field === "name" || field === "description") return 0;
  if (["vcpus", "max_vcpus", "memory_mib", "balloon_mib", "firmware", "machine", "cpu_model"].includes(field)) return 1;
  if (field.startsWith("disks") || field.startsWith("cdrom") || field.startsWith("boot")) return 2;
  if (field.startsWith("nics")) return 3;
  return 4;
}

/** Short human label for a task kind (`vmstart` → "VM start"). */
export function taskKindLabel(kind: string): string {
  const map: Record<string, string> = {
    vmcreate: "Create VM", vmstart: "Start VM", vmshutdown: "Shut down VM", vmstop: "Stop VM",
    vmreboot: "Reboot VM", vmreset: "Reset VM", vmsuspend: "Suspend VM", vmresume: "Resume VM",
    vmdelete: "Delete VM", vmupdate: "Update VM", vmadopt: "Adopt VM", volupload: "Upload volume",
    volcreate: "Create volume", voldelete: "Delete volume", netcreate: "Create network", netdelete: "Delete network",
    clusterinit: "Create cluster", clusterjoin: "Join cluster", clusterremove: "Remove node", fencetest: "Fence test", fenceadd: "Set fence device",
    qdeviceadd: "Add QDevice", qdeviceremove: "Remove QDevice",
    vmsnapshot: "Snapshot VM", vmrollback: "Roll back VM", vmdelsnapshot: "Delete snapshot", vmresize: "Resize disk",
    vmha: "HA on/off", vmmigrate: "Migrate VM", maintenance: "Node maintenance", maintenanceend: "End maintenance",
  };
  return map[kind] ?? kind;
}

/** The hint under a size field in MiB: what the number typed means (`"8192"` → 8192 MiB = 8.00 GiB). */
export function mibHint(typed: string): string {
  const t = typed.trim();
  if (!/^\d+$/.test(t)) return "A whole number of MiB; 1024 MiB = 1 GiB.";
  const n = Number(t);
  return n >= 1024 ? `${n} MiB = ${formatMib(n)}.` : `${n} MiB; 1024 MiB = 1 GiB.`;
}

/** A wall-clock time of day, 24-hour `HH:MM:SS` in local time (the format of `formatTime`). */
export function formatClock(ms: number): string {
  const d = new Date(ms);
  const p = (x: number) => String(x).padStart(2, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Why guests run under TCG, in words: hostd's probe reason when QEMU died under KVM is QEMU's
 * own last line (often an assertion); that goes to `detail`. */
export function tcgReason(raw: string | null | undefined): { text: string; detail: string | null } {
  const r = (raw ?? "").trim();
  if (r.startsWith("probe: QEMU with KVM exited"))
    return {
      text: "/dev/kvm exists, but QEMU stopped when it tried to use it (a host or nested-virtualization problem), so guests use software emulation.",
      detail: r,
    };
  if (r.startsWith("probe: a kernel under KVM printed nothing"))
    return { text: "/dev/kvm exists, but a test guest hung under KVM on this host, so guests use software emulation.", detail: r };
  return { text: r || "unknown", detail: null };
}

/** The VM ids taken on this node (to refuse a duplicate at the wizard's first step). */
export function vmidTaken(typed: string, vms: { vmid: number | null; name: string }[]): string | null {
  const id = Number(typed.trim());
  const v = vms.find((x) => x.vmid !== null && x.vmid === id);
  return v ? `VM ID ${id} is already used by VM "${v.name}".` : null;
}
