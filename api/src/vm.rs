//! The VM specification (what a guest should be) and its status (what it is now).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;

/// Lowest VM id Keel hands out; ids below are reserved (as in Proxmox VE).
pub const VMID_MIN: u32 = 100;
/// Highest VM id.
pub const VMID_MAX: u32 = 999_999_999;
/// Keel's MAC prefix: locally administered, unicast (`02`), then "KE" in ASCII.
pub const MAC_PREFIX: [u8; 3] = [0x02, 0x4b, 0x45];
/// Upper bounds that catch typos (a node with more is not a node we target).
pub const MAX_VCPUS: u32 = 288;
pub const MAX_MEMORY_MIB: u64 = 16 * 1024 * 1024;
pub const MIN_MEMORY_MIB: u64 = 16;
pub const MAX_DISKS: usize = 16;
pub const MAX_NICS: usize = 16;

/// The desired configuration of one guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Cluster-unique id, at least 100.
    #[schema(minimum = 100, maximum = 999_999_999)]
    pub vmid: u32,
    /// Name: letters, digits, `-` and `.`; starts with a letter or digit; at most 63 characters.
    #[schema(
        pattern = r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$",
        min_length = 1,
        max_length = 63
    )]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// vCPUs online at boot.
    #[serde(default = "default_vcpus")]
    #[schema(minimum = 1, maximum = 288)]
    pub vcpus: u32,
    /// Hot-plug maximum; vCPUs up to this can be added while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 288)]
    pub max_vcpus: Option<u32>,
    #[serde(default)]
    #[schema(value_type = String, example = "default")]
    pub cpu_model: CpuModel,
    /// Memory the guest boots with (and its maximum), MiB.
    #[serde(default = "default_memory")]
    #[schema(minimum = 16, maximum = 16_777_216)]
    pub memory_mib: u64,
    /// Balloon target, MiB: memory given to the guest while running (≤ memory_mib).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 16, maximum = 16_777_216)]
    pub balloon_mib: Option<u64>,
    #[serde(default)]
    pub machine: Machine,
    #[serde(default)]
    pub firmware: Firmware,
    /// Boot order: `cdrom`, `disk0`…, `net0`…; empty means disks, then cdrom, then NICs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub boot: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub disks: Vec<DiskSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdrom: Option<CdromSpec>,
    /// Direct kernel boot: QEMU starts a Linux kernel (and initramfs) from volumes of a pool,
    /// with no boot loader; it wins over `boot` (docs/vm-spec.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelBoot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub nics: Vec<NicSpec>,
    /// VNC console on 127.0.0.1 (reached through hostd's authenticated proxy).
    #[serde(default = "default_true")]
    pub vnc: bool,
    /// Serial console (a pty, logged to the state directory).
    #[serde(default = "default_true")]
    pub serial: bool,
    /// virtio channel for qemu-guest-agent.
    #[serde(default = "default_true")]
    pub guest_agent: bool,
    #[serde(default)]
    pub on_crash: OnCrash,
    /// cloud-init: Keel writes a NoCloud seed ISO from these settings and attaches it as a
    /// second CD-ROM; regenerated when they change (docs/cloud-init.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<crate::cloudinit::CloudInitSpec>,
}

fn default_vcpus() -> u32 {
    1
}
fn default_memory() -> u64 {
    512
}
fn default_true() -> bool {
    true
}

/// CPU model: `default` (host-model under KVM, QEMU's default under TCG), `host-model`,
/// `host-passthrough`, `maximum` (every feature the accelerator offers; not migratable), or a
/// named libvirt model such as `Haswell-noTSX` or `qemu64`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum CpuModel {
    #[default]
    Default,
    HostModel,
    HostPassthrough,
    Maximum,
    Named(String),
}

impl From<String> for CpuModel {
    fn from(s: String) -> Self {
        match s.as_str() {
            "default" | "" => CpuModel::Default,
            "host-model" => CpuModel::HostModel,
            "host-passthrough" => CpuModel::HostPassthrough,
            "maximum" => CpuModel::Maximum,
            _ => CpuModel::Named(s),
        }
    }
}

