//! `VmSpec` ⇄ libvirt domain XML, through the [`Element`] model.
//!
//! Rendering needs a [`RenderCtx`]: facts that are not in the spec but decided by the host
//! (accelerator, resolved volume paths, the VNC password, where serial output is logged).
//! Parsing reads any libvirt domain back; Keel's own fields (vmid, pool/volume names, the
//! "default" CPU model) come from the `<metadata>` element in Keel's namespace, so domains
//! defined outside Keel parse too (with `managed == false`).

use keel_api::vm::{
    CdromSpec, CpuModel, DiskBus, DiskCache, DiskFormat, DiskIo, DiskSpec, Firmware, KernelBoot,
    Machine, NicModel, NicSpec, OnCrash, Throttle, VmSpec,
};
use serde::{Deserialize, Serialize};

use crate::xml::{Element, XmlError};

/// XML namespace of Keel's domain metadata.
pub const KEEL_NS: &str = "https://keel.dev/xmlns/vm/1";
const KEEL_PREFIX: &str = "keel";
/// Free PCIe root ports a q35 guest gets for disks and NICs hot-plugged while it runs.
/// libvirt alias (user aliases start with `ua-`) of the cloud-init seed CD-ROM.
pub const CLOUDINIT_ALIAS: &str = "ua-keel-cloudinit";
pub const HOTPLUG_PORTS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainType {
    Kvm,
    /// TCG (software emulation).
    Qemu,
}

impl DomainType {
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "qemu",
        }
    }
}

/// Host-side facts needed to render a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderCtx {
    pub domain_type: DomainType,
    pub uuid: String,
    /// Resolved file path of each disk, in spec order.
    pub disk_paths: Vec<String>,
    /// Resolved path of the CD-ROM image (None: empty drive).
    #[serde(default)]
    pub cdrom_path: Option<String>,
    /// Path of the cloud-init seed ISO (when the spec has cloud_init).
    #[serde(default)]
    pub cloudinit_path: Option<String>,
    /// Resolved paths of the kernel and initramfs volumes (when the spec has `kernel`).
    #[serde(default)]
    pub kernel_path: Option<String>,
    #[serde(default)]
    pub initrd_path: Option<String>,
    /// VNC password (VNC allows at most 8 characters).
    #[serde(default)]
    pub vnc_password: Option<String>,
    /// File the serial console output is appended to (by virtlogd).
    #[serde(default)]
    pub serial_log: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("domain XML: {0}")]
    Invalid(String),
    #[error("render: {0}")]
    Render(String),
}

/// What Keel reads back from a libvirt domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedDomain {
    pub spec: VmSpec,
    /// Carries Keel metadata (has a vmid).
    pub managed: bool,
    pub uuid: String,
    pub domain_type: String,
    /// Disk paths in spec order (also for disks Keel maps to pool/volume).
    pub disk_paths: Vec<String>,
    pub cdrom_path: Option<String>,
    /// The cloud-init seed ISO attached (`CLOUDINIT_ALIAS`).
    pub cloudinit_path: Option<String>,
    /// Direct kernel boot: `<os><kernel>` and `<initrd>` (also for domains defined outside Keel).
    pub kernel_path: Option<String>,
    pub initrd_path: Option<String>,
    /// Target device names of disks (`vda`…) and NIC MACs, for statistics.
    pub disk_targets: Vec<String>,
    pub vnc_password: Option<String>,
    /// TCP port of the VNC server while running (libvirt picks it: autoport).
    pub vnc_port: Option<u16>,
    pub serial_log: Option<String>,
}

fn disk_target(bus: DiskBus, idx_virtio: &mut u32, idx_scsi: &mut u32) -> String {
    let (prefix, n) = match bus {
        DiskBus::Virtio => ("vd", idx_virtio),
        DiskBus::Sata | DiskBus::Scsi => ("sd", idx_scsi),
    };
    let name = format!("{prefix}{}", dev_letters(*n));
    *n += 1;
    name
}

