import { describe, expect, it } from "vitest";
import {
  type CreateForm, canDelete, fieldForError, formatBytes, formatDuration, formatMib, formatUptime, isActive, nextFreeVmid,
  parseIntField, percent, powerAllowed, specFromForm, stepOfField, taskStateBadge, uploadNameProblem, validName, localPoolProblem, validateSpec, vmStateBadge,
  RAW_ONLY_POOL_KINDS, diskFormatFor, rawOnlyPool, rawOnlyPoolText, uploadRefusal,
} from "../src/logic";

const base = { vmid: 500, name: "web1", vcpus: 1, memory_mib: 256 };

describe("validateSpec mirrors VmSpec::validate", () => {
  it("accepts a minimal spec", () => expect(validateSpec(base)).toEqual({}));
  it("vmid range 100..999999999", () => {
    expect(validateSpec({ ...base, vmid: 99 }).vmid).toBeTruthy();
    expect(validateSpec({ ...base, vmid: 100 }).vmid).toBeUndefined();
    expect(validateSpec({ ...base, vmid: 999_999_999 }).vmid).toBeUndefined();
    expect(validateSpec({ ...base, vmid: 1_000_000_000 }).vmid).toBeTruthy();
    expect(validateSpec({ ...base, vmid: NaN }).vmid).toBeTruthy();
  });
  it("name pattern", () => {
    for (const ok of ["a", "web-1.example", "9lives", "A".repeat(63)]) expect(validName(ok)).toBe(true);
    for (const bad of ["", "-web", ".web", "web_1", "web 1", "A".repeat(64), "wéb"]) expect(validName(bad)).toBe(false);
    expect(validateSpec({ ...base, name: "" }).name).toMatch(/required/);
    expect(validateSpec({ ...base, name: "_x" }).name).toMatch(/letters/);
  });
  it("memory 16 MiB .. 16 TiB, vcpus 1..288", () => {
    expect(validateSpec({ ...base, memory_mib: 15 }).memory_mib).toBeTruthy();
    expect(validateSpec({ ...base, memory_mib: 16 }).memory_mib).toBeUndefined();
    expect(validateSpec({ ...base, memory_mib: 16 * 1024 * 1024 }).memory_mib).toBeUndefined();
    expect(validateSpec({ ...base, memory_mib: 16 * 1024 * 1024 + 1 }).memory_mib).toBeTruthy();
    expect(validateSpec({ ...base, vcpus: 0 }).vcpus).toBeTruthy();
    expect(validateSpec({ ...base, vcpus: 289 }).vcpus).toBeTruthy();
  });
  it("disk size and pool, with the API's field paths", () => {
    expect(validateSpec({ ...base, disks: [{ pool: "local", size_mib: 0 }] })["disks[0].size_mib"]).toBeTruthy();
    expect(validateSpec({ ...base, disks: [{ size_mib: 10 }] })["disks[0].pool"]).toBeTruthy();
    expect(validateSpec({ ...base, disks: [{ pool: "local", size_mib: 16 }] })).toEqual({});
  });
  it("NIC needs exactly one of network and bridge", () => {
    expect(validateSpec({ ...base, nics: [{}] })["nics[0]"]).toBeTruthy();
    expect(validateSpec({ ...base, nics: [{ network: "a", bridge: "b" }] })["nics[0]"]).toBeTruthy();
    expect(validateSpec({ ...base, nics: [{ network: "default" }] })).toEqual({});
  });
  it("parseIntField rejects non-integers", () => {
    expect(parseIntField(" 512 ")).toBe(512);
    expect(parseIntField("1.5")).toBeNaN();
    expect(parseIntField("-3")).toBeNaN();
    expect(parseIntField("2G")).toBeNaN();
  });
});