impl From<CpuModel> for String {
    fn from(m: CpuModel) -> Self {
        match m {
            CpuModel::Default => "default".into(),
            CpuModel::HostModel => "host-model".into(),
            CpuModel::HostPassthrough => "host-passthrough".into(),
            CpuModel::Maximum => "maximum".into(),
            CpuModel::Named(n) => n,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    #[default]
    Q35,
    Pc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    #[default]
    Bios,
    /// OVMF, selected by libvirt's firmware auto-selection.
    Uefi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnCrash {
    #[default]
    Destroy,
    Restart,
    Preserve,
    CoredumpDestroy,
    CoredumpRestart,
}

/// One disk. Exactly one source: an existing `volume` in `pool`, a new volume of `size_mib`
/// in `pool`, or (for VMs defined outside Keel) a plain `path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Size of a new volume, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 67_108_864)]
    pub size_mib: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default)]
    pub format: DiskFormat,
    #[serde(default)]
    pub bus: DiskBus,
    #[serde(default)]
    pub cache: DiskCache,
    #[serde(default)]
    pub io: DiskIo,
    #[serde(default, skip_serializing_if = "Throttle::is_empty")]
    pub throttle: Throttle,
    /// Serial number the guest sees (letters, digits, `-`, `_`; at most 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,20}$", min_length = 1, max_length = 20)]
    pub serial: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    #[default]
    Qcow2,
    Raw,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskBus {
    #[default]
    Virtio,
    Sata,
    Scsi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskCache {
    /// O_DIRECT, no host page cache: required for safe live migration.
    #[default]
    None,
    Writeback,
    Writethrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskIo {
    #[default]
    Native,
    Threads,
}

/// Optional I/O limits; absent fields mean unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_iops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_iops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_iops: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_bytes: Option<u64>,
}

impl Throttle {
    pub fn is_empty(&self) -> bool {
        *self == Throttle::default()
    }
}

/// The CD-ROM drive: an ISO volume in a pool, or a path (foreign VMs); none of them = empty drive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CdromSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Most bytes of a kernel command line Keel accepts (Linux takes 2048 on x86).
pub const MAX_CMDLINE: usize = 2048;

/// Direct kernel boot: a Linux kernel image and an optional initramfs, both volumes of one
/// pool (upload them like ISOs), started with `cmdline`. For appliances, tiny test guests and
/// rescue kernels: no boot loader, no firmware boot menu, seconds to the kernel's first line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelBoot {
    /// Pool holding the kernel (and initramfs) volumes.
    pub pool: String,
    /// Volume of the kernel image (a bzImage, such as a copy of `/boot/vmlinuz-*`).
    pub kernel: String,
    /// Volume of the initramfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// Kernel command line: printable ASCII, at most 2048 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2048)]
    pub cmdline: Option<String>,
}

/// One NIC, on a libvirt network or a host bridge (exactly one of the two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    #[serde(default)]
    pub model: NicModel,
    /// Generated in Keel's prefix 02:4b:45 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NicModel {
    #[default]
    Virtio,
    E1000,
}

impl NicModel {
    pub fn as_str(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio",
            NicModel::E1000 => "e1000",
        }
    }
}

pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Pool, volume and bridge names: no path separators, no leading dot, no control characters.
pub fn valid_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

/// Parse `aa:bb:cc:dd:ee:ff` (either case) into bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(out)
}