/// 0 → a, 25 → z, 26 → aa (as Linux names disks).
/// A read-only CD-ROM drive holding `path` (empty without one): SATA `sdX` at letter `slot`
/// on q35, IDE `ide_dev` on pc.
fn cdrom_drive(machine: Machine, slot: u32, ide_dev: &str, path: Option<&str>) -> Element {
    let (bus, dev) = match machine {
        Machine::Q35 => ("sata", format!("sd{}", dev_letters(slot))),
        Machine::Pc => ("ide", ide_dev.to_string()),
    };
    Element::new("disk")
        .attr("type", "file")
        .attr("device", "cdrom")
        .child(
            Element::new("driver")
                .attr("name", "qemu")
                .attr("type", "raw"),
        )
        .child_opt(path.map(|p| Element::new("source").attr("file", p)))
        .child(Element::new("target").attr("dev", dev).attr("bus", bus))
        .child(Element::new("readonly"))
}

fn dev_letters(mut n: u32) -> String {
    let mut s = Vec::new();
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    s.iter().rev().collect()
}

fn bus_str(b: DiskBus) -> &'static str {
    match b {
        DiskBus::Virtio => "virtio",
        DiskBus::Sata => "sata",
        DiskBus::Scsi => "scsi",
    }
}

fn cache_str(c: DiskCache) -> &'static str {
    match c {
        DiskCache::None => "none",
        DiskCache::Writeback => "writeback",
        DiskCache::Writethrough => "writethrough",
    }
}

fn on_crash_str(c: OnCrash) -> &'static str {
    match c {
        OnCrash::Destroy => "destroy",
        OnCrash::Restart => "restart",
        OnCrash::Preserve => "preserve",
        OnCrash::CoredumpDestroy => "coredump-destroy",
        OnCrash::CoredumpRestart => "coredump-restart",
    }
}

fn cpu_model_meta(m: &CpuModel) -> String {
    match m {
        CpuModel::Default => "default".into(),
        CpuModel::HostModel => "host-model".into(),
        CpuModel::HostPassthrough => "host-passthrough".into(),
        CpuModel::Maximum => "maximum".into(),
        CpuModel::Named(n) => n.clone(),
    }
}

fn k(name: &str) -> String {
    format!("{KEEL_PREFIX}:{name}")
}

/// Render a validated spec (with every NIC MAC filled in) to domain XML.
pub fn render(spec: &VmSpec, ctx: &RenderCtx) -> Result<String, DomainError> {
    Ok(render_element(spec, ctx)?.render())
}

