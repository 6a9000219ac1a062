//! Turning counters into samples: the node's from `/proc` (stat, meminfo, diskstats, net/dev),
//! a VM's from libvirt's domain statistics; cumulative counters become rates per second
//! between two readings. Parsers and rate arithmetic are pure (unit-tested on captured text).

use std::collections::BTreeSet;
use std::path::Path;

use super::store::Sample;
use crate::hv::DomainStats;

/// The node's cumulative counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeCounters {
    /// Jiffies of all CPUs: busy (not idle, not iowait) and total.
    pub cpu_busy: u64,
    pub cpu_total: u64,
    pub mem_total: u64,
    pub mem_used: u64,
    pub disk_read: u64,
    pub disk_write: u64,
    pub net_in: u64,
    pub net_out: u64,
}

/// `/proc/stat`'s aggregate `cpu` line → (busy, total) jiffies.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (v.len() >= 4).then(|| (total.saturating_sub(idle), total))
}

/// `/proc/meminfo` → (total, used) bytes; used = total − MemAvailable.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
    };
    let total = kib("MemTotal")?;
    let avail = kib("MemAvailable").or_else(|| kib("MemFree"))?;
    Some((total * 1024, total.saturating_sub(avail) * 1024))
}

/// `/proc/diskstats` → (read, written) bytes of the devices in `disks` (whole disks: a
/// partition's or a device mapper's I/O is already counted on the disk beneath it).
pub fn parse_diskstats(text: &str, disks: &BTreeSet<String>) -> (u64, u64) {
    let mut rd = 0u64;
    let mut wr = 0u64;
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        // major minor name reads merged sectors_read ms writes merged sectors_written …
        if f.len() < 10 || !disks.contains(f[2]) {
            continue;
        }
        let sectors = |i: usize| f[i].parse::<u64>().unwrap_or(0);
        rd += sectors(5) * 512;
        wr += sectors(9) * 512;
    }
    (rd, wr)
}

