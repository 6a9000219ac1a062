// Wire types, mirrored from api/src/*.rs (keel-api).

export type VmState = "running" | "paused" | "shutdown" | "stopped" | "crashed" | "suspended" | "unknown";
export type TaskState = "running" | "ok" | "error";

export interface DiskSpec {
  pool?: string;
  volume?: string;
  size_mib?: number;
  path?: string;
  format?: "qcow2" | "raw";
  bus?: "virtio" | "sata" | "scsi";
  cache?: "none" | "writeback" | "writethrough";
  io?: "native" | "threads";
  throttle?: Record<string, number>;
  serial?: string;
}
export interface CdromSpec { pool?: string; volume?: string; path?: string }
export interface NicSpec { network?: string; bridge?: string; model?: "virtio" | "e1000"; mac?: string }

export interface VmSpec {
  vmid: number;
  name: string;
  description?: string;
  vcpus?: number;
  max_vcpus?: number;
  cpu_model?: string;
  memory_mib?: number;
  balloon_mib?: number;
  machine?: "q35" | "pc";
  firmware?: "bios" | "uefi";
  boot?: string[];
  disks?: DiskSpec[];
  cdrom?: CdromSpec;
  kernel?: KernelBoot;
  nics?: NicSpec[];
  vnc?: boolean;
  serial?: boolean;
  guest_agent?: boolean;
  on_crash?: string;
  cloud_init?: CloudInitSpec;
}

/** Direct kernel boot: kernel (and initramfs) volumes of one pool, no boot loader. */
export interface KernelBoot {
  pool: string;
  kernel: string;
  initrd?: string;
  cmdline?: string;
}

export type IpConfig = { mode: "dhcp" } | { mode: "static"; address: string; gateway?: string };

export interface CloudInitSeed {
  instance_id: string;
  meta_data: string;
  user_data: string;
  network_config: string;
  pool: string;
  volume: string;
}

export interface CloudInitSpec {
  hostname?: string;
  user?: string;
  password_hash?: string;
  ssh_keys?: string[];
  ipconfig?: IpConfig[];
  dns?: string[];
  search?: string[];
  user_data?: string;
  pool?: string;
}

export interface VmSummary {
  vmid: number | null;
  name: string;
  uuid: string;
  state: VmState;
  vcpus: number;
  memory_mib: number;
  uptime_s: number | null;
  managed: boolean;
  template?: boolean;
}

export interface VmStatus {
  vmid: number | null;
  name: string;
  uuid: string;
  state: VmState;
  uptime_s: number | null;
  cpu_time_ns: number;
  vcpus: number;
  memory_mib: number;
  max_memory_mib: number;
  disks: { dev: string; rd_bytes: number; wr_bytes: number; rd_req: number; wr_req: number }[];
  nics: { dev: string; mac: string; rx_bytes: number; tx_bytes: number; rx_packets: number; tx_packets: number }[];
  pending_changes: boolean;
  domain_type: string;
}

export interface VmConfig { spec: VmSpec; managed: boolean; pending: string[]; template?: boolean }

export interface TaskInfo {
  upid: string;
  node: string;
  kind: string;
  target: string;
  user: string;
  start_time: number;
  end_time: number | null;
  state: TaskState;
  message: string | null;
  progress: number | null;
}
export interface TaskLogLine { n: number; t: number; line: string }
export interface TaskRef { upid: string }

export interface PoolInfo {
  name: string;
  /** "dir" (also a cluster pool's GFS2 directory), "lvm-thin" or "iscsi-lvm" */
  kind: string;
  /** null for lvm-thin and iscsi-lvm pools: their volumes are LVs, not files */
  path: string | null;
  active: boolean;
  capacity: number;
  allocation: number;
  available: number;
}
export interface VolumeInfo {
  name: string; path: string; format: string; capacity: number; allocation: number;
  /** VMs using it (`VM 100 (web1)`): it cannot be deleted */
  used_by?: string[];
}

export type NetworkKind = "nat" | "bridge" | "isolated" | "host_bridge" | "other";
export interface NetworkInfo {
  name: string;
  kind: NetworkKind;
  bridge: string | null;
  active: boolean;
  autostart: boolean;
  cidr: string | null;
  /** VMs on this node with a NIC on it (a host bridge: on the bridge). */
  used_by: NetworkUser[];
}

