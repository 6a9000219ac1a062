//! The hypervisor engine behind one narrow trait: [`libvirt::Libvirt`] drives the real
//! libvirtd through the `virt` crate; [`fake::FakeHv`] is an in-memory stand-in for unit tests
//! of hostd's decision logic only (never for end-to-end proofs).

pub mod fake;
pub mod libvirt;
pub mod shared_lvm;
pub mod thin;

use keel_api::network::NetworkInfo;
use keel_api::storage::{PoolInfo, VolumeInfo};
use keel_api::vm::{DiskFormat, VmState};

#[derive(Debug, thiserror::Error)]
pub enum HvError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The engine was not asked: the request cannot work on this pool or volume (400).
    #[error("{0}")]
    Refused(String),
    /// LVM (an `lvm-thin` pool's engine) failed.
    #[error("LVM: {0}")]
    Lvm(String),
    #[error("libvirt {op}: {msg}")]
    Engine { op: &'static str, msg: String },
}

pub type HvResult<T> = Result<T, HvError>;

/// Power operations on one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Start,
    /// ACPI power button.
    Shutdown,
    /// Hard power-off.
    Destroy,
    /// ACPI reboot (libvirt restarts the guest after it powers off).
    Reboot,
    /// Hard reset.
    Reset,
    Suspend,
    Resume,
}

/// One row of the domain list: cheap facts, no full XML.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainRow {
    pub name: String,
    pub uuid: String,
    pub state: VmState,
    pub vcpus: u32,
    pub memory_kib: u64,
    pub max_memory_kib: u64,
    pub cpu_time_ns: u64,
    /// Keel metadata element (XML) when the domain carries one.
    pub keel_metadata: Option<String>,
    /// Unix seconds the guest's QEMU started, when running and known.
    pub started_at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BlockCounters {
    pub rd_bytes: i64,
    pub wr_bytes: i64,
    pub rd_req: i64,
    pub wr_req: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetCounters {
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub rx_packets: i64,
    pub tx_packets: i64,
}

/// One domain's counters for the performance graphs (hostd/src/metrics): cumulative CPU time
/// and I/O counters (summed over its disks and NICs), current memory figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainStats {
    /// Running (or paused): the counters below are live. A stopped domain has none.
    pub active: bool,
    pub vcpus: u32,
    pub cpu_time_ns: u64,
    /// Memory the guest currently has (the balloon's size), KiB.
    pub memory_kib: u64,
    /// Memory the guest uses by its own account (balloon driver statistics), KiB.
    pub guest_used_kib: Option<u64>,
    /// Resident memory of the guest's QEMU process on the host, KiB.
    pub rss_kib: Option<u64>,
    pub block: BlockCounters,
    pub net: NetCounters,
}

pub trait Hypervisor: Send + Sync {
    /// e.g. `libvirt 9.0.0, QEMU 7.2.0`.
    fn version(&self) -> HvResult<String>;
    fn list_domains(&self) -> HvResult<Vec<DomainRow>>;
    fn domain(&self, name: &str) -> HvResult<DomainRow>;
    /// Domain XML with secrets; `inactive` gives the persistent config instead of the live one.
    fn domain_xml(&self, name: &str, inactive: bool) -> HvResult<String>;
    fn define(&self, xml: &str) -> HvResult<()>;
    /// Remove the definition (and UEFI NVRAM). The domain must be stopped.
    fn undefine(&self, name: &str) -> HvResult<()>;
    fn power(&self, name: &str, op: Power) -> HvResult<()>;
    fn block_counters(&self, name: &str, target: &str) -> HvResult<BlockCounters>;
    /// Counters of the NIC with this MAC (libvirt accepts the MAC as the interface path).
    fn net_counters(&self, name: &str, mac: &str) -> HvResult<NetCounters>;
    fn set_live_vcpus(&self, name: &str, vcpus: u32) -> HvResult<()>;
    fn set_live_memory(&self, name: &str, mib: u64) -> HvResult<()>;
    /// Give the running domain's VNC server a new password (live only; the persistent config
    /// keeps its own), accepted for new connections until `valid_to` (Unix seconds, UTC).
    fn set_vnc_password(&self, name: &str, password: &str, valid_to: i64) -> HvResult<()>;

