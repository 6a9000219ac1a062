//! Turning `keel vm create` flags into a [`VmSpec`].
//!
//! Pieces are built through serde so defaults and enum names stay those of `keel-api`.

use anyhow::{anyhow, bail, Context, Result};
use keel_api::vm::{CdromSpec, DiskSpec, KernelBoot, NicSpec, VmSpec};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

/// A size in MiB: `20480`, `512M`, `20G`, `1T` (binary units; `MiB`/`GiB`/`TiB` also work).
pub fn parse_size_mib(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let mult: u64 = match unit.trim() {
        "" | "m" | "mb" | "mib" => 1,
        "g" | "gb" | "gib" => 1024,
        "t" | "tb" | "tib" => 1024 * 1024,
        _ => {
            return Err(format!(
                "size {s:?}: use MiB as a number, or a number with M, G or T (e.g. 20G)"
            ))
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size {s:?}: expected a number of MiB or e.g. 20G"))?;
    if n == 0 {
        return Err(format!("size {s:?} must be more than 0"));
    }
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parse a wire enum value (`"qcow2"`, `"sata"`, …) with keel-api's own names.
fn wire_enum<T: DeserializeOwned>(what: &str, v: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(v.to_string())).map_err(|e| format!("{what} {v:?}: {e}"))
}

/// `--disk POOL:SIZE[:FORMAT[:BUS]]`: a new volume of SIZE in POOL.
pub fn parse_disk(s: &str) -> Result<DiskSpec, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if !(2..=4).contains(&parts.len()) || parts[0].is_empty() {
        return Err(format!(
            "--disk {s:?}: expected POOL:SIZE[:FORMAT[:BUS]], e.g. local:20G or local:20480:raw:sata"
        ));
    }
    let mut m = Map::new();
    m.insert("pool".into(), json!(parts[0]));
    let size = parse_size_mib(parts[1]).map_err(|e| format!("--disk {s:?}: {e}"))?;
    m.insert("size_mib".into(), json!(size));
    if let Some(f) = parts.get(2).filter(|f| !f.is_empty()) {
        let _: keel_api::vm::DiskFormat =
            wire_enum("disk format", f).map_err(|e| format!("--disk {s:?}: {e}"))?;
        m.insert("format".into(), json!(f));
    }
    if let Some(b) = parts.get(3).filter(|b| !b.is_empty()) {
        let _: keel_api::vm::DiskBus =
            wire_enum("disk bus", b).map_err(|e| format!("--disk {s:?}: {e}"))?;
        m.insert("bus".into(), json!(b));
    }
    serde_json::from_value(Value::Object(m)).map_err(|e| format!("--disk {s:?}: {e}"))
}

/// `--cdrom POOL:VOLUME`: an ISO volume.
pub fn parse_cdrom(s: &str) -> Result<CdromSpec, String> {
    match s.split_once(':') {
        Some((p, v)) if !p.is_empty() && !v.is_empty() && !v.contains(':') => Ok(CdromSpec {
            pool: Some(p.to_string()),
            volume: Some(v.to_string()),
            ..Default::default()
        }),
        _ => Err(format!(
            "--cdrom {s:?}: expected POOL:VOLUME, e.g. local:debian-12.iso"
        )),
    }
}

/// `--kernel POOL:KERNEL[:INITRD]`: direct kernel boot from volumes of one pool.
pub fn parse_kernel(s: &str) -> Result<KernelBoot, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [p, k] | [p, k, _] if !p.is_empty() && !k.is_empty() => Ok(KernelBoot {
            pool: p.to_string(),
            kernel: k.to_string(),
            initrd: parts
                .get(2)
                .filter(|i| !i.is_empty())
                .map(|i| i.to_string()),
            cmdline: None,
        }),
        _ => Err(format!(
            "--kernel {s:?}: expected POOL:KERNEL[:INITRD], e.g. local:vmlinuz-6.1:initrd-6.1.img"
        )),
    }
}

/// `--net network=NAME|bridge=NAME[,model=virtio|e1000][,mac=AA:BB:CC:DD:EE:FF]`.
pub fn parse_net(s: &str) -> Result<NicSpec, String> {
    let mut m = Map::new();
    for item in s.split(',') {
        let (k, v) = item.split_once('=').ok_or_else(|| {
            format!("--net {s:?}: expected network=NAME or bridge=NAME (then ,model=… ,mac=…)")
        })?;
        let k = k.trim();
        if !matches!(k, "network" | "bridge" | "model" | "mac") {
            return Err(format!(
                "--net {s:?}: unknown key {k:?}: use network, bridge, model or mac"
            ));
        }
        if v.is_empty() {
            return Err(format!("--net {s:?}: {k} needs a value"));
        }
        if k == "model" {
            let _: keel_api::vm::NicModel =
                wire_enum("NIC model", v).map_err(|e| format!("--net {s:?}: {e}"))?;
        }
        if m.insert(k.to_string(), json!(v)).is_some() {
            return Err(format!("--net {s:?}: {k} is given twice"));
        }
    }
    match (m.contains_key("network"), m.contains_key("bridge")) {
        (true, true) => {
            return Err(format!(
                "--net {s:?}: give either network= (libvirt network) or bridge= (host bridge), not both"
            ))
        }
        (false, false) => {
            return Err(format!(
                "--net {s:?}: a NIC needs network=NAME (libvirt network) or bridge=NAME (host bridge)"
            ))
        }
        _ => {}
    }
    serde_json::from_value(Value::Object(m)).map_err(|e| format!("--net {s:?}: {e}"))
}

