import { describe, expect, it } from "vitest";
import { canExtend, extendLabel, isIscsi, lockspaceText, missingNodes, nodeHealth, poolHealth, splitBrainSuspected } from "../src/pages/ClusterPools";
import type { ClusterPoolNode, ClusterPoolStatus } from "../src/types";

// Shapes as GET /cluster/storage-pools answers them in the VM lab (vmlab_keel_cluster).
const healthy: ClusterPoolNode = {
  node: "node1", device: "/dev/vdb", connection: "Connected", role: "Primary", peer_role: "Primary",
  disk: "UpToDate", peer_disk: "UpToDate", sync_percent: null, mounted: true, size_bytes: 1e9, free_bytes: 8e8, error: null,
};
const pool = (nodes: ClusterPoolNode[], state = "ready"): ClusterPoolStatus =>
  ({ name: "vmstore", type: "drbd-gfs2", path: "/var/lib/keel/pools/vmstore", state, nodes });
const lun = "/dev/disk/by-path/ip-192.0.2.10:3260-iscsi-iqn.2024-01.lab.keel:pool-lun-0";
const iscsiNode: ClusterPoolNode = {
  node: "node1", device: lun, logged_in: true, mounted: true, size_bytes: 1e9, free_bytes: 8e8, error: null,
};
const iscsiPool = (nodes: ClusterPoolNode[], state = "ready"): ClusterPoolStatus => ({
  name: "shared", type: "iscsi-gfs2", path: "/var/lib/keel/pools/shared", state, nodes,
  iscsi: { portal: "192.0.2.10:3260", target: "iqn.2024-01.lab.keel:pool", lun: 0, chap_user: "keel" },
});