    fn list_pools(&self) -> HvResult<Vec<PoolInfo>>;
    fn pool(&self, name: &str) -> HvResult<PoolInfo>;
    /// Deactivate the `iscsi-lvm` disks active on this node that nothing holds open (their VM
    /// stopped), so another node can start it. Returns their paths.
    fn release_idle_disks(&self) -> HvResult<Vec<String>> {
        Ok(Vec::new())
    }
    /// Activate here the `iscsi-lvm` disks among `paths` for an operation that uses them
    /// without QEMU (`who`: what it is, for the refusal when another node holds one). Returns
    /// the paths held, for [`Hypervisor::unhold_disks`]. Nothing to do for other disks.
    fn hold_disks(&self, _who: &str, _paths: &[String]) -> HvResult<Vec<String>> {
        Ok(Vec::new())
    }
    fn unhold_disks(&self, _paths: &[String]) {}
    /// Define, build, start and autostart a `dir` pool unless one of that name exists.
    fn ensure_dir_pool(&self, name: &str, path: &str) -> HvResult<()>;
    fn refresh_pool(&self, name: &str) -> HvResult<()>;
    /// Stop and undefine pool `name` (its files stay); nothing to do when there is none.
    fn undefine_pool(&self, name: &str) -> HvResult<()>;
    fn list_volumes(&self, pool: &str) -> HvResult<Vec<VolumeInfo>>;
    fn volume(&self, pool: &str, name: &str) -> HvResult<VolumeInfo>;
    /// Create a volume; returns its path.
    fn create_volume(
        &self,
        pool: &str,
        name: &str,
        bytes: u64,
        format: DiskFormat,
    ) -> HvResult<String>;
    fn delete_volume(&self, pool: &str, name: &str) -> HvResult<()>;
    /// (pool, volume) of a path, when a pool holds it.
    fn volume_by_path(&self, path: &str) -> HvResult<Option<(String, String)>>;

    fn list_networks(&self) -> HvResult<Vec<NetworkInfo>>;
    /// Define, start and optionally autostart a network.
    fn create_network(&self, xml: &str, autostart: bool) -> HvResult<()>;
    fn delete_network(&self, name: &str) -> HvResult<()>;
    /// Start or stop a defined network (nothing to do when it already is).
    fn set_network_active(&self, name: &str, active: bool) -> HvResult<()>;
    fn set_network_autostart(&self, name: &str, autostart: bool) -> HvResult<()>;

    // ---- performance graphs (hostd/src/metrics).
    /// Counters of one domain: CPU time, memory, block and network I/O summed over devices.
    fn domain_stats(&self, name: &str) -> HvResult<DomainStats> {
        let _ = name;
        Err(unsupported("report domain statistics"))
    }

    // ---- the QEMU guest agent (hostd/src/agent.rs). Every call is bounded by a short
    // agent timeout; an agent that does not answer is an error, never a wait.
    /// Host name, OS and interfaces as the running domain's guest agent reports them.
    fn agent_facts(&self, name: &str) -> HvResult<AgentFacts> {
        let _ = name;
        Err(unsupported("talk to a guest agent"))
    }
    /// Shut the guest down through its agent (returns once the agent accepted the request).
    fn agent_shutdown(&self, name: &str) -> HvResult<()> {
        let _ = name;
        Err(unsupported("shut a guest down through its agent"))
    }
    /// Freeze the guest's file systems through its agent; returns how many it froze.
    fn fs_freeze(&self, name: &str) -> HvResult<u32> {
        let _ = name;
        Err(unsupported("freeze guest file systems"))
    }
    /// Thaw the guest's file systems; returns how many it thawed.
    fn fs_thaw(&self, name: &str) -> HvResult<u32> {
        let _ = name;
        Err(unsupported("thaw guest file systems"))
    }