/// Everything `vm create` takes besides `--spec`.
#[derive(Debug, Default, Clone)]
pub struct CreateFlags {
    pub vmid: Option<u32>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub vcpus: Option<u32>,
    pub memory_mib: Option<String>,
    pub cpu_model: Option<String>,
    pub firmware: Option<String>,
    pub boot: Option<String>,
    pub disks: Vec<DiskSpec>,
    pub cdrom: Option<CdromSpec>,
    pub kernel: Option<KernelBoot>,
    pub cmdline: Option<String>,
    pub nics: Vec<NicSpec>,
}

/// Build and validate a spec from flags; unset fields take keel-api's defaults.
pub fn spec_from_flags(f: CreateFlags) -> Result<VmSpec> {
    let vmid = f
        .vmid
        .ok_or_else(|| anyhow!("--vmid is required (or give --spec FILE)"))?;
    let name = f
        .name
        .ok_or_else(|| anyhow!("--name is required (or give --spec FILE)"))?;
    let mut m = Map::new();
    m.insert("vmid".into(), json!(vmid));
    m.insert("name".into(), json!(name));
    if let Some(d) = f.description {
        m.insert("description".into(), json!(d));
    }
    if let Some(v) = f.vcpus {
        m.insert("vcpus".into(), json!(v));
    }
    if let Some(mem) = f.memory_mib {
        let mem = parse_size_mib(&mem).map_err(|e| anyhow!("--memory-mib: {e}"))?;
        m.insert("memory_mib".into(), json!(mem));
    }
    if let Some(c) = f.cpu_model {
        m.insert("cpu_model".into(), json!(c));
    }
    if let Some(fw) = f.firmware {
        let _: keel_api::vm::Firmware =
            wire_enum("firmware", &fw).map_err(|e| anyhow!("--firmware: {e}"))?;
        m.insert("firmware".into(), json!(fw));
    }
    if let Some(b) = f.boot {
        let order: Vec<&str> = b
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        m.insert("boot".into(), json!(order));
    }
    let mut spec: VmSpec =
        serde_json::from_value(Value::Object(m)).context("building the VM spec from flags")?;
    spec.disks = f.disks;
    spec.cdrom = f.cdrom;
    spec.kernel = match (f.kernel, f.cmdline) {
        (Some(k), cmdline) => Some(KernelBoot { cmdline, ..k }),
        (None, Some(_)) => bail!("--cmdline needs --kernel POOL:KERNEL[:INITRD]"),
        (None, None) => None,
    };
    spec.nics = f.nics;
    spec.validate()
        .map_err(|e| anyhow!("{} (field: {})", e.message, e.field))?;
    Ok(spec)
}