describe("API error → form field", () => {
  const known = ["vmid", "name", "memory_mib", "disks[0]", "disks[0].size_mib", "cdrom"];
  it("exact match", () => expect(fieldForError("disks[0].size_mib", known)).toBe("disks[0].size_mib"));
  it("falls back to the nearest known parent", () => {
    expect(fieldForError("disks[0].throttle.total_iops", known)).toBe("disks[0]");
    expect(fieldForError("cdrom.volume", known)).toBe("cdrom");
  });
  it("unknown or absent fields go to the form", () => {
    expect(fieldForError("boot[0]", known)).toBe("_form");
    expect(fieldForError(undefined, known)).toBe("_form");
    expect(fieldForError("body", known)).toBe("_form");
  });
  it("maps fields to wizard steps", () => {
    expect(stepOfField("name")).toBe(0);
    expect(stepOfField("memory_mib")).toBe(1);
    expect(stepOfField("disks[0].size_mib")).toBe(2);
    expect(stepOfField("cdrom")).toBe(2);
    expect(stepOfField("nics[0].mac")).toBe(3);
  });
});

describe("state mapping", () => {
  it("labels and tones", () => {
    expect(vmStateBadge("running")).toEqual({ label: "Running", tone: "ok" });
    expect(vmStateBadge("stopped").tone).toBe("off");
    expect(vmStateBadge("crashed").tone).toBe("bad");
    expect(vmStateBadge("paused").tone).toBe("warn");
    expect(vmStateBadge("shutdown").label).toBe("Shutting down");
    expect(taskStateBadge("error")).toEqual({ label: "Error", tone: "bad" });
    expect(taskStateBadge("ok").tone).toBe("ok");
  });
  it("power actions per state, as hostd allows them", () => {
    expect(powerAllowed("start", "stopped")).toBe(true);
    expect(powerAllowed("start", "running")).toBe(false);
    expect(powerAllowed("start", "crashed")).toBe(true);
    expect(powerAllowed("stop", "running")).toBe(true);
    expect(powerAllowed("stop", "stopped")).toBe(false);
    expect(powerAllowed("suspend", "running")).toBe(true);
    expect(powerAllowed("suspend", "paused")).toBe(false);
    expect(powerAllowed("resume", "paused")).toBe(true);
    expect(powerAllowed("resume", "running")).toBe(false);
    expect(powerAllowed("shutdown", "paused")).toBe(true);
  });
  it("delete only when inactive", () => {
    expect(canDelete("running")).toBe(false);
    expect(canDelete("paused")).toBe(false);
    expect(canDelete("stopped")).toBe(true);
    expect(isActive("shutdown")).toBe(true);
  });
});

describe("formatting", () => {
  it("bytes", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1024)).toBe("1.00 KiB");
    expect(formatBytes(16 * 1024 * 1024)).toBe("16.0 MiB");
    expect(formatBytes(270553174016)).toBe("252 GiB");
    expect(formatBytes(null)).toBe("—");
    expect(formatMib(256)).toBe("256 MiB");
    expect(formatMib(2048)).toBe("2.00 GiB");
  });
  it("uptime", () => {
    expect(formatUptime(null)).toBe("—");
    expect(formatUptime(5)).toBe("5s");
    expect(formatUptime(65)).toBe("1m 5s");
    expect(formatUptime(3 * 3600 + 120)).toBe("3h 2m");
    expect(formatUptime(2 * 86400 + 3600 + 60)).toBe("2d 1h 1m");
  });
  it("durations and percentages", () => {
    expect(formatDuration(100, 107)).toBe("7s");
    expect(formatDuration(100, null, 190)).toBe("1m 30s");
    expect(percent(50, 200)).toBe(25);
    expect(percent(5, 0)).toBe(0);
    expect(percent(300, 200)).toBe(100);
  });
});