export interface NetworkUser {
  vmid: number;
  name: string;
  running: boolean;
}

export interface NodeInfo {
  node: string;
  accel: string;
  accel_reason: string;
  cpus: number;
  memory_total: number;
  memory_free: number;
  uptime_s: number;
  loadavg: [number, number, number];
  libvirt_version: string;
  keel_version: string;
  vms_running: number;
  vms_total: number;
}
export interface Health { status: string; version: string; node: string }
export interface LoginResponse { username: string; ticket: string; csrf_token: string; expires: number }
export interface ErrorBody { error: { code: string; message: string; field?: string } }
export interface VncProxy { ticket: string; password: string; expires: number }

// Cluster (api/src/cluster.rs)
export interface ClusterNode { name: string; nodeid: number; links: string[]; api?: string }
export interface LinkStatus { link: number; address: string; connected: boolean }
/** `action` is what the device performed (`off` for a device set to action=off, whatever was asked). */
export interface FenceTestResult { at: number; ok: boolean; action: string; message: string; device_generation?: string }
export interface MemberStatus {
  name: string;
  nodeid: number;
  online: boolean;
  standby?: boolean;
  unclean?: boolean;
  votes: number;
  links: LinkStatus[];
  is_dc: boolean;
  fence_device: string | null;
  last_fence_test: FenceTestResult | null;
}
export interface FailedAction { resource: string; node: string; operation: string; status: string }
export interface ClusterStatus {
  clustered: boolean;
  name: string;
  local_node: string;
  quorate: boolean;
  expected_votes: number;
  total_votes: number;
  two_node: boolean;
  members: MemberStatus[];
  dc: string | null;
  stonith_enabled: boolean;
  failed_actions: FailedAction[];
  notes: string[];
  /** The cluster daemons of the node that answered (absent from older hostds). */
  daemons?: DaemonStatus[];
  /** The config store as the answering node sees it (null when not clustered). */
  store?: StoreState | null;
  /** The QDevice (null when not clustered; absent from older hostds). */
  qdevice?: QdeviceStatus | null;
}
export interface QdeviceStatus {
  configured: boolean;
  host: string | null;
  port: number | null;
  algorithm: string | null;
  /** Its vote as votequorum counts it on the answering node (null: not registered). */
  votes: number | null;
  daemon_running: boolean;
}
export type DaemonRunState = "running" | "dead" | "restarting" | "stopped";
export interface DaemonExit {
  at: number | null;
  status: string;
  pid: number | null;
}
export interface DaemonStatus {
  name: string;
  state: DaemonRunState;
  pid: number | null;
  since: number | null;
  restarts: number;
  last_exit: DaemonExit | null;
  next_attempt?: number | null;
  message?: string | null;
  manager: string;
}
export interface StoreState {
  reachable: boolean;
  error: string | null;
  writable: boolean;
  read_only_reason: string | null;
  held: string | null;
  version: number | null;
  syncing: boolean;
  members: number[];
  entries: number | null;
}
// The three Keel models, or any installed fence-agents program by name (how the labs add theirs).
export type FenceAgentKind = "fence_ipmilan" | "fence_redfish" | "sbd" | "watchdog" | `fence_${string}`;
export interface FenceDeviceInfo {
  id: string;
  node: string;
  agent: FenceAgentKind | string;
  params: Record<string, string>;
  secret_keys: string[];
  last_test: FenceTestResult | null;
  /** `pcmk_delay_base` in seconds, when set. */
  delay_base_s?: number | null;
  /** The device's configuration generation now (a test proves fencing only through it). */
  generation?: string | null;
}
/** `POST /cluster/join-token`. `fingerprint`/`address` are used when hostd sends them. */
export interface JoinToken { token: string; expires_at: number; fingerprint?: string; address?: string }

/** `GET /api/v1/cluster/vip`: the floating management address. */
export interface VipStatus {
  address: string | null;
  running_on: string | null;
  failed: boolean;
  url: string | null;
}