impl VmSpec {
    /// Check every field; the first problem found is returned with its JSON path.
    pub fn validate(&self) -> Result<(), FieldError> {
        let err = |field: &str, msg: String| Err(FieldError::new(field, msg));
        if !(VMID_MIN..=VMID_MAX).contains(&self.vmid) {
            return err(
                "vmid",
                format!(
                    "vmid {} is out of range: use an integer from {VMID_MIN} to {VMID_MAX}",
                    self.vmid
                ),
            );
        }
        if !valid_name(&self.name) {
            return err(
                "name",
                format!(
                    "name {:?} is invalid: use 1-63 letters, digits, '-' or '.', starting with a letter or digit",
                    self.name
                ),
            );
        }
        if let Some(d) = &self.description {
            if d.len() > 8192 {
                return err(
                    "description",
                    "description is longer than 8192 bytes".into(),
                );
            }
        }
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return err(
                "vcpus",
                format!("vcpus {} is out of range: use 1 to {MAX_VCPUS}", self.vcpus),
            );
        }
        if let Some(max) = self.max_vcpus {
            if max < self.vcpus || max > MAX_VCPUS {
                return err(
                    "max_vcpus",
                    format!(
                        "max_vcpus {max} must be between vcpus ({}) and {MAX_VCPUS}",
                        self.vcpus
                    ),
                );
            }
        }
        if let CpuModel::Named(m) = &self.cpu_model {
            if m.is_empty()
                || !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return err(
                    "cpu_model",
                    format!(
                        "cpu_model {m:?} is not a CPU model name (letters, digits, '-', '_', '.')"
                    ),
                );
            }
        }
        if !(MIN_MEMORY_MIB..=MAX_MEMORY_MIB).contains(&self.memory_mib) {
            return err(
                "memory_mib",
                format!(
                    "memory_mib {} is out of range: use {MIN_MEMORY_MIB} to {MAX_MEMORY_MIB} MiB",
                    self.memory_mib
                ),
            );
        }
        if let Some(b) = self.balloon_mib {
            if b < MIN_MEMORY_MIB || b > self.memory_mib {
                return err(
                    "balloon_mib",
                    format!(
                        "balloon_mib {b} must be between {MIN_MEMORY_MIB} and memory_mib ({})",
                        self.memory_mib
                    ),
                );
            }
        }
        if self.disks.len() > MAX_DISKS {
            return err("disks", format!("at most {MAX_DISKS} disks are supported"));
        }
        if self.nics.len() > MAX_NICS {
            return err("nics", format!("at most {MAX_NICS} NICs are supported"));
        }
        for (i, d) in self.disks.iter().enumerate() {
            d.validate(&format!("disks[{i}]"))?;
        }
        if let Some(c) = &self.cdrom {
            let has_vol = c.pool.is_some() || c.volume.is_some();
            if has_vol && c.path.is_some() {
                return err(
                    "cdrom",
                    "give either pool + volume or path, not both".into(),
                );
            }
            if has_vol && (c.pool.is_none() || c.volume.is_none()) {
                return err("cdrom", "an ISO volume needs both pool and volume".into());
            }
            for (f, v) in [("cdrom.pool", &c.pool), ("cdrom.volume", &c.volume)] {
                if let Some(v) = v {
                    if !valid_object_name(v) {
                        return err(f, format!("{v:?} is not a valid name"));
                    }
                }
            }
        }
        if let Some(k) = &self.kernel {
            for (f, v) in [
                ("kernel.pool", Some(&k.pool)),
                ("kernel.kernel", Some(&k.kernel)),
                ("kernel.initrd", k.initrd.as_ref()),
            ] {
                if let Some(v) = v {
                    if !valid_object_name(v) {
                        return err(f, format!("{v:?} is not a valid name"));
                    }
                }
            }
            if let Some(c) = &k.cmdline {
                if c.len() > MAX_CMDLINE {
                    return err(
                        "kernel.cmdline",
                        format!(
                            "the kernel command line has {} bytes; Linux takes at most {MAX_CMDLINE}",
                            c.len()
                        ),
                    );
                }
                if c.trim() != c {
                    return err(
                        "kernel.cmdline",
                        "the kernel command line starts or ends with a space: remove it".into(),
                    );
                }
                if let Some(b) = c.chars().find(|c| !(' '..='~').contains(c)) {
                    return err(
                        "kernel.cmdline",
                        format!("the kernel command line holds {b:?}: use printable ASCII only (no newlines or tabs)"),
                    );
                }
            }
        }
        let mut macs = Vec::new();
        for (i, n) in self.nics.iter().enumerate() {
            let f = format!("nics[{i}]");
            match (&n.network, &n.bridge) {
                (Some(_), Some(_)) => {
                    return err(&f, "give either network or bridge, not both".into())
                }
                (None, None) => {
                    return err(
                        &f,
                        "a NIC needs a network (libvirt network) or a bridge (host bridge)".into(),
                    )
                }
                (Some(v), None) | (None, Some(v)) => {
                    if !valid_object_name(v) || v.len() > 15 && n.bridge.is_some() {
                        return err(&f, format!("{v:?} is not a valid network or bridge name"));
                    }
                }
            }
            if let Some(m) = &n.mac {
                match parse_mac(m) {
                    None => {
                        return err(
                            &format!("{f}.mac"),
                            format!("{m:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"),
                        )
                    }
                    Some(b) if b[0] & 1 == 1 => {
                        return err(
                            &format!("{f}.mac"),
                            format!("{m} is a multicast address; a NIC needs a unicast MAC"),
                        )
                    }
                    Some(b) => {
                        if macs.contains(&b) {
                            return err(
                                &format!("{f}.mac"),
                                format!("{m} is used by another NIC of this VM"),
                            );
                        }
                        macs.push(b);
                    }
                }
            }
        }
        if let Some(c) = &self.cloud_init {
            c.validate(self.nics.len())?;
            if c.hostname.is_none() && !crate::cloudinit::valid_hostname(&self.name) {
                return err(
                    "cloud_init.hostname",
                    format!(
                        "the VM's name {:?} is not a valid host name for the guest: set cloud_init.hostname",
                        self.name
                    ),
                );
            }
        }
        for (i, b) in self.boot.iter().enumerate() {
            let ok = match b.as_str() {
                "cdrom" => self.cdrom.is_some(),
                s if s.starts_with("disk") => {
                    s[4..].parse::<usize>().is_ok_and(|n| n < self.disks.len())
                }
                s if s.starts_with("net") => {
                    s[3..].parse::<usize>().is_ok_and(|n| n < self.nics.len())
                }
                _ => false,
            };
            if !ok {
                let mut have: Vec<String> =
                    (0..self.disks.len()).map(|i| format!("disk{i}")).collect();
                if self.cdrom.is_some() {
                    have.push("cdrom".into());
                }
                have.extend((0..self.nics.len()).map(|i| format!("net{i}")));
                let valid = if have.is_empty() {
                    "this VM has no disk, CD-ROM or NIC".to_string()
                } else {
                    format!("valid: {}", have.join(", "))
                };
                return err(
                    &format!("boot[{i}]"),
                    format!("boot device {b:?} does not exist ({valid})"),
                );
            }
            if self.boot[..i].contains(b) {
                return err(
                    &format!("boot[{i}]"),
                    format!("boot device {b:?} is listed twice"),
                );
            }
        }
        Ok(())
    }

    /// The boot order actually used: the explicit one, or disks, cdrom, NICs.
    pub fn effective_boot(&self) -> Vec<String> {
        if !self.boot.is_empty() {
            return self.boot.clone();
        }
        let mut v: Vec<String> = (0..self.disks.len()).map(|i| format!("disk{i}")).collect();
        if self.cdrom.is_some() {
            v.push("cdrom".into());
        }
        v.extend((0..self.nics.len()).map(|i| format!("net{i}")));
        v
    }
}

