import { describe, expect, it } from "vitest";
import { hotplugOutcome } from "../src/pages/Hotplug";

describe("hotplugOutcome", () => {
  it("names what went live and what waits for a cold boot", () => {
    const lines = [
      "allocating local/vm-100-disk-1.qcow2 (16 MiB, qcow2)",
      "changed: disks, nics",
      "pending until the next cold boot: new disk /i/c: the sata bus has no hot-plug here (only virtio disks are attached live)",
      "attached disk /i/b (vdb, virtio) live",
      "NIC 02:4b:45:00:00:01 detached (the guest released it after 1.2s)",
      "vCPUs set to 2 live",
      "pending until the next cold boot: disks",
      "TASK OK",
    ];
    expect(hotplugOutcome(lines)).toBe(
      "applied live: attached disk /i/b (vdb, virtio) live; NIC 02:4b:45:00:00:01 detached (the guest released it after 1.2s); vCPUs set to 2 live. "
      + "pending until the next cold boot (stop, then start): new disk /i/c: the sata bus has no hot-plug here (only virtio disks are attached live); disks",
    );
  });
  it("says saved when nothing was live or pending (a stopped VM)", () => {
    expect(hotplugOutcome(["changed: nics", "TASK OK"])).toBe("saved");
  });
});