/** GET /api/v1/cluster/ha */
export interface HaVmStatus {
  vmid: number;
  name: string;
  resource: string;
  target: "started" | "stopped";
  node: string | null;
  active: boolean;
  failed: boolean;
  managed: boolean;
  priority: number;
  max_restarts: number;
  failures: string[];
  /** Pacemaker's fail count per node (absent from older hostds). */
  fail_counts?: Record<string, number>;
  /** Placement rules naming the VM. */
  rules?: string[];
}

/** GET /api/v1/cluster/shared-pools */
export interface SharedPoolInfo {
  name: string;
  path: string;
  nodes: Record<string, string>;
}

/** GET /api/v1/cluster/what-if?node_fail=NODE */
export interface WhatIf {
  node_fail: string;
  vms: { vmid: number; name: string; now: string | null; after: string | null; outcome: string; detail: string }[];
}

/** GET /api/v1/cluster/resources (the cluster-wide VM view) */
export interface ClusterVm {
  kind: string;
  id: string;
  vmid: number;
  node: string;
  name: string;
}

/** GET/POST /api/v1/cluster/ha/rules */
export interface HaRule {
  id: string;
  kind: "node-affinity" | "together" | "apart";
  vms: number[];
  nodes?: { node: string; priority: number }[];
  hard: boolean;
}

/** The QEMU guest agent (GET /vms/{vmid}/agent, docs/guest-agent.md). */
export type AgentState = "no-channel" | "not-running" | "not-answering" | "ok";
export interface GuestOs {
  id: string | null; name: string | null; pretty_name: string | null; version: string | null;
  version_id: string | null; kernel_release: string | null; kernel_version: string | null; machine: string | null;
}
export interface GuestAddress { family: string; address: string; prefix: number }
export interface GuestInterface { name: string; mac: string | null; addresses: GuestAddress[] }
export interface GuestAgentInfo {
  vmid: number; state: AgentState; message: string;
  hostname: string | null; os: GuestOs | null; interfaces: GuestInterface[];
}

/** GET /cluster/storage-pools: one node's view of a cluster pool. */
export interface ClusterPoolNode {
  node: string;
  device: string;
  connection?: string | null;
  role?: string | null;
  peer_role?: string | null;
  disk?: string | null;
  peer_disk?: string | null;
  sync_percent?: number | null;
  /** iscsi-gfs2, iscsi-lvm: the node has an iSCSI session to the LUN's target. */
  logged_in?: boolean | null;
  /** iscsi-lvm: the node joined the shared VG's lvmlockd lockspace (it can then activate VM
   *  disks). A node joins lazily, when it first starts a VM or changes a disk there after a
   *  reboot: `false` or absent is not a fault by itself. */
  lockspace?: boolean | null;
  /** drbd-gfs2: DRBD's split-brain handler ran on this node (both nodes changed the pool while
   *  apart and DRBD refused to choose; the connection is then usually StandAlone). */
  split_brain?: boolean;
  /** The GFS2 file system is mounted at the pool's path (always false for iscsi-lvm, which
   *  has none). */
  mounted: boolean;
  /** The file system's (iscsi-lvm: the volume group's) size and free space. */
  size_bytes?: number | null;
  free_bytes?: number | null;
  error?: string | null;
}

export interface ClusterPoolStatus {
  name: string;
  type: "drbd-gfs2" | "iscsi-gfs2" | "iscsi-lvm";
  /** Where the GFS2 file system is mounted on every node; iscsi-lvm: the shared VG's
   *  directory `/dev/keel-NAME` (no file system: its LVs are the VM disks). */
  path: string;
  /** creating, ready or "failed: …" */
  state: string;
  /** iscsi-gfs2, iscsi-lvm: the LUN (the CHAP secret is never shown). */
  iscsi?: { portal: string; target: string; lun: number; chap_user: string } | null;
  /** What the operator should know, e.g. members the pool does not reach and what to do. */
  notes?: string[];
  /** Cluster members the pool does not reach yet (they joined after it was made); an
   *  iscsi-gfs2 or iscsi-lvm pool can be extended to them (POST …/extend). Absent from older
   *  servers: taken as none. */
  not_on?: string[];
  nodes: ClusterPoolNode[];
}