impl DiskSpec {
    fn validate(&self, f: &str) -> Result<(), FieldError> {
        let err = |field: String, msg: String| Err(FieldError::new(&field, msg));
        match (&self.pool, &self.volume, self.size_mib, &self.path) {
            (Some(_), Some(_), None, None)
            | (Some(_), None, Some(_), None)
            | (None, None, None, Some(_)) => {}
            (Some(_), Some(_), Some(_), _) => {
                return err(
                    f.into(),
                    "give either volume (existing) or size_mib (new), not both".into(),
                )
            }
            (_, _, _, Some(_)) => {
                return err(
                    f.into(),
                    "a disk with a path cannot also name a pool, volume or size".into(),
                )
            }
            (None, _, _, None) => {
                return err(
                    format!("{f}.pool"),
                    "a disk needs a pool (with volume or size_mib) or a path".into(),
                )
            }
            (Some(_), None, None, None) => {
                return err(
                    f.into(),
                    "a disk needs volume (existing) or size_mib (new)".into(),
                )
            }
        }
        if let Some(p) = &self.pool {
            if !valid_object_name(p) {
                return err(
                    format!("{f}.pool"),
                    format!("{p:?} is not a valid pool name"),
                );
            }
        }
        if let Some(v) = &self.volume {
            if !valid_object_name(v) {
                return err(
                    format!("{f}.volume"),
                    format!("{v:?} is not a valid volume name"),
                );
            }
        }
        if let Some(p) = &self.path {
            if !p.starts_with('/') {
                return err(
                    format!("{f}.path"),
                    format!("{p:?} is not an absolute path"),
                );
            }
        }
        if let Some(s) = self.size_mib {
            if s == 0 || s > 64 * 1024 * 1024 {
                return err(
                    format!("{f}.size_mib"),
                    format!(
                        "size_mib {s} is out of range: use 1 to {} MiB (64 TiB)",
                        64 * 1024 * 1024
                    ),
                );
            }
        }
        if let Some(s) = &self.serial {
            if s.is_empty()
                || s.len() > 20
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return err(
                    format!("{f}.serial"),
                    format!("serial {s:?} is invalid: 1-20 letters, digits, '-' or '_'"),
                );
            }
        }
        for (name, v) in [
            ("total_iops", self.throttle.total_iops),
            ("read_iops", self.throttle.read_iops),
            ("write_iops", self.throttle.write_iops),
            ("total_bytes", self.throttle.total_bytes),
            ("read_bytes", self.throttle.read_bytes),
            ("write_bytes", self.throttle.write_bytes),
        ] {
            if v == Some(0) {
                return err(
                    format!("{f}.throttle.{name}"),
                    "0 is not a limit: leave the field out for unlimited".into(),
                );
            }
        }
        if self.io == DiskIo::Native && self.cache != DiskCache::None {
            return err(
                format!("{f}.io"),
                "io 'native' needs cache 'none' (O_DIRECT); use io 'threads' with writeback or writethrough".into(),
            );
        }
        let t = &self.throttle;
        if t.total_iops.is_some() && (t.read_iops.is_some() || t.write_iops.is_some()) {
            return err(
                format!("{f}.throttle"),
                "total_iops cannot be combined with read_iops/write_iops".into(),
            );
        }
        if t.total_bytes.is_some() && (t.read_bytes.is_some() || t.write_bytes.is_some()) {
            return err(
                format!("{f}.throttle"),
                "total_bytes cannot be combined with read_bytes/write_bytes".into(),
            );
        }
        Ok(())
    }
}