/// `/proc/net/dev` → (received, sent) bytes of the interfaces `counted` accepts.
pub fn parse_net_dev(text: &str, counted: impl Fn(&str) -> bool) -> (u64, u64) {
    let mut rx = 0u64;
    let mut tx = 0u64;
    for l in text.lines().skip(2) {
        let Some((name, rest)) = l.split_once(':') else {
            continue;
        };
        if !counted(name.trim()) {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes …
        if f.len() >= 9 {
            rx += f[0];
            tx += f[8];
        }
    }
    (rx, tx)
}

/// Names under `dir` (`/sys/block`, `/sys/class/net`) that have a `device` link: physical
/// disks and NICs, not loop, device-mapper, bridges, taps or veths.
fn physical(dir: &Path) -> BTreeSet<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    rd.flatten()
        .filter(|e| e.path().join("device").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Read the node's counters from `/proc` and `/sys`.
pub fn read_node() -> std::io::Result<NodeCounters> {
    let (cpu_busy, cpu_total) = parse_proc_stat(&std::fs::read_to_string("/proc/stat")?)
        .ok_or_else(|| std::io::Error::other("/proc/stat has no cpu line"))?;
    let (mem_total, mem_used) = parse_meminfo(&std::fs::read_to_string("/proc/meminfo")?)
        .ok_or_else(|| std::io::Error::other("/proc/meminfo has no MemTotal"))?;
    let disks = physical(Path::new("/sys/block"));
    let (disk_read, disk_write) =
        parse_diskstats(&std::fs::read_to_string("/proc/diskstats")?, &disks);
    // physical NICs; a host (or namespace) without any counts every interface but loopback
    let nics = physical(Path::new("/sys/class/net"));
    let net = std::fs::read_to_string("/proc/net/dev")?;
    let (net_in, net_out) = if nics.is_empty() {
        parse_net_dev(&net, |n| n != "lo")
    } else {
        parse_net_dev(&net, |n| nics.contains(n))
    };
    Ok(NodeCounters {
        cpu_busy,
        cpu_total,
        mem_total,
        mem_used,
        disk_read,
        disk_write,
        net_in,
        net_out,
    })
}

/// Per-second rate of a counter over `dt` seconds; none when it went backwards (a reset).
fn rate(prev: u64, cur: u64, dt: f64) -> Option<f64> {
    (cur >= prev && dt > 0.0).then(|| (cur - prev) as f64 / dt)
}

fn rate_i(prev: i64, cur: i64, dt: f64) -> Option<f64> {
    rate(u64::try_from(prev).ok()?, u64::try_from(cur).ok()?, dt)
}

/// The node's sample from two readings `dt` seconds apart (memory from the newer one).
pub fn node_sample(prev: &NodeCounters, cur: &NodeCounters, dt: f64) -> Sample {
    let cpu = (cur.cpu_total > prev.cpu_total && cur.cpu_busy >= prev.cpu_busy).then(|| {
        ((cur.cpu_busy - prev.cpu_busy) as f64 / (cur.cpu_total - prev.cpu_total) as f64)
            .clamp(0.0, 1.0)
    });
    Sample {
        cpu,
        mem_used: Some(cur.mem_used as f64),
        mem_total: Some(cur.mem_total as f64),
        disk_read: rate(prev.disk_read, cur.disk_read, dt),
        disk_write: rate(prev.disk_write, cur.disk_write, dt),
        net_in: rate(prev.net_in, cur.net_in, dt),
        net_out: rate(prev.net_out, cur.net_out, dt),
    }
}

/// A running VM's sample from two readings `dt` seconds apart. CPU is the share of its vCPUs;
/// used memory is the guest's own figure when its balloon driver reports one, else the host
/// RSS of its QEMU. Network counters are libvirt's, from the guest's point of view (in =
/// received by the guest).
pub fn vm_sample(prev: &DomainStats, cur: &DomainStats, dt: f64) -> Sample {
    let cpu = (cur.vcpus > 0 && dt > 0.0 && cur.cpu_time_ns >= prev.cpu_time_ns).then(|| {
        ((cur.cpu_time_ns - prev.cpu_time_ns) as f64 / (dt * 1e9 * f64::from(cur.vcpus)))
            .clamp(0.0, 1.0)
    });
    Sample {
        cpu,
        mem_used: cur
            .guest_used_kib
            .or(cur.rss_kib)
            .map(|k| k as f64 * 1024.0),
        mem_total: Some(cur.memory_kib as f64 * 1024.0),
        disk_read: rate_i(prev.block.rd_bytes, cur.block.rd_bytes, dt),
        disk_write: rate_i(prev.block.wr_bytes, cur.block.wr_bytes, dt),
        net_in: rate_i(prev.net.rx_bytes, cur.net.rx_bytes, dt),
        net_out: rate_i(prev.net.tx_bytes, cur.net.tx_bytes, dt),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hv::{BlockCounters, NetCounters};

    #[test]
    fn proc_files_parse() {
        let stat = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\nintr 1\n";
        assert_eq!(parse_proc_stat(stat), Some((160, 980)));
        let mem = "MemTotal:        8000000 kB\nMemFree:         1000000 kB\nMemAvailable:    6000000 kB\n";
        assert_eq!(
            parse_meminfo(mem),
            Some((8_000_000 * 1024, 2_000_000 * 1024))
        );
        let disk = "   8       0 sda 100 0 2000 10 50 0 4000 20 0 30 30\n   8       1 sda1 100 0 2000 10 50 0 4000 20 0 30 30\n 253 0 dm-0 1 0 8 0 1 0 8 0 0 0 0\n";
        let disks: BTreeSet<String> = ["sda".to_string()].into();
        assert_eq!(parse_diskstats(disk, &disks), (2000 * 512, 4000 * 512));
        let net = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(net, |n| n != "lo"), (1000, 2000));
    }

    #[test]
    fn counters_become_rates() {
        let a = NodeCounters {
            cpu_busy: 100,
            cpu_total: 1000,
            mem_total: 4096,
            mem_used: 1024,
            disk_read: 0,
            disk_write: 1000,
            net_in: 10,
            net_out: 10,
        };
        let b = NodeCounters {
            cpu_busy: 350,
            cpu_total: 2000,
            disk_read: 5000,
            disk_write: 500, // went backwards: no rate
            net_in: 30,
            net_out: 10,
            ..a.clone()
        };
        let s = node_sample(&a, &b, 10.0);
        assert_eq!(s.cpu, Some(0.25));
        assert_eq!(s.disk_read, Some(500.0));
        assert_eq!(s.disk_write, None);
        assert_eq!((s.net_in, s.net_out), (Some(2.0), Some(0.0)));
        assert_eq!(s.mem_used, Some(1024.0));

        let v0 = DomainStats {
            active: true,
            vcpus: 2,
            cpu_time_ns: 1_000_000_000,
            memory_kib: 1024,
            guest_used_kib: None,
            rss_kib: Some(512),
            block: BlockCounters {
                rd_bytes: 0,
                wr_bytes: 0,
                ..Default::default()
            },
            net: NetCounters::default(),
        };
        let v1 = DomainStats {
            cpu_time_ns: 6_000_000_000, // 5 s of CPU in 5 s on 2 vCPUs: half
            block: BlockCounters {
                rd_bytes: 5120,
                wr_bytes: 1024,
                ..Default::default()
            },
            net: NetCounters {
                rx_bytes: 50,
                tx_bytes: 5,
                ..Default::default()
            },
            ..v0.clone()
        };
        let s = vm_sample(&v0, &v1, 5.0);
        assert_eq!(s.cpu, Some(0.5));
        assert_eq!(s.mem_used, Some(512.0 * 1024.0));
        assert_eq!(s.mem_total, Some(1024.0 * 1024.0));
        assert_eq!((s.disk_read, s.disk_write), (Some(1024.0), Some(204.8)));
        assert_eq!((s.net_in, s.net_out), (Some(10.0), Some(1.0)));
        // the guest's own figure wins over the host RSS
        let v2 = DomainStats {
            guest_used_kib: Some(300),
            ..v1.clone()
        };
        assert_eq!(vm_sample(&v1, &v2, 5.0).mem_used, Some(300.0 * 1024.0));
    }
}