pub fn render_element(spec: &VmSpec, ctx: &RenderCtx) -> Result<Element, DomainError> {
    if ctx.disk_paths.len() != spec.disks.len() {
        return Err(DomainError::Render(format!(
            "{} disks but {} resolved paths",
            spec.disks.len(),
            ctx.disk_paths.len()
        )));
    }
    let boot = spec.effective_boot();
    let boot_order = |dev: &str| -> Option<Element> {
        boot.iter()
            .position(|b| b == dev)
            .map(|i| Element::new("boot").attr("order", i + 1))
    };

    // Keel metadata.
    let mut meta = Element::new(&k("vm"))
        .attr(&format!("xmlns:{KEEL_PREFIX}"), KEEL_NS)
        .child(Element::new(&k("vmid")).text(spec.vmid))
        .child(Element::new(&k("cpu-model")).text(cpu_model_meta(&spec.cpu_model)));
    for (i, d) in spec.disks.iter().enumerate() {
        if let (Some(p), Some(v)) = (&d.pool, &d.volume) {
            meta.push(
                Element::new(&k("disk"))
                    .attr("index", i)
                    .attr("pool", p)
                    .attr("volume", v),
            );
        }
    }
    if let Some(CdromSpec {
        pool: Some(p),
        volume: Some(v),
        ..
    }) = &spec.cdrom
    {
        meta.push(Element::new(&k("cdrom")).attr("pool", p).attr("volume", v));
    }
    if let Some(kb) = &spec.kernel {
        meta.push(
            Element::new(&k("kernel"))
                .attr("pool", &kb.pool)
                .attr("volume", &kb.kernel)
                .attr_opt("initrd", kb.initrd.as_deref()),
        );
    }
    if let Some(ci) = &spec.cloud_init {
        // JSON in the metadata: the settings round-trip exactly (the seed holds only their
        // rendering).
        let json = serde_json::to_string(ci)
            .map_err(|e| DomainError::Render(format!("cloud-init settings: {e}")))?;
        meta.push(Element::new(&k("cloud-init")).text(json));
    }

    let mut dom = Element::new("domain")
        .attr("type", ctx.domain_type.as_str())
        .child(Element::new("name").text(&spec.name))
        .child(Element::new("uuid").text(&ctx.uuid))
        .child_opt(
            spec.description
                .as_ref()
                .map(|d| Element::new("description").text(d)),
        )
        .child(Element::new("metadata").child(meta))
        .child(
            Element::new("memory")
                .attr("unit", "MiB")
                .text(spec.memory_mib),
        )
        .child(
            Element::new("currentMemory")
                .attr("unit", "MiB")
                .text(spec.balloon_mib.unwrap_or(spec.memory_mib)),
        );
    let vcpu = match spec.max_vcpus {
        Some(max) if max > spec.vcpus => Element::new("vcpu")
            .attr("placement", "static")
            .attr("current", spec.vcpus)
            .text(max),
        _ => Element::new("vcpu")
            .attr("placement", "static")
            .text(spec.vcpus),
    };
    dom.push(vcpu);

    let machine = match spec.machine {
        Machine::Q35 => "q35",
        Machine::Pc => "pc",
    };
    let mut os = Element::new("os")
        .attr_opt(
            "firmware",
            (spec.firmware == Firmware::Uefi).then_some("efi"),
        )
        .child(
            Element::new("type")
                .attr("arch", "x86_64")
                .attr("machine", machine)
                .text("hvm"),
        );
    if let Some(kb) = &spec.kernel {
        let kernel = ctx.kernel_path.as_deref().ok_or_else(|| {
            DomainError::Render("direct kernel boot without a resolved kernel path".into())
        })?;
        if kb.initrd.is_some() != ctx.initrd_path.is_some() {
            return Err(DomainError::Render(
                "the initramfs of the direct kernel boot has no resolved path".into(),
            ));
        }
        os.push(Element::new("kernel").text(kernel));
        if let Some(p) = &ctx.initrd_path {
            os.push(Element::new("initrd").text(p));
        }
        if let Some(c) = &kb.cmdline {
            os.push(Element::new("cmdline").text(c));
        }
    }
    dom.push(os);
    dom.push(
        Element::new("features")
            .child(Element::new("acpi"))
            .child(Element::new("apic")),
    );

    let cpu = match (&spec.cpu_model, ctx.domain_type) {
        (CpuModel::Default, DomainType::Kvm) | (CpuModel::HostModel, _) => {
            Some(Element::new("cpu").attr("mode", "host-model"))
        }
        (CpuModel::Default, DomainType::Qemu) => None,
        (CpuModel::HostPassthrough, _) => {
            Some(Element::new("cpu").attr("mode", "host-passthrough"))
        }
        (CpuModel::Maximum, _) => Some(Element::new("cpu").attr("mode", "maximum")),
        (CpuModel::Named(n), _) => Some(
            Element::new("cpu")
                .attr("mode", "custom")
                .attr("match", "exact")
                .child(Element::new("model").attr("fallback", "forbid").text(n)),
        ),
    };
    dom = dom.child_opt(cpu);
    dom.push(Element::new("clock").attr("offset", "utc"));
    dom.push(Element::new("on_poweroff").text("destroy"));
    dom.push(Element::new("on_reboot").text("restart"));
    dom.push(Element::new("on_crash").text(on_crash_str(spec.on_crash)));

    let mut devices = Element::new("devices");
    let (mut iv, mut is) = (0u32, 0u32);
    for (i, (d, path)) in spec.disks.iter().zip(&ctx.disk_paths).enumerate() {
        let driver = Element::new("driver")
            .attr("name", "qemu")
            .attr("type", d.format.as_str())
            .attr("cache", cache_str(d.cache))
            .attr(
                "io",
                if d.io == DiskIo::Native {
                    "native"
                } else {
                    "threads"
                },
            )
            .attr("discard", "unmap");
        let block = path.starts_with("/dev/");
        let mut disk = Element::new("disk")
            .attr("type", if block { "block" } else { "file" })
            .attr("device", "disk")
            .child(driver)
            .child(Element::new("source").attr(if block { "dev" } else { "file" }, path))
            .child(
                Element::new("target")
                    .attr("dev", disk_target(d.bus, &mut iv, &mut is))
                    .attr("bus", bus_str(d.bus)),
            );
        if !d.throttle.is_empty() {
            let t = &d.throttle;
            let mut io = Element::new("iotune");
            for (n, v) in [
                ("total_bytes_sec", t.total_bytes),
                ("read_bytes_sec", t.read_bytes),
                ("write_bytes_sec", t.write_bytes),
                ("total_iops_sec", t.total_iops),
                ("read_iops_sec", t.read_iops),
                ("write_iops_sec", t.write_iops),
            ] {
                if let Some(v) = v {
                    io.push(Element::new(n).text(v));
                }
            }
            disk.push(io);
        }
        disk = disk
            .child_opt(d.serial.as_ref().map(|s| Element::new("serial").text(s)))
            .child_opt(boot_order(&format!("disk{i}")));
        devices.push(disk);
    }
    if spec.cdrom.is_some() {
        devices.push(
            cdrom_drive(spec.machine, is, "hdc", ctx.cdrom_path.as_deref())
                .child_opt(boot_order("cdrom")),
        );
    }
    if spec.cloud_init.is_some() {
        // The NoCloud seed: a second, never-booted CD-ROM, told apart by its alias.
        let slot = is + u32::from(spec.cdrom.is_some());
        devices.push(
            cdrom_drive(spec.machine, slot, "hdd", ctx.cloudinit_path.as_deref())
                .child(Element::new("alias").attr("name", CLOUDINIT_ALIAS)),
        );
    }
    if spec.disks.iter().any(|d| d.bus == DiskBus::Scsi) {
        devices.push(
            Element::new("controller")
                .attr("type", "scsi")
                .attr("index", 0)
                .attr("model", "virtio-scsi"),
        );
    }
    if spec.machine == Machine::Q35 {
        // PCIe has no hot-plug into the root complex: each hot-plugged disk or NIC needs a free
        // root port, and libvirt adds at most one spare. Enough ports for the devices this
        // spec needs (USB, virtio disks, SCSI controller, NICs, balloon, RNG, agent channel)
        // plus HOTPLUG_PORTS free ones (docs/hotplug.md); libvirt fills them in order.
        let needed = 3
            + spec
                .disks
                .iter()
                .filter(|d| d.bus == DiskBus::Virtio)
                .count()
            + usize::from(spec.disks.iter().any(|d| d.bus == DiskBus::Scsi))
            + spec.nics.len()
            + usize::from(spec.guest_agent);
        devices.push(
            Element::new("controller")
                .attr("type", "pci")
                .attr("index", 0)
                .attr("model", "pcie-root"),
        );
        for i in 1..=needed + HOTPLUG_PORTS {
            devices.push(
                Element::new("controller")
                    .attr("type", "pci")
                    .attr("index", i)
                    .attr("model", "pcie-root-port"),
            );
        }
    }
    for (i, n) in spec.nics.iter().enumerate() {
        let mac = n
            .mac
            .as_ref()
            .ok_or_else(|| DomainError::Render(format!("nics[{i}] has no MAC yet")))?;
        let (ty, src) = match (&n.network, &n.bridge) {
            (Some(net), _) => ("network", Element::new("source").attr("network", net)),
            (None, Some(br)) => ("bridge", Element::new("source").attr("bridge", br)),
            (None, None) => {
                return Err(DomainError::Render(format!(
                    "nics[{i}] has no network or bridge"
                )))
            }
        };
        devices.push(
            Element::new("interface")
                .attr("type", ty)
                .child(Element::new("mac").attr("address", mac.to_ascii_lowercase()))
                .child(src)
                .child(Element::new("model").attr("type", n.model.as_str()))
                .child_opt(boot_order(&format!("net{i}"))),
        );
    }
    if spec.serial {
        let mut serial = Element::new("serial").attr("type", "pty");
        if let Some(log) = &ctx.serial_log {
            serial.push(Element::new("log").attr("file", log).attr("append", "on"));
        }
        serial.push(Element::new("target").attr("port", 0));
        devices.push(serial);
        devices.push(
            Element::new("console").attr("type", "pty").child(
                Element::new("target")
                    .attr("type", "serial")
                    .attr("port", 0),
            ),
        );
    }
    if spec.guest_agent {
        devices.push(
            Element::new("channel").attr("type", "unix").child(
                Element::new("target")
                    .attr("type", "virtio")
                    .attr("name", "org.qemu.guest_agent.0"),
            ),
        );
    }
    if spec.vnc {
        devices.push(
            Element::new("graphics")
                .attr("type", "vnc")
                .attr("port", -1)
                .attr("autoport", "yes")
                .attr("listen", "127.0.0.1")
                .attr_opt("passwd", ctx.vnc_password.as_ref())
                .child(
                    Element::new("listen")
                        .attr("type", "address")
                        .attr("address", "127.0.0.1"),
                ),
        );
        devices.push(Element::new("video").child(Element::new("model").attr("type", "vga")));
    }
    devices.push(Element::new("memballoon").attr("model", "virtio"));
    devices.push(
        Element::new("rng").attr("model", "virtio").child(
            Element::new("backend")
                .attr("model", "random")
                .text("/dev/urandom"),
        ),
    );
    dom.push(devices);
    Ok(dom)
}