    // ---- snapshots and disk growth (hostd/src/snapshots.rs). Engines without them say so.
    /// The domain's snapshots as libvirt describes them (any order).
    fn list_snapshots(&self, name: &str) -> HvResult<Vec<SnapshotRow>> {
        let _ = name;
        Err(unsupported("list snapshots"))
    }
    /// The domain definition libvirt saved with a snapshot (the `<domain>` inside its
    /// `<domainsnapshot>`, with secrets): the VM's configuration at that snapshot.
    fn snapshot_domain_xml(&self, name: &str, snapshot: &str) -> HvResult<String> {
        let _ = (name, snapshot);
        Err(unsupported("read snapshots"))
    }
    /// Create a snapshot from `<domainsnapshot>` XML (internal: memory too when running).
    fn create_snapshot(&self, name: &str, xml: &str) -> HvResult<()> {
        let _ = (name, xml);
        Err(unsupported("create snapshots"))
    }
    /// Revert to a snapshot; `run`: leave the guest running afterwards.
    fn revert_snapshot(&self, name: &str, snapshot: &str, run: bool) -> HvResult<()> {
        let _ = (name, snapshot, run);
        Err(unsupported("revert to snapshots"))
    }
    /// Delete one snapshot; its children are re-parented onto its parent.
    fn delete_snapshot(&self, name: &str, snapshot: &str) -> HvResult<()> {
        let _ = (name, snapshot);
        Err(unsupported("delete snapshots"))
    }
    /// Grow a running domain's disk (by target, e.g. `vda`) to `bytes`.
    fn block_resize(&self, name: &str, target: &str, bytes: u64) -> HvResult<()> {
        let _ = (name, target, bytes);
        Err(unsupported("resize a running disk"))
    }
    /// Grow a volume to `bytes`.
    fn resize_volume(&self, pool: &str, volume: &str, bytes: u64) -> HvResult<()> {
        let _ = (pool, volume, bytes);
        Err(unsupported("resize volumes"))
    }

    // ---- hot-plug (hostd/src/hotplug.rs): the running domain only; the persistent
    // definition is changed by `define`.
    /// Attach a device (`<disk>`, `<interface>` XML) to the running domain.
    fn attach_device_live(&self, name: &str, xml: &str) -> HvResult<()> {
        let _ = (name, xml);
        Err(unsupported("hot-plug devices"))
    }
    /// Ask the running domain's guest to release a device; returns once requested (the
    /// device may stay until the guest lets go: callers poll the live XML).
    fn detach_device_live(&self, name: &str, xml: &str) -> HvResult<()> {
        let _ = (name, xml);
        Err(unsupported("hot-unplug devices"))
    }
    /// Replace Keel's metadata element of the running domain (`xml` without namespace
    /// prefixes: libvirt puts it into Keel's namespace).
    fn set_live_metadata(&self, name: &str, xml: &str) -> HvResult<()> {
        let _ = (name, xml);
        Err(unsupported("change live metadata"))
    }