describe("misc", () => {
  it("next free vmid", () => {
    expect(nextFreeVmid([])).toBe(100);
    expect(nextFreeVmid([100, 101, null, 103])).toBe(102);
  });
  it("upload names", () => {
    expect(uploadNameProblem("debian-12.iso")).toBeNull();
    expect(uploadNameProblem("disk.qcow2")).toBeNull();
    expect(uploadNameProblem("notes.txt")).toMatch(/must end/);
    expect(uploadNameProblem(".hidden.iso")).toBeTruthy();
    expect(uploadNameProblem("my file.iso")).toBeTruthy();
  });
  it("wizard form → spec", () => {
    const f: CreateForm = {
      vmid: "500", name: "e2e", vcpus: "1", memory_mib: "256", firmware: "bios", machine: "q35",
      addDisk: true, diskPool: "local", diskSize: "16", diskFormat: "qcow2", diskBus: "virtio",
      iso: "local/keel-live.iso", addNic: true, nic: "bridge:vmbr0", nicModel: "e1000", start: true,
    };
    expect(specFromForm(f)).toEqual({
      vmid: 500, name: "e2e", vcpus: 1, memory_mib: 256, firmware: "bios", machine: "q35",
      cdrom: { pool: "local", volume: "keel-live.iso" },
      disks: [{ pool: "local", size_mib: 16, format: "qcow2", bus: "virtio" }],
      nics: [{ bridge: "vmbr0", model: "e1000" }],
      boot: ["cdrom", "disk0", "net0"],
    });
    const g = specFromForm({ ...f, addDisk: false, addNic: false, iso: "" });
    expect(g.disks).toBeUndefined();
    expect(g.boot).toBeUndefined();
    expect(g.cdrom).toBeUndefined();
  });
});

describe("first-hour fixes", () => {
  it("the disk-size hint follows the number typed", async () => {
    const { mibHint } = await import("../src/logic");
    expect(mibHint("8192")).toBe("8192 MiB = 8.00 GiB.");
    expect(mibHint("20480")).toBe("20480 MiB = 20.0 GiB.");
    expect(mibHint("16")).toBe("16 MiB; 1024 MiB = 1 GiB.");
    expect(mibHint("8G")).toMatch(/whole number/);
  });
  it("log times are 24-hour", async () => {
    const { formatClock } = await import("../src/logic");
    const t = new Date(2026, 0, 2, 15, 4, 5).getTime();
    expect(formatClock(t)).toBe("15:04:05");
    expect(formatClock(new Date(2026, 0, 2, 0, 0, 9).getTime())).toBe("00:00:09");
  });
  it("a QEMU assertion as the TCG reason is explained in words, kept as detail", async () => {
    const { tcgReason } = await import("../src/logic");
    const raw = "probe: QEMU with KVM exited (signal: 6 (SIGABRT)) before the kernel printed: qemu-system-x86_64: ../../accel/kvm/kvm-all.c:1803: kvm_irqchip_commit_routes: Assertion `ret == 0' failed.";
    const r = tcgReason(raw);
    expect(r.text).not.toMatch(/Assertion/);
    expect(r.text).toMatch(/QEMU stopped/);
    expect(r.detail).toBe(raw);
    expect(tcgReason("/dev/kvm is missing or not accessible")).toEqual({ text: "/dev/kvm is missing or not accessible", detail: null });
  });
  it("a vmid already used is named with its VM", async () => {
    const { vmidTaken } = await import("../src/logic");
    const vms = [{ vmid: 100, name: "keel-demo" }, { vmid: null, name: "foreign" }];
    expect(vmidTaken("100", vms)).toBe('VM ID 100 is already used by VM "keel-demo".');
    expect(vmidTaken("101", vms)).toBeNull();
  });
});