/// Run state of a guest, as libvirt reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Running,
    Paused,
    /// Shutting down (ACPI request in progress).
    Shutdown,
    Stopped,
    Crashed,
    Suspended,
    Unknown,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Shutdown => "shutdown",
            VmState::Stopped => "stopped",
            VmState::Crashed => "crashed",
            VmState::Suspended => "suspended",
            VmState::Unknown => "unknown",
        }
    }
    /// Whether the guest's QEMU process exists.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            VmState::Running | VmState::Paused | VmState::Shutdown | VmState::Suspended
        )
    }
}

/// One line of the VM list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VmSummary {
    /// Absent for domains defined outside Keel (adopt them to give them one).
    pub vmid: Option<u32>,
    pub name: String,
    pub uuid: String,
    pub state: VmState,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Seconds since the guest started; absent when stopped.
    pub uptime_s: Option<u64>,
    /// Defined by Keel (carries Keel metadata).
    pub managed: bool,
    /// A template: never started, its disks never written; clone it (docs/clones.md).
    #[serde(default)]
    pub template: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DiskStats {
    pub dev: String,
    pub rd_bytes: i64,
    pub wr_bytes: i64,
    pub rd_req: i64,
    pub wr_req: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NicStats {
    pub dev: String,
    pub mac: String,
    pub rx_bytes: i64,
    pub tx_bytes: i64,
    pub rx_packets: i64,
    pub tx_packets: i64,
}

/// Live status of one guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VmStatus {
    pub vmid: Option<u32>,
    pub name: String,
    pub uuid: String,
    pub state: VmState,
    pub uptime_s: Option<u64>,
    /// Total vCPU time consumed, nanoseconds.
    pub cpu_time_ns: u64,
    pub vcpus: u32,
    /// Memory currently given to the guest, MiB.
    pub memory_mib: u64,
    pub max_memory_mib: u64,
    pub disks: Vec<DiskStats>,
    pub nics: Vec<NicStats>,
    /// The persistent config differs from the running one (applied at next boot).
    pub pending_changes: bool,
    /// Accelerator the domain runs on: `kvm` or `qemu` (TCG).
    pub domain_type: String,
}

/// Full view of a VM: its spec and, when running, the live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VmConfig {
    pub spec: VmSpec,
    pub managed: bool,
    /// Fields whose persistent value differs from the running guest's.
    pub pending: Vec<String>,
    /// A template: never started, its disks never written; clone it (docs/clones.md).
    #[serde(default)]
    pub template: bool,
}

/// Request to shut a VM down with ACPI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShutdownRequest {
    /// Seconds to wait for the guest (default 60).
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Hard-stop the guest if it is still running after the timeout.
    #[serde(default)]
    pub force_stop: bool,
}

/// Delete options.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, utoipa::IntoParams,
)]
pub struct DeleteQuery {
    /// Also delete the VM's disk volumes (never ISO volumes).
    #[serde(default)]
    pub purge_volumes: bool,
}

/// Adopt a domain defined outside Keel: give it a vmid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdoptRequest {
    pub name: String,
    pub vmid: u32,
}

impl AdoptRequest {
    /// The vmid in range and a domain name given.
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(VMID_MIN..=VMID_MAX).contains(&self.vmid) {
            return Err(FieldError::new(
                "vmid",
                format!(
                    "vmid {} is out of range: use {VMID_MIN} to {VMID_MAX}",
                    self.vmid
                ),
            ));
        }
        if self.name.is_empty() {
            return Err(FieldError::new(
                "name",
                "give the name of the libvirt domain to adopt",
            ));
        }
        Ok(())
    }
}

/// A one-time console ticket for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VncTicket {
    /// Pass as `vncticket` to the `vncwebsocket` endpoint within 60 s; valid once.
    pub ticket: String,
    /// The VM's VNC password (VNC authentication inside the proxied stream).
    pub password: String,
    /// Unix seconds.
    pub expires: i64,
}

/// The lowest free vmid on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NextId {
    pub vmid: u32,
}