fn mib(e: &Element) -> Result<u64, DomainError> {
    let v: u64 = e
        .text
        .as_deref()
        .map(str::trim)
        .unwrap_or("")
        .parse()
        .map_err(|_| DomainError::Invalid(format!("<{}> is not a number", e.name)))?;
    let unit = e.get_attr("unit").unwrap_or("KiB");
    let bytes = match unit {
        "b" | "bytes" => v,
        "KiB" | "k" | "K" => v * 1024,
        "MiB" | "M" | "m" => v * 1024 * 1024,
        "GiB" | "G" | "g" => v * 1024 * 1024 * 1024,
        "KB" => v * 1000,
        "MB" => v * 1000 * 1000,
        "GB" => v * 1000 * 1000 * 1000,
        u => {
            return Err(DomainError::Invalid(format!(
                "<{}> has unknown unit {u:?}",
                e.name
            )))
        }
    };
    Ok(bytes / (1024 * 1024))
}

/// Find Keel's metadata element, whatever prefix it carries.
fn keel_meta(dom: &Element) -> Option<(&Element, String)> {
    let md = dom.find("metadata")?;
    md.children.iter().find_map(|c| {
        let (prefix, local) = c.name.split_once(':')?;
        let ns = c.get_attr(&format!("xmlns:{prefix}"))?;
        (ns == KEEL_NS && local == "vm").then(|| (c, format!("{prefix}:")))
    })
}