    // ---- migration (hostd/src/migration): peer-to-peer, this node's libvirtd drives it.
    /// The running domain's XML as libvirt would send it to another host (migratable, with
    /// secrets), the base of the target's definition.
    fn migratable_xml(&self, name: &str) -> HvResult<String> {
        let _ = name;
        Err(unsupported("migrate"))
    }
    /// Migrate the running domain (blocks until libvirt's job ends).
    fn migrate(&self, name: &str, call: &MigrateCall) -> HvResult<()> {
        let _ = (name, call);
        Err(unsupported("migrate"))
    }
    /// Progress of the domain's running job (None: no job).
    fn job_progress(&self, name: &str) -> HvResult<Option<JobProgress>> {
        let _ = name;
        Err(unsupported("report job progress"))
    }
    /// Abort the domain's running job (a migration: the guest keeps running here).
    fn abort_job(&self, name: &str) -> HvResult<()> {
        let _ = name;
        Err(unsupported("abort jobs"))
    }
    /// Statistics of the last completed job of domain `name` on the libvirtd at `uri` (the
    /// target of a migration: downtime and totals are known there).
    fn completed_job_at(&self, uri: &str, name: &str) -> HvResult<Option<JobProgress>> {
        let _ = (uri, name);
        Err(unsupported("read a peer's job statistics"))
    }
    /// Copy volume `pool/volume` into the pool of the same name of the libvirtd at `uri`
    /// (created there with the same capacity and format, then streamed); `progress(done,
    /// total)` in bytes. Returns the bytes copied.
    fn copy_volume_to(
        &self,
        uri: &str,
        pool: &str,
        volume: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> HvResult<u64> {
        let _ = (uri, pool, volume, progress);
        Err(unsupported("copy volumes to another node"))
    }
    /// Delete `pool/volume` on the libvirtd at `uri` (absent: nothing to do).
    fn delete_volume_at(&self, uri: &str, pool: &str, volume: &str) -> HvResult<()> {
        let _ = (uri, pool, volume);
        Err(unsupported("delete volumes on another node"))
    }
    /// CPU models the libvirtd at `uri` can give a `virttype` (`kvm`, `qemu`) guest (its
    /// domain capabilities' custom models not marked unusable).
    fn cpu_models_at(&self, uri: &str, virttype: &str) -> HvResult<Vec<String>> {
        let _ = (uri, virttype);
        Err(unsupported("read a peer's CPU models"))
    }
    /// Define a domain on the libvirtd at `uri`.
    fn define_at(&self, uri: &str, xml: &str) -> HvResult<()> {
        let _ = (uri, xml);
        Err(unsupported("define domains on another node"))
    }
}

/// One live migration as libvirt is asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateCall {
    /// The target's libvirtd (`qemu+tls://HOST/system…`).
    pub dest_uri: String,
    /// Where QEMU's migration stream goes (`tcp://HOST`), TLS-wrapped by QEMU.
    pub migrate_uri: String,
    /// The name the target's certificate must carry (QEMU and NBD TLS).
    pub tls_destination: String,
    /// The live definition for the target (paths of the target's pools).
    pub dest_xml: String,
    /// The persistent definition for the target.
    pub persist_xml: String,
    /// Disks (targets such as `vda`) copied over NBD.
    pub copy_disks: Vec<String>,
    pub bandwidth_mib_s: Option<u64>,
    pub max_downtime_ms: Option<u64>,
    pub auto_converge: bool,
    /// Pass `VIR_MIGRATE_UNSAFE`: disks on a shared pool libvirt does not recognize as shared.
    pub unsafe_shared: bool,
}

/// A job's progress as libvirt reports it (bytes, ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobProgress {
    pub data_total: u64,
    pub data_processed: u64,
    pub data_remaining: u64,
    pub mem_dirty_rate: u64,
    pub mem_iteration: u64,
    pub disk_total: u64,
    pub disk_processed: u64,
    pub time_elapsed_ms: u64,
    pub downtime_ms: Option<u64>,
}

fn unsupported(what: &str) -> HvError {
    HvError::Conflict(format!("this hypervisor engine cannot {what}"))
}

/// One snapshot of a domain, from libvirt's snapshot XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub name: String,
    pub description: Option<String>,
    pub parent: Option<String>,
    /// Unix seconds.
    pub created: i64,
    /// libvirt's word for the domain state: `running`, `paused`, `shutoff`, `disk-snapshot`…
    pub state: String,
    /// Memory state included (internal snapshot of an active domain).
    pub memory: bool,
    pub current: bool,
}

/// What a guest agent reported (hostd/src/agent.rs turns it into the API's answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFacts {
    pub hostname: Option<String>,
    /// `os.*` fields of libvirt's guest info without the prefix (`id`, `pretty-name`, …).
    pub os: Vec<(String, String)>,
    pub interfaces: Vec<keel_api::agent::GuestInterface>,
}