// an iscsi-lvm node: no file system (mounted is always false), the VG's size and free space
const lvmNode: ClusterPoolNode = {
  node: "node1", device: lun, logged_in: true, lockspace: true, mounted: false, size_bytes: 1e11, free_bytes: 6e10, error: null,
};
const lvmPool = (nodes: ClusterPoolNode[], state = "ready"): ClusterPoolStatus => ({
  name: "san", type: "iscsi-lvm", path: "/dev/keel-san", state, nodes,
  iscsi: { portal: "192.0.2.10:3260", target: "iqn.2024-01.lab.keel:pool", lun: 1, chap_user: "keel" },
});

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

  it("names a split brain DRBD's handler saw before StandAlone, and keeps StandAlone without it", () => {
    const sb = { tone: "bad", text: "split brain: both nodes changed the pool while apart; resolve it by choosing whose changes to discard" };
    expect(nodeHealth({ ...healthy, connection: "StandAlone", split_brain: true }, "drbd-gfs2")).toEqual(sb);
    expect(nodeHealth({ ...healthy, connection: "StandAlone", split_brain: true })).toEqual(sb);
    expect(nodeHealth({ ...healthy, connection: "WFConnection", split_brain: true }, "drbd-gfs2")).toEqual(sb);
    expect(nodeHealth({ ...healthy, split_brain: true, error: "timed out" }, "drbd-gfs2")).toEqual({ tone: "bad", text: "not answering: timed out" });
    expect(nodeHealth({ ...healthy, connection: "StandAlone", split_brain: false }, "drbd-gfs2")).toEqual({
      tone: "bad", text: "StandAlone: not replicating (split brain, or disconnected by hand); see keel cluster verify",
    });
    expect(nodeHealth({ ...healthy, split_brain: false }, "drbd-gfs2")).toEqual({ tone: "ok", text: "healthy" });
    expect(poolHealth(pool([healthy, { ...healthy, node: "node2", connection: "StandAlone", split_brain: true }])).text).toMatch(/^split brain: /);
  });

  it("offers to resolve a split brain on a drbd-gfs2 pool with a split-brain or StandAlone node only", () => {
    expect(splitBrainSuspected(pool([healthy, { ...healthy, node: "node2" }]))).toBe(false);
    expect(splitBrainSuspected(pool([healthy, { ...healthy, node: "node2", split_brain: true }]))).toBe(true);
    expect(splitBrainSuspected(pool([healthy, { ...healthy, node: "node2", connection: "StandAlone", split_brain: false }]))).toBe(true);
    expect(splitBrainSuspected(pool([healthy, { ...healthy, node: "node2", connection: "WFConnection" }]))).toBe(false);
    expect(splitBrainSuspected(iscsiPool([iscsiNode, { ...iscsiNode, node: "node2", logged_in: false }]))).toBe(false);
  });

  it("takes the pool's state first, then its worst node", () => {
    expect(poolHealth(pool([healthy], "creating")).text).toBe("creating");
    expect(poolHealth(pool([healthy], "failed: device busy")).tone).toBe("bad");
    expect(poolHealth(pool([healthy, { ...healthy, node: "node2", connection: "SyncTarget", sync_percent: 10 }])).text).toBe("resyncing 10.0%");
    expect(poolHealth(pool([healthy, { ...healthy, node: "node2" }])).tone).toBe("ok");
  });

  it("judges an iscsi-gfs2 node by its session and its mount, not by DRBD fields", () => {
    expect(nodeHealth(iscsiNode, "iscsi-gfs2")).toEqual({ tone: "ok", text: "healthy" });
    expect(nodeHealth(iscsiNode)).toEqual({ tone: "ok", text: "healthy" });
    expect(nodeHealth({ ...iscsiNode, logged_in: false }, "iscsi-gfs2")).toEqual({
      tone: "bad",
      text: "no iSCSI session: the node is not logged in to the LUN (check the storage network; keel storage status)",
    });
    expect(nodeHealth({ ...iscsiNode, mounted: false }, "iscsi-gfs2")).toEqual({ tone: "warn", text: "GFS2 not mounted" });
    expect(nodeHealth({ ...iscsiNode, logged_in: false, mounted: false }, "iscsi-gfs2").tone).toBe("bad");
    expect(nodeHealth({ node: "node2", device: lun, mounted: false, error: "timed out" }, "iscsi-gfs2"))
      .toEqual({ tone: "bad", text: "not answering: timed out" });
  });

  it("keeps the DRBD rules for drbd-gfs2 nodes", () => {
    expect(nodeHealth(healthy, "drbd-gfs2")).toEqual({ tone: "ok", text: "healthy" });
    expect(nodeHealth({ ...healthy, connection: null }, "drbd-gfs2")).toEqual({ tone: "bad", text: "DRBD resource down" });
    expect(nodeHealth({ ...healthy, mounted: false }, "drbd-gfs2")).toEqual({ tone: "warn", text: "GFS2 not mounted" });
    expect(nodeHealth({ ...healthy, disk: "Inconsistent" }, "drbd-gfs2").text).toBe("disks Inconsistent/UpToDate");
  });

  it("passes the pool's type to its nodes' health", () => {
    expect(poolHealth(iscsiPool([iscsiNode, { ...iscsiNode, node: "node2" }, { ...iscsiNode, node: "node3" }])).tone).toBe("ok");
    expect(poolHealth(iscsiPool([iscsiNode, { ...iscsiNode, node: "node2", mounted: false }])).text).toBe("GFS2 not mounted");
    expect(poolHealth(iscsiPool([iscsiNode, { ...iscsiNode, node: "node3", logged_in: false }])).text).toMatch(/^no iSCSI session/);
    expect(poolHealth(iscsiPool([iscsiNode], "creating")).text).toBe("creating");
    // an iscsi-gfs2 node has no DRBD fields: it is not "DRBD resource down"
    expect(poolHealth(iscsiPool([{ ...iscsiNode, logged_in: null }])).tone).toBe("ok");
  });

  it("judges an iscsi-lvm node by its session only: not mounted and a lockspace not yet joined are no fault", () => {
    expect(nodeHealth(lvmNode, "iscsi-lvm")).toEqual({ tone: "ok", text: "healthy" });
    expect(nodeHealth({ ...lvmNode, lockspace: false }, "iscsi-lvm")).toEqual({ tone: "ok", text: "healthy" });
    expect(nodeHealth({ ...lvmNode, lockspace: undefined }, "iscsi-lvm")).toEqual({ tone: "ok", text: "healthy" });
    expect(nodeHealth({ ...lvmNode, logged_in: false }, "iscsi-lvm")).toEqual({
      tone: "bad",
      text: "no iSCSI session: the node is not logged in to the LUN (check the storage network; keel storage status)",
    });
    expect(nodeHealth({ ...lvmNode, logged_in: false, lockspace: false }, "iscsi-lvm").tone).toBe("bad");
    expect(nodeHealth({ node: "node2", device: lun, mounted: false, error: "timed out" }, "iscsi-lvm"))
      .toEqual({ tone: "bad", text: "not answering: timed out" });
    // without a type, a node reporting its lockspace is an iscsi-lvm one: no "GFS2 not mounted"
    expect(nodeHealth({ ...lvmNode, lockspace: false })).toEqual({ tone: "ok", text: "healthy" });
    expect(nodeHealth({ ...lvmNode, logged_in: false }).tone).toBe("bad");
  });

  it("takes an iscsi-lvm pool's worst node, never a missing mount", () => {
    expect(poolHealth(lvmPool([lvmNode, { ...lvmNode, node: "node2", lockspace: false }, { ...lvmNode, node: "node3" }])))
      .toEqual({ tone: "ok", text: "healthy" });
    expect(poolHealth(lvmPool([lvmNode, { ...lvmNode, node: "node2", logged_in: false }])).text).toMatch(/^no iSCSI session/);
    expect(poolHealth(lvmPool([lvmNode], "creating")).text).toBe("creating");
    expect(poolHealth(lvmPool([lvmNode], "failed: LUN busy")).tone).toBe("bad");
    expect(splitBrainSuspected(lvmPool([lvmNode, { ...lvmNode, node: "node2", logged_in: false }]))).toBe(false);
  });

  it("shows an iscsi-lvm node's lockspace as joined or not yet", () => {
    expect(lockspaceText(lvmNode)).toBe("joined");
    expect(lockspaceText({ ...lvmNode, lockspace: false })).toBe("not yet (joins when a VM starts)");
    expect(lockspaceText({ ...lvmNode, lockspace: null })).toBe("not yet (joins when a VM starts)");
    expect(lockspaceText({ ...lvmNode, lockspace: undefined })).toBe("not yet (joins when a VM starts)");
    expect(lockspaceText({ ...lvmNode, error: "timed out" })).toBe("—");
  });

  it("knows which pools live on an iSCSI LUN", () => {
    expect(isIscsi("iscsi-gfs2")).toBe(true);
    expect(isIscsi("iscsi-lvm")).toBe(true);
    expect(isIscsi("drbd-gfs2")).toBe(false);
  });

  it("offers to extend a ready iscsi-gfs2 or iscsi-lvm pool to the members it does not reach, never a drbd-gfs2 one", () => {
    expect(canExtend({ ...iscsiPool([iscsiNode, { ...iscsiNode, node: "node2" }]), not_on: ["node3"] })).toBe(true);
    expect(canExtend({ ...lvmPool([lvmNode, { ...lvmNode, node: "node2" }]), not_on: ["node3", "node4"] })).toBe(true);
    expect(canExtend({ ...pool([healthy, { ...healthy, node: "node2" }]), not_on: ["node3"] })).toBe(false);
    // none missing: an empty list, or a server older than not_on
    expect(canExtend({ ...iscsiPool([iscsiNode]), not_on: [] })).toBe(false);
    expect(canExtend(iscsiPool([iscsiNode]))).toBe(false);
    expect(canExtend(lvmPool([lvmNode]))).toBe(false);
    // not while the pool is being made or after it failed
    expect(canExtend({ ...iscsiPool([iscsiNode], "creating"), not_on: ["node3"] })).toBe(false);
    expect(canExtend({ ...lvmPool([lvmNode], "failed: LUN busy"), not_on: ["node3"] })).toBe(false);
  });

  it("names the members to extend to", () => {
    expect(missingNodes(iscsiPool([iscsiNode]))).toEqual([]);
    expect(missingNodes({ ...iscsiPool([iscsiNode]), not_on: ["node3"] })).toEqual(["node3"]);
    expect(extendLabel({ ...iscsiPool([iscsiNode]), not_on: ["node3"] })).toBe("Extend to node3…");
    expect(extendLabel({ ...lvmPool([lvmNode]), not_on: ["node3", "node4"] })).toBe("Extend to node3, node4…");
  });
});
