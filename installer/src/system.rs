//! What the install program reads from the running machine: the kernel command line and the
//! hardware (disks and NICs from /sys). Pure parsing is separated from the reads so it can be
//! tested.

use std::path::Path;

use crate::hw::{DiskInfo, Hardware, NicInfo};

/// Keel's parameters on the kernel command line of the installer ISO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelArgs {
    /// `keel.live`: running from the installer medium.
    pub live: bool,
    /// `keel.answer_url=https://…`
    pub answer_url: Option<String>,
    /// `keel.answer_fingerprint=AB:CD:…` (required with `keel.answer_url`).
    pub answer_fingerprint: Option<String>,
    /// `keel.index=N`: the node number for a `node{NN}` hostname pattern.
    pub index: Option<String>,
    /// `keel.prompt`: ignore every answer source and ask on the console.
    pub prompt: bool,
}

impl KernelArgs {
    pub fn parse(cmdline: &str) -> KernelArgs {
        let mut k = KernelArgs::default();
        for w in cmdline.split_whitespace() {
            match w.split_once('=') {
                Some(("keel.answer_url", v)) => k.answer_url = Some(v.to_string()),
                Some(("keel.answer_fingerprint", v)) => k.answer_fingerprint = Some(v.to_string()),
                Some(("keel.index", v)) => k.index = Some(v.to_string()),
                None if w == "keel.live" => k.live = true,
                None if w == "keel.prompt" => k.prompt = true,
                _ => {}
            }
        }
        k
    }

    pub fn read() -> KernelArgs {
        KernelArgs::parse(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Disks under `sys_block` (`/sys/block`): whole disks only (no loop, ram, zram, device-mapper,
/// md or optical devices), not read-only, not empty, and not in `exclude` (the installer medium).
pub fn disks(sys_block: &Path, exclude: &[String]) -> Vec<DiskInfo> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(sys_block) else {
        return out;
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for n in names {
        if ["loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd"]
            .iter()
            .any(|p| n.starts_with(p))
        {
            continue;
        }
        let d = sys_block.join(&n);
        let path = format!("/dev/{n}");
        if exclude.contains(&path) || read_trim(&d.join("ro")) == "1" {
            continue;
        }
        let sectors: u64 = read_trim(&d.join("size")).parse().unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        let partitions = std::fs::read_dir(&d)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("partition").exists())
                    .count() as u32
            })
            .unwrap_or(0);
        let mut serial = read_trim(&d.join("serial"));
        if serial.is_empty() {
            serial = read_trim(&d.join("device/serial"));
        }
        out.push(DiskInfo {
            path,
            size_bytes: sectors * 512,
            model: read_trim(&d.join("device/model")),
            serial,
            partitions,
        });
    }
    out
}

/// Physical NICs under `sys_net` (`/sys/class/net`): those with a `device` link.
pub fn nics(sys_net: &Path) -> Vec<NicInfo> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(sys_net) else {
        return out;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        if !p.join("device").exists() {
            continue;
        }
        let name = e.file_name().to_string_lossy().to_string();
        // A bond slave reports the bond's MAC in `address`; the permanent one is what answers
        // match, and bonding_slave/perm_hwaddr has it.
        let perm = read_trim(&p.join("bonding_slave/perm_hwaddr"));
        let mac = if perm.is_empty() {
            read_trim(&p.join("address"))
        } else {
            perm
        };
        out.push(NicInfo { name, mac });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The machine's hardware; `exclude` lists devices never to offer as targets.
pub fn hardware(exclude: &[String]) -> Hardware {
    Hardware {
        nics: nics(Path::new("/sys/class/net")),
        disks: disks(Path::new("/sys/block"), exclude),
    }
}

/// Whole-disk devices backing the mount at `mountpoint` (from /proc/self/mounts), e.g. the
/// installer medium: `/dev/sr0`, or `/dev/sdb` for `/dev/sdb1`.
pub fn devices_of_mount(mounts: &str, mountpoint: &str) -> Vec<String> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let dev = f.next()?;
            let mp = f.next()?;
            (mp == mountpoint && dev.starts_with("/dev/")).then(|| whole_disk(dev))
        })
        .collect()
}