/// Read a VmSpec from a JSON file (`-` = stdin), strictly.
pub fn spec_from_json(text: &str, source: &str) -> Result<VmSpec> {
    let spec: VmSpec =
        serde_json::from_str(text).map_err(|e| anyhow!("{source}: not a valid VM spec: {e}"))?;
    spec.validate()
        .map_err(|e| anyhow!("{source}: {} (field: {})", e.message, e.field))?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_api::vm::{DiskBus, DiskFormat, Firmware, NicModel};

    #[test]
    fn sizes() {
        assert_eq!(parse_size_mib("512"), Ok(512));
        assert_eq!(parse_size_mib("512M"), Ok(512));
        assert_eq!(parse_size_mib("20G"), Ok(20 * 1024));
        assert_eq!(parse_size_mib("20gib"), Ok(20 * 1024));
        assert_eq!(parse_size_mib("1T"), Ok(1024 * 1024));
        assert!(parse_size_mib("0").is_err());
        assert!(parse_size_mib("1.5G").is_err());
        assert!(parse_size_mib("G").is_err());
        assert!(parse_size_mib("10X").is_err());
        assert!(parse_size_mib("99999999999999999999T").is_err());
    }

    #[test]
    fn disk_flags() {
        let d = parse_disk("local:10G").expect("ok");
        assert_eq!(d.pool.as_deref(), Some("local"));
        assert_eq!(d.size_mib, Some(10240));
        assert_eq!(d.volume, None);
        assert_eq!(d.format, DiskFormat::Qcow2);
        assert_eq!(d.bus, DiskBus::Virtio);

        let d = parse_disk("fast:2048:raw:sata").expect("ok");
        assert_eq!(d.size_mib, Some(2048));
        assert_eq!(d.format, DiskFormat::Raw);
        assert_eq!(d.bus, DiskBus::Sata);

        let d = parse_disk("local:8::scsi").expect("empty format = default");
        assert_eq!(d.format, DiskFormat::Qcow2);
        assert_eq!(d.bus, DiskBus::Scsi);

        for bad in [
            "local",
            ":10",
            "local:ten",
            "local:10:vmdk",
            "local:10:raw:ide",
            "a:1:raw:sata:x",
        ] {
            assert!(parse_disk(bad).is_err(), "{bad:?} should fail");
        }
        let e = parse_disk("local:10:vmdk").expect_err("bad format");
        assert!(e.contains("qcow2"), "{e}");
    }

    #[test]
    fn cdrom_flags() {
        let c = parse_cdrom("local:keel-live.iso").expect("ok");
        assert_eq!(c.pool.as_deref(), Some("local"));
        assert_eq!(c.volume.as_deref(), Some("keel-live.iso"));
        assert_eq!(c.path, None);
        for bad in ["local", ":x.iso", "local:", "a:b:c"] {
            assert!(parse_cdrom(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn kernel_flags() {
        let k = parse_kernel("local:vmlinuz-6.1:initrd-6.1.img").expect("ok");
        assert_eq!(
            (k.pool.as_str(), k.kernel.as_str(), k.initrd.as_deref()),
            ("local", "vmlinuz-6.1", Some("initrd-6.1.img"))
        );
        assert_eq!(parse_kernel("local:vmlinuz").expect("ok").initrd, None);
        for bad in ["local", ":vmlinuz", "local:", "a:b:c:d"] {
            assert!(parse_kernel(bad).is_err(), "{bad:?} should fail");
        }
        let f = |kernel, cmdline: Option<&str>| CreateFlags {
            vmid: Some(100),
            name: Some("k".into()),
            kernel,
            cmdline: cmdline.map(str::to_string),
            ..Default::default()
        };
        let s = spec_from_flags(f(Some(k), Some("console=ttyS0"))).expect("spec");
        let k = s.kernel.expect("kernel");
        assert_eq!(k.cmdline.as_deref(), Some("console=ttyS0"));
        let e = spec_from_flags(f(None, Some("quiet"))).expect_err("cmdline alone");
        assert!(e.to_string().contains("--kernel"), "{e}");
    }

    #[test]
    fn net_flags() {
        let n = parse_net("network=default").expect("ok");
        assert_eq!(n.network.as_deref(), Some("default"));
        assert_eq!(n.bridge, None);
        assert_eq!(n.model, NicModel::Virtio);

        let n = parse_net("bridge=br0,model=e1000,mac=02:4b:45:00:00:01").expect("ok");
        assert_eq!(n.bridge.as_deref(), Some("br0"));
        assert_eq!(n.model, NicModel::E1000);
        assert_eq!(n.mac.as_deref(), Some("02:4b:45:00:00:01"));

        for bad in [
            "default",
            "network=",
            "network=a,bridge=b",
            "model=virtio",
            "net=default",
            "network=a,network=b",
            "network=a,model=rtl8139",
        ] {
            assert!(parse_net(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn spec_from_flags_applies_defaults_and_validates() {
        let s = spec_from_flags(CreateFlags {
            vmid: Some(901),
            name: Some("t1".into()),
            memory_mib: Some("128".into()),
            firmware: Some("uefi".into()),
            disks: vec![parse_disk("local:1G").expect("disk")],
            nics: vec![parse_net("network=default").expect("nic")],
            ..Default::default()
        })
        .expect("valid");
        assert_eq!(s.vmid, 901);
        assert_eq!(s.vcpus, 1);
        assert_eq!(s.memory_mib, 128);
        assert_eq!(s.firmware, Firmware::Uefi);
        assert_eq!(s.disks.len(), 1);
        assert!(s.serial && s.vnc);

        let e = spec_from_flags(CreateFlags {
            vmid: Some(5),
            name: Some("x".into()),
            ..Default::default()
        })
        .expect_err("vmid too low")
        .to_string();
        assert!(e.contains("(field: vmid)"), "{e}");

        assert!(spec_from_flags(CreateFlags {
            vmid: Some(900),
            ..Default::default()
        })
        .is_err());
        assert!(spec_from_flags(CreateFlags {
            vmid: Some(900),
            name: Some("x".into()),
            firmware: Some("coreboot".into()),
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn spec_file_is_strict() {
        let ok = spec_from_json(r#"{"vmid": 950, "name": "f"}"#, "spec.json").expect("ok");
        assert_eq!(ok.memory_mib, 512);
        let e = spec_from_json(r#"{"vmid": 950, "name": "f", "cpus": 2}"#, "spec.json")
            .expect_err("unknown field")
            .to_string();
        assert!(e.contains("cpus") && e.contains("spec.json"), "{e}");
    }
}
