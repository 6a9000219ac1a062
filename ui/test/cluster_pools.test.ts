import { describe, expect, it } from "vitest";
import { nodeHealth, poolHealth } from "../src/pages/ClusterPools";
import type { ClusterPoolNode, ClusterPoolStatus } from "../src/types";

// Shapes as GET /cluster/storage-pools answers them in the VM lab (vmlab_keel_cluster).
const healthy: ClusterPoolNode = {
  node: "node1", device: "/dev/vdb", connection: "Connected", role: "Primary", peer_role: "Primary",
  disk: "UpToDate", peer_disk: "UpToDate", sync_percent: null, mounted: true, size_bytes: 1e9, free_bytes: 8e8, error: null,
};
const pool = (nodes: ClusterPoolNode[], state = "ready"): ClusterPoolStatus =>
  ({ name: "vmstore", type: "drbd-gfs2", path: "/var/lib/keel/pools/vmstore", state, nodes });

describe("cluster pool health", () => {
  it("is healthy only when connected, both disks UpToDate and mounted", () => {
    expect(nodeHealth(healthy)).toEqual({ tone: "ok", text: "healthy" });
    expect(nodeHealth({ ...healthy, mounted: false }).tone).toBe("warn");
    expect(nodeHealth({ ...healthy, peer_disk: "Outdated" }).text).toBe("disks UpToDate/Outdated");
  });

  it("names a split brain, a resync with its progress and an unreachable node", () => {
    expect(nodeHealth({ ...healthy, connection: "StandAlone" }).text).toMatch(/^StandAlone: not replicating \(split brain/);
    expect(nodeHealth({ ...healthy, connection: "SyncSource", sync_percent: 42.25 })).toEqual({ tone: "warn", text: "resyncing 42.3%" });
    expect(nodeHealth({ ...healthy, connection: "WFConnection" }).tone).toBe("bad");
    expect(nodeHealth({ ...healthy, error: "connection refused" })).toEqual({ tone: "bad", text: "not answering: connection refused" });
  });

  it("takes the pool's state first, then its worst node", () => {
    expect(poolHealth(pool([healthy], "creating")).text).toBe("creating");
    expect(poolHealth(pool([healthy], "failed: device busy")).tone).toBe("bad");
    expect(poolHealth(pool([healthy, { ...healthy, node: "node2", connection: "SyncTarget", sync_percent: 10 }])).text).toBe("resyncing 10.0%");
    expect(poolHealth(pool([healthy, { ...healthy, node: "node2" }])).tone).toBe("ok");
  });
});