/// Parse libvirt domain XML (ideally fetched with `VIR_DOMAIN_XML_SECURE` so the VNC password
/// is included, and `VIR_DOMAIN_XML_INACTIVE` for the persistent config).
pub fn parse(xml: &str) -> Result<ParsedDomain, DomainError> {
    let dom = Element::parse(xml)?;
    if dom.name != "domain" {
        return Err(DomainError::Invalid(format!(
            "root element is <{}>, not <domain>",
            dom.name
        )));
    }
    let name = dom
        .path_text("name")
        .ok_or_else(|| DomainError::Invalid("no <name>".into()))?
        .to_string();
    let uuid = dom.path_text("uuid").unwrap_or("").to_string();
    let meta = keel_meta(&dom);
    let mut disk_meta: Vec<(usize, String, String)> = Vec::new();
    let mut cdrom_meta = None;
    let mut kernel_meta = None;
    let mut cloud_init = None;
    let mut vmid = 0;
    let mut cpu_meta = None;
    if let Some((m, p)) = &meta {
        vmid = m
            .path_text(&format!("{p}vmid"))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| DomainError::Invalid("Keel metadata without a numeric vmid".into()))?;
        cpu_meta = m.path_text(&format!("{p}cpu-model")).map(str::to_string);
        for d in m.find_all(&format!("{p}disk")) {
            if let (Some(i), Some(pool), Some(vol)) = (
                d.get_attr("index").and_then(|i| i.parse().ok()),
                d.get_attr("pool"),
                d.get_attr("volume"),
            ) {
                disk_meta.push((i, pool.to_string(), vol.to_string()));
            }
        }
        if let Some(t) = m.path_text(&format!("{p}cloud-init")) {
            cloud_init = Some(serde_json::from_str(t).map_err(|e| {
                DomainError::Invalid(format!("Keel's cloud-init metadata is not readable: {e}"))
            })?);
        }
        if let Some(kb) = m.find(&format!("{p}kernel")) {
            kernel_meta = Some((
                kb.get_attr("pool").unwrap_or("").to_string(),
                kb.get_attr("volume").unwrap_or("").to_string(),
                kb.get_attr("initrd").map(str::to_string),
            ));
        }
        if let Some(c) = m.find(&format!("{p}cdrom")) {
            cdrom_meta = Some((
                c.get_attr("pool").unwrap_or("").to_string(),
                c.get_attr("volume").unwrap_or("").to_string(),
            ));
        }
    }

    let memory_mib = dom.find("memory").map(mib).transpose()?.unwrap_or(0);
    let current = dom.find("currentMemory").map(mib).transpose()?;
    let balloon_mib = current.filter(|c| *c != memory_mib);
    let (vcpus, max_vcpus) = match dom.find("vcpu") {
        Some(v) => {
            let max: u32 = v
                .text
                .as_deref()
                .map(str::trim)
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| DomainError::Invalid("<vcpu> is not a number".into()))?;
            match v.get_attr("current").and_then(|c| c.parse::<u32>().ok()) {
                Some(c) if c < max => (c, Some(max)),
                _ => (max, None),
            }
        }
        None => (1, None),
    };
    let machine = match dom.path("os/type").and_then(|t| t.get_attr("machine")) {
        Some(m)
            if m.starts_with("pc-i440fx")
                || m == "pc"
                || m.starts_with("pc-") && !m.contains("q35") =>
        {
            Machine::Pc
        }
        _ => Machine::Q35,
    };
    let os = dom.find("os");
    let kernel_path = os.and_then(|o| o.path_text("kernel")).map(str::to_string);
    let initrd_path = os.and_then(|o| o.path_text("initrd")).map(str::to_string);
    // Keel's spec names volumes: a kernel given by path (a domain defined outside Keel) stays
    // in `kernel_path`, and Keel refuses to redefine such a domain (vms::check_update)
    let kernel = match (&kernel_meta, &kernel_path) {
        (Some((pool, volume, initrd)), Some(_)) => Some(KernelBoot {
            pool: pool.clone(),
            kernel: volume.clone(),
            initrd: initrd.clone(),
            cmdline: os.and_then(|o| o.path_text("cmdline")).map(str::to_string),
        }),
        _ => None,
    };
    let firmware = match os {
        Some(o)
            if o.get_attr("firmware") == Some("efi")
                || o.find("loader")
                    .is_some_and(|l| l.get_attr("type") == Some("pflash")) =>
        {
            Firmware::Uefi
        }
        _ => Firmware::Bios,
    };
    let cpu_model = match cpu_meta.as_deref() {
        Some("default") => CpuModel::Default,
        _ => match dom.find("cpu") {
            None => CpuModel::Default,
            Some(c) => match c.get_attr("mode") {
                Some("host-model") => CpuModel::HostModel,
                Some("host-passthrough") => CpuModel::HostPassthrough,
                Some("maximum") => CpuModel::Maximum,
                _ => match c.path_text("model") {
                    Some(m) => CpuModel::Named(m.to_string()),
                    None => CpuModel::Default,
                },
            },
        },
    };
    let on_crash = match dom.path_text("on_crash") {
        Some("restart") => OnCrash::Restart,
        Some("preserve") => OnCrash::Preserve,
        Some("coredump-destroy") => OnCrash::CoredumpDestroy,
        Some("coredump-restart") => OnCrash::CoredumpRestart,
        _ => OnCrash::Destroy,
    };

    let empty = Element::new("devices");
    let devices = dom.find("devices").unwrap_or(&empty);
    let mut disks = Vec::new();
    let mut disk_paths = Vec::new();
    let mut disk_targets = Vec::new();
    let mut cdrom = None;
    let mut cdrom_path = None;
    let mut cloudinit_path = None;
    let mut boots: Vec<(u32, String)> = Vec::new();
    for d in devices.find_all("disk") {
        let src = d.find("source").and_then(|s| {
            s.get_attr("file")
                .or(s.get_attr("dev"))
                .or(s.get_attr("volume"))
        });
        let order = d
            .path("boot")
            .and_then(|b| b.get_attr("order"))
            .and_then(|o| o.parse::<u32>().ok());
        if d.path("alias").and_then(|a| a.get_attr("name")) == Some(CLOUDINIT_ALIAS) {
            cloudinit_path = src.map(str::to_string);
            continue;
        }
        match d.get_attr("device") {
            Some("cdrom") => {
                cdrom_path = src.map(str::to_string);
                cdrom = Some(match &cdrom_meta {
                    Some((p, v)) => CdromSpec {
                        pool: Some(p.clone()),
                        volume: Some(v.clone()),
                        path: None,
                    },
                    None => CdromSpec {
                        pool: None,
                        volume: None,
                        path: cdrom_path.clone(),
                    },
                });
                if let Some(o) = order {
                    boots.push((o, "cdrom".into()));
                }
            }
            Some("disk") | None => {
                let i = disks.len();
                let driver = d.find("driver");
                let target = d.find("target");
                let bus = match target.and_then(|t| t.get_attr("bus")) {
                    Some("sata") | Some("ide") => DiskBus::Sata,
                    Some("scsi") => DiskBus::Scsi,
                    _ => DiskBus::Virtio,
                };
                let format = match driver.and_then(|x| x.get_attr("type")) {
                    Some("raw") => DiskFormat::Raw,
                    _ => DiskFormat::Qcow2,
                };
                let cache = match driver.and_then(|x| x.get_attr("cache")) {
                    Some("writeback") | Some("unsafe") | Some("default") => DiskCache::Writeback,
                    Some("writethrough") | Some("directsync") => DiskCache::Writethrough,
                    Some("none") => DiskCache::None,
                    // libvirt's default (no attribute) is writeback
                    _ => DiskCache::Writeback,
                };
                let io = match driver.and_then(|x| x.get_attr("io")) {
                    Some("native") => DiskIo::Native,
                    _ => DiskIo::Threads,
                };
                let num = |n: &str| {
                    d.path_text(&format!("iotune/{n}"))
                        .and_then(|v| v.parse().ok())
                };
                let throttle = Throttle {
                    total_iops: num("total_iops_sec"),
                    read_iops: num("read_iops_sec"),
                    write_iops: num("write_iops_sec"),
                    total_bytes: num("total_bytes_sec"),
                    read_bytes: num("read_bytes_sec"),
                    write_bytes: num("write_bytes_sec"),
                };
                let (pool, volume, path) = match disk_meta.iter().find(|(idx, _, _)| *idx == i) {
                    Some((_, p, v)) => (Some(p.clone()), Some(v.clone()), None),
                    None => (None, None, src.map(str::to_string)),
                };
                disks.push(DiskSpec {
                    pool,
                    volume,
                    size_mib: None,
                    path,
                    format,
                    bus,
                    cache,
                    io,
                    throttle,
                    serial: d.path_text("serial").map(str::to_string),
                });
                disk_paths.push(src.unwrap_or("").to_string());
                disk_targets.push(
                    target
                        .and_then(|t| t.get_attr("dev"))
                        .unwrap_or("")
                        .to_string(),
                );
                if let Some(o) = order {
                    boots.push((o, format!("disk{i}")));
                }
            }
            Some(_) => {}
        }
    }
    let mut nics = Vec::new();
    for n in devices.find_all("interface") {
        let i = nics.len();
        let src = n.find("source");
        let (network, bridge) = match n.get_attr("type") {
            Some("network") => (
                src.and_then(|s| s.get_attr("network")).map(str::to_string),
                None,
            ),
            Some("bridge") => (
                None,
                src.and_then(|s| s.get_attr("bridge")).map(str::to_string),
            ),
            _ => continue,
        };
        let model = match n.find("model").and_then(|m| m.get_attr("type")) {
            Some("e1000") | Some("e1000e") => NicModel::E1000,
            _ => NicModel::Virtio,
        };
        nics.push(NicSpec {
            network,
            bridge,
            model,
            mac: n
                .find("mac")
                .and_then(|m| m.get_attr("address"))
                .map(str::to_string),
        });
        if let Some(o) = n
            .path("boot")
            .and_then(|b| b.get_attr("order"))
            .and_then(|o| o.parse::<u32>().ok())
        {
            boots.push((o, format!("net{i}")));
        }
    }
    boots.sort();
    let mut boot: Vec<String> = boots.into_iter().map(|(_, d)| d).collect();
    if boot.is_empty() {
        // Old-style <os><boot dev=…/> (domains defined outside Keel).
        for b in os.into_iter().flat_map(|o| o.find_all("boot")) {
            let dev = match b.get_attr("dev") {
                Some("hd") if !disks.is_empty() => "disk0",
                Some("cdrom") if cdrom.is_some() => "cdrom",
                Some("network") if !nics.is_empty() => "net0",
                _ => continue,
            };
            if !boot.iter().any(|x| x == dev) {
                boot.push(dev.to_string());
            }
        }
    }
    let spec0 = VmSpec {
        vmid,
        name: name.clone(),
        description: dom.path_text("description").map(str::to_string),
        vcpus,
        max_vcpus,
        cpu_model,
        memory_mib,
        balloon_mib,
        machine,
        firmware,
        boot: Vec::new(),
        disks,
        cdrom,
        kernel,
        nics,
        vnc: false,
        serial: false,
        guest_agent: false,
        on_crash,
        cloud_init,
    };
    // Keep an explicit order only when it differs from the default one.
    let boot = if boot == spec0.effective_boot() {
        Vec::new()
    } else {
        boot
    };
    let graphics = devices
        .find_all("graphics")
        .find(|g| g.get_attr("type") == Some("vnc"));
    let serial = devices.find("serial");
    let spec = VmSpec {
        boot,
        vnc: graphics.is_some(),
        serial: serial.is_some(),
        guest_agent: devices.find_all("channel").any(|c| {
            c.find("target").and_then(|t| t.get_attr("name")) == Some("org.qemu.guest_agent.0")
        }),
        ..spec0
    };
    Ok(ParsedDomain {
        managed: meta.is_some(),
        uuid,
        domain_type: dom.get_attr("type").unwrap_or("").to_string(),
        disk_paths,
        cdrom_path,
        cloudinit_path,
        kernel_path,
        initrd_path,
        disk_targets,
        vnc_password: graphics
            .and_then(|g| g.get_attr("passwd"))
            .map(str::to_string),
        vnc_port: graphics
            .and_then(|g| g.get_attr("port"))
            .and_then(|p| p.parse::<u16>().ok()),
        serial_log: serial
            .and_then(|s| s.find("log"))
            .and_then(|l| l.get_attr("file"))
            .map(str::to_string),
        spec,
    })
}

/// Add (or replace) Keel metadata on a foreign domain's XML so it becomes managed.
pub fn adopt_xml(xml: &str, vmid: u32) -> Result<String, DomainError> {
    let mut dom = Element::parse(xml)?;
    if keel_meta(&dom).is_some() {
        return Err(DomainError::Invalid(
            "domain is already managed by Keel".into(),
        ));
    }
    let meta = Element::new(&k("vm"))
        .attr(&format!("xmlns:{KEEL_PREFIX}"), KEEL_NS)
        .child(Element::new(&k("vmid")).text(vmid));
    match dom.children.iter_mut().find(|c| c.name == "metadata") {
        Some(md) => md.push(meta),
        None => {
            let pos = dom
                .children
                .iter()
                .position(|c| c.name == "uuid")
                .map_or(1, |p| p + 1);
            dom.children
                .insert(pos, Element::new("metadata").child(meta));
        }
    }
    Ok(dom.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_letters_like_linux() {
        assert_eq!(dev_letters(0), "a");
        assert_eq!(dev_letters(25), "z");
        assert_eq!(dev_letters(26), "aa");
        assert_eq!(dev_letters(27), "ab");
    }
}