/// `/dev/sda1` → `/dev/sda`, `/dev/nvme0n1p2` → `/dev/nvme0n1`, `/dev/vda` → `/dev/vda`.
pub fn whole_disk(dev: &str) -> String {
    let name = dev.trim_start_matches("/dev/");
    if let Some(i) = name.rfind('p') {
        let (head, tail) = name.split_at(i);
        if (head.starts_with("nvme") || head.starts_with("mmcblk"))
            && tail.len() > 1
            && tail[1..].chars().all(|c| c.is_ascii_digit())
        {
            return format!("/dev/{head}");
        }
    }
    if name.starts_with("nvme") || name.starts_with("mmcblk") || name.starts_with("sr") {
        return dev.to_string();
    }
    format!(
        "/dev/{}",
        name.trim_end_matches(|c: char| c.is_ascii_digit())
    )
}

/// Partition `n` of `disk`: `/dev/vda` 2 → `/dev/vda2`, `/dev/nvme0n1` 2 → `/dev/nvme0n1p2`.
pub fn partition(disk: &str, n: u32) -> String {
    if disk.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{disk}p{n}")
    } else {
        format!("{disk}{n}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_args() {
        let k = KernelArgs::parse(
            "BOOT_IMAGE=/boot/vmlinuz keel.live quiet keel.answer_url=https://10.0.0.1:8443/a.toml \
             keel.answer_fingerprint=AB:CD keel.index=7",
        );
        assert!(k.live && !k.prompt);
        assert_eq!(
            k.answer_url.as_deref(),
            Some("https://10.0.0.1:8443/a.toml")
        );
        assert_eq!(k.answer_fingerprint.as_deref(), Some("AB:CD"));
        assert_eq!(k.index.as_deref(), Some("7"));
    }

    #[test]
    fn partitions_and_disks() {
        assert_eq!(partition("/dev/vda", 3), "/dev/vda3");
        assert_eq!(partition("/dev/nvme0n1", 3), "/dev/nvme0n1p3");
        assert_eq!(whole_disk("/dev/sda1"), "/dev/sda");
        assert_eq!(whole_disk("/dev/sr0"), "/dev/sr0");
        assert_eq!(whole_disk("/dev/nvme0n1p2"), "/dev/nvme0n1");
        assert_eq!(whole_disk("/dev/nvme0n1"), "/dev/nvme0n1");
        assert_eq!(
            devices_of_mount("/dev/sdb1 /mnt/keel/iso iso9660 ro 0 0\n", "/mnt/keel/iso"),
            vec!["/dev/sdb".to_string()]
        );
    }

    #[test]
    fn disks_from_a_fake_sys_block() {
        let t = std::env::temp_dir().join(format!("keel-sysblock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let mk = |p: &str, f: &str, v: &str| {
            let d = t.join(p);
            std::fs::create_dir_all(&d).expect("mkdir");
            std::fs::write(d.join(f), v).expect("write");
        };
        mk("vda", "size", "41943040\n");
        mk("vda", "serial", "KEEL0001\n");
        mk("vda/vda1", "partition", "1\n");
        mk("vdb", "size", "2048\n");
        mk("vdb", "ro", "1\n");
        mk("loop0", "size", "100\n");
        mk("sr0", "size", "100\n");
        let d = disks(&t, &[]);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "/dev/vda");
        assert_eq!(d[0].size_bytes, 20 << 30);
        assert_eq!(d[0].serial, "KEEL0001");
        assert_eq!(d[0].partitions, 1);
        assert!(disks(&t, &["/dev/vda".to_string()]).is_empty());
        let _ = std::fs::remove_dir_all(&t);
    }
}