describe("localPoolProblem", () => {
  const base = { name: "fast", kind: "lvm-thin" as const, path: "", vg: "keel", size: "90%" };
  it("takes the API's rules", () => {
    expect(localPoolProblem(base).field).toBeNull();
    expect(localPoolProblem({ ...base, size: "" }).field).toBeNull();
    expect(localPoolProblem({ ...base, size: "2G" }).mib).toBe(2048);
    expect(localPoolProblem({ ...base, kind: "dir", path: "/srv/vm" }).field).toBeNull();
  });
  it("names the field, and waits for input before showing it", () => {
    expect(localPoolProblem({ ...base, name: "Fast" })).toMatchObject({ field: "name", shown: true });
    expect(localPoolProblem({ ...base, name: "" })).toMatchObject({ field: "name", shown: false });
    expect(localPoolProblem({ ...base, size: "99%" }).field).toBe("size");
    expect(localPoolProblem({ ...base, size: "10" }).field).toBe("size");
    expect(localPoolProblem({ ...base, size: "lots" }).field).toBe("size");
    expect(localPoolProblem({ ...base, vg: " " }).field).toBe("vg");
    for (const p of ["srv", "/", "/srv/", "/srv/../etc", "/a//b"])
      expect(localPoolProblem({ ...base, kind: "dir", path: p }).field).toBe("path");
  });
});

describe("raw-only pools (lvm-thin, iscsi-lvm)", () => {
  it("takes lvm-thin and iscsi-lvm for raw-only, not dir or cluster GFS2 pools", () => {
    expect(RAW_ONLY_POOL_KINDS).toEqual(["lvm-thin", "iscsi-lvm"]);
    expect(rawOnlyPool("lvm-thin")).toBe(true);
    expect(rawOnlyPool("iscsi-lvm")).toBe(true);
    for (const k of ["dir", "iscsi-gfs2", "drbd-gfs2", "", null, undefined]) expect(rawOnlyPool(k)).toBe(false);
  });
  it("makes a new disk raw there, whatever was chosen, and keeps the choice elsewhere", () => {
    expect(diskFormatFor("iscsi-lvm", "qcow2")).toBe("raw");
    expect(diskFormatFor("lvm-thin", "qcow2")).toBe("raw");
    expect(diskFormatFor("iscsi-lvm", "raw")).toBe("raw");
    expect(diskFormatFor("dir", "qcow2")).toBe("qcow2");
    expect(diskFormatFor("dir", "raw")).toBe("raw");
    expect(diskFormatFor(undefined, "qcow2")).toBe("qcow2");
  });
  it("a wizard form on an iscsi-lvm pool gives a raw disk spec", () => {
    const f: CreateForm = {
      vmid: "300", name: "db1", vcpus: "2", memory_mib: "2048", firmware: "bios", machine: "q35",
      addDisk: true, diskPool: "san", diskSize: "10240", diskFormat: "qcow2", diskBus: "virtio",
      iso: "", addNic: false, nic: "", nicModel: "virtio", start: false,
    };
    const spec = specFromForm({ ...f, diskFormat: diskFormatFor("iscsi-lvm", f.diskFormat) });
    expect(spec.disks).toEqual([{ pool: "san", size_mib: 10240, format: "raw", bus: "virtio" }]);
    expect(validateSpec(spec)).toEqual({});
  });
  it("says what a raw-only pool holds", () => {
    expect(rawOnlyPoolText("iscsi-lvm")).toMatch(/^An iscsi-lvm pool holds raw disks only: one LV on the shared iSCSI LUN per VM disk/);
    expect(rawOnlyPoolText("lvm-thin")).toMatch(/^An lvm-thin pool holds raw disks only/);
  });
  it("refuses uploads to pools without a directory, like the API", () => {
    expect(uploadRefusal({ kind: "dir", path: "/var/lib/keel/images" })).toBeNull();
    // a cluster GFS2 pool is a dir pool on the node
    expect(uploadRefusal({ kind: "dir", path: "/var/lib/keel/pools/shared" })).toBeNull();
    expect(uploadRefusal({ kind: "lvm-thin", path: null })).toMatch(/^An lvm-thin pool holds raw disks .*uploaded to dir pools\.$/);
    expect(uploadRefusal({ kind: "iscsi-lvm", path: null })).toMatch(/^An iscsi-lvm pool holds raw disks .*uploaded to dir pools\.$/);
    expect(uploadRefusal({ kind: "logical", path: null })).toMatch(/has no directory/);
  });
});
