//! Human output: tables (comfy-table) and unit formatting. `--json` bypasses all of this.

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, ContentArrangement, Table};
use keel_api::network::NetworkInfo;
use keel_api::node::NodeInfo;
use keel_api::storage::{PoolInfo, VolumeInfo};
use keel_api::task::TaskInfo;
use keel_api::vm::{VmConfig, VmStatus, VmSummary};
use serde::Serialize;
use serde_json::Value;

pub fn print_json(v: &Value) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(_) => println!("{v}"),
    }
}

/// Print a table without its trailing padding.
pub(crate) fn print_table(t: &mut Table) {
    for i in 0..t.column_count() {
        if let Some(c) = t.column_mut(i) {
            c.set_padding((0, 2));
        }
    }
    for line in t.lines() {
        println!("{}", line.trim_end());
    }
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

/// Right-align the given columns (numbers).
fn right(t: &mut Table, cols: &[usize]) {
    for &c in cols {
        if let Some(col) = t.column_mut(c) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn kv_table(rows: Vec<(&str, String)>) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic);
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    t
}

/// The wire name of an enum value (`"qcow2"`, `"virtio"`, …).
pub fn wire_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `20.0 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

/// MiB as the user gave them: `512 MiB`, `2 GiB`, `1.5 GiB`.
pub fn mib(n: u64) -> String {
    if n >= 1024 && n.trailing_zeros() >= 10 {
        format!("{} GiB", n / 1024)
    } else if n >= 1024 {
        format!("{:.1} GiB", n as f64 / 1024.0)
    } else {
        format!("{n} MiB")
    }
}

/// `45s`, `3m 05s`, `2h 07m`, `4d 03h`.
pub fn duration(s: u64) -> String {
    let (d, h, m, sec) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn time(unix: i64) -> String {
    keel_api::time::utc(unix, ' ')
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

pub fn vm_list(mut vms: Vec<VmSummary>) {
    vms.sort_by(|a, b| {
        (a.vmid.is_none(), a.vmid, &a.name).cmp(&(b.vmid.is_none(), b.vmid, &b.name))
    });
    let mut t = table(&["VMID", "NAME", "STATE", "VCPUS", "MEMORY", "UPTIME"]);
    let mut foreign = false;
    for v in &vms {
        let name = if v.template {
            format!("{} [template]", v.name)
        } else if v.managed {
            v.name.clone()
        } else {
            foreign = true;
            format!("{} *", v.name)
        };
        t.add_row(vec![
            opt(v.vmid),
            name,
            v.state.as_str().to_string(),
            v.vcpus.to_string(),
            mib(v.memory_mib),
            v.uptime_s.map(duration).unwrap_or_else(|| "-".into()),
        ]);
    }
    right(&mut t, &[0, 3, 4, 5]);
    print_table(&mut t);
    if foreign {
        println!("* defined outside Keel (not managed)");
    }
}

pub fn vm_show(cfg: &VmConfig, status: Option<&VmStatus>) {
    let s = &cfg.spec;
    let mut rows = vec![("vmid", s.vmid.to_string()), ("name", s.name.clone())];
    if let Some(d) = &s.description {
        rows.push(("description", d.clone()));
    }
    if let Some(st) = status {
        rows.push(("state", st.state.as_str().to_string()));
        if let Some(u) = st.uptime_s {
            rows.push(("uptime", duration(u)));
        }
        rows.push(("accelerator", st.domain_type.clone()));
        rows.push(("cpu time", format!("{:.1}s", st.cpu_time_ns as f64 / 1e9)));
    }
    rows.push((
        "vcpus",
        match s.max_vcpus {
            Some(m) => format!("{} (max {m})", s.vcpus),
            None => s.vcpus.to_string(),
        },
    ));
    rows.push(("cpu model", wire_name(&s.cpu_model)));
    rows.push((
        "memory",
        match s.balloon_mib {
            Some(b) => format!("{} (balloon {})", mib(s.memory_mib), mib(b)),
            None => mib(s.memory_mib),
        },
    ));
    if let Some(st) = status {
        if st.state.is_active() {
            rows.push(("memory now", mib(st.memory_mib)));
        }
    }
    rows.push(("machine", wire_name(&s.machine)));
    rows.push(("firmware", wire_name(&s.firmware)));
    let boot = s.effective_boot();
    rows.push((
        "boot",
        if boot.is_empty() {
            "-".into()
        } else {
            boot.join(", ")
        },
    ));
    if let Some(c) = &s.cdrom {
        let src = match (&c.pool, &c.volume, &c.path) {
            (Some(p), Some(v), _) => format!("{p}:{v}"),
            (_, _, Some(p)) => p.clone(),
            _ => "(empty)".into(),
        };
        rows.push(("cdrom", src));
    }
    rows.push(("vnc", yes_no(s.vnc)));
    rows.push(("serial", yes_no(s.serial)));
    rows.push(("guest agent", yes_no(s.guest_agent)));
    rows.push(("on crash", wire_name(&s.on_crash)));
    if let Some(ci) = &s.cloud_init {
        rows.push((
            "cloud-init",
            format!(
                "host name {}, {} key(s) (`keel vm cloud-init {}`)",
                ci.hostname.as_deref().unwrap_or(&s.name),
                ci.ssh_keys.len(),
                s.vmid
            ),
        ));
    }
    rows.push(("managed", yes_no(cfg.managed)));
    if !cfg.pending.is_empty() {
        rows.push((
            "pending",
            format!("{} (applied at next boot)", cfg.pending.join(", ")),
        ));
    }
    print_table(&mut kv_table(rows));

    if !s.disks.is_empty() {
        println!();
        let mut t = table(&[
            "DISK", "SOURCE", "SIZE", "FORMAT", "BUS", "CACHE", "READ", "WRITTEN",
        ]);
        for (i, d) in s.disks.iter().enumerate() {
            let src = match (&d.pool, &d.volume, &d.path) {
                (Some(p), Some(v), _) => format!("{p}:{v}"),
                (Some(p), None, _) => format!("{p}:(new)"),
                (_, _, Some(p)) => p.clone(),
                _ => "-".into(),
            };
            let stats = status.and_then(|st| st.disks.get(i));
            t.add_row(vec![
                format!("disk{i}"),
                src,
                d.size_mib.map(mib).unwrap_or_else(|| "-".into()),
                wire_name(&d.format),
                wire_name(&d.bus),
                wire_name(&d.cache),
                stats
                    .map(|x| bytes(x.rd_bytes.max(0) as u64))
                    .unwrap_or_else(|| "-".into()),
                stats
                    .map(|x| bytes(x.wr_bytes.max(0) as u64))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        right(&mut t, &[2, 6, 7]);
        print_table(&mut t);
    }
    if !s.nics.is_empty() {
        println!();
        let mut t = table(&["NIC", "ON", "MODEL", "MAC", "RX", "TX"]);
        for (i, n) in s.nics.iter().enumerate() {
            let on = match (&n.network, &n.bridge) {
                (Some(net), _) => format!("network={net}"),
                (_, Some(br)) => format!("bridge={br}"),
                _ => "-".into(),
            };
            let mac = n.mac.clone().unwrap_or_else(|| "-".into());
            let stats = status.and_then(|st| {
                st.nics
                    .iter()
                    .find(|x| {
                        n.mac
                            .as_deref()
                            .is_some_and(|m| m.eq_ignore_ascii_case(&x.mac))
                    })
                    .or_else(|| st.nics.get(i))
            });
            t.add_row(vec![
                format!("net{i}"),
                on,
                n.model.as_str().to_string(),
                mac,
                stats
                    .map(|x| bytes(x.rx_bytes.max(0) as u64))
                    .unwrap_or_else(|| "-".into()),
                stats
                    .map(|x| bytes(x.tx_bytes.max(0) as u64))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        right(&mut t, &[4, 5]);
        print_table(&mut t);
    }
}

pub fn task_list(tasks: &[TaskInfo]) {
    let mut t = table(&[
        "STARTED (UTC)",
        "KIND",
        "TARGET",
        "USER",
        "STATE",
        "TOOK",
        "UPID",
    ]);
    for x in tasks {
        let state = match (&x.state, &x.message) {
            (keel_api::task::TaskState::Error, Some(m)) => {
                let short: String = m.chars().take(60).collect();
                if short.len() < m.len() {
                    format!("error: {short}…")
                } else {
                    format!("error: {m}")
                }
            }
            (s, _) => s.as_str().to_string(),
        };
        let took = match x.end_time {
            Some(e) => duration((e - x.start_time).max(0) as u64),
            None => match x.progress {
                Some(p) => format!("{:.0}%", p * 100.0),
                None => "-".into(),
            },
        };
        t.add_row(vec![
            time(x.start_time),
            x.kind.clone(),
            x.target.clone(),
            x.user.clone(),
            state,
            took,
            x.upid.clone(),
        ]);
    }
    print_table(&mut t);
}

pub fn task_show(x: &TaskInfo) {
    let mut rows = vec![
        ("upid", x.upid.clone()),
        ("kind", x.kind.clone()),
        ("target", x.target.clone()),
        ("user", x.user.clone()),
        ("node", x.node.clone()),
        ("state", x.state.as_str().to_string()),
    ];
    if let Some(m) = &x.message {
        rows.push(("message", m.clone()));
    }
    rows.push(("started", format!("{} UTC", time(x.start_time))));
    if let Some(e) = x.end_time {
        rows.push(("ended", format!("{} UTC", time(e))));
        rows.push(("took", duration((e - x.start_time).max(0) as u64)));
    }
    if let Some(p) = x.progress {
        rows.push(("progress", format!("{:.0}%", p * 100.0)));
    }
    print_table(&mut kv_table(rows));
}

pub fn pools(pools: &[PoolInfo]) {
    let mut t = table(&[
        "NAME", "TYPE", "ACTIVE", "SIZE", "USED", "AVAIL", "USE%", "PATH",
    ]);
    for p in pools {
        let pct = if p.capacity > 0 {
            format!("{:.0}%", p.allocation as f64 * 100.0 / p.capacity as f64)
        } else {
            "-".into()
        };
        t.add_row(vec![
            p.name.clone(),
            p.kind.clone(),
            yes_no(p.active),
            bytes(p.capacity),
            bytes(p.allocation),
            bytes(p.available),
            pct,
            opt(p.path.clone()),
        ]);
    }
    right(&mut t, &[3, 4, 5, 6]);
    print_table(&mut t);
}

pub fn volumes(vols: &[VolumeInfo]) {
    let mut t = table(&["NAME", "FORMAT", "SIZE", "ALLOCATED", "USED BY", "PATH"]);
    for v in vols {
        t.add_row(vec![
            v.name.clone(),
            v.format.clone(),
            bytes(v.capacity),
            bytes(v.allocation),
            if v.used_by.is_empty() {
                "-".to_string()
            } else {
                v.used_by.join(", ")
            },
            v.path.clone(),
        ]);
    }
    right(&mut t, &[2, 3]);
    print_table(&mut t);
}

pub fn networks(nets: &[NetworkInfo]) {
    let mut t = table(&[
        "NAME",
        "KIND",
        "BRIDGE",
        "CIDR",
        "ACTIVE",
        "AUTOSTART",
        "USED BY",
    ]);
    for n in nets {
        let users: Vec<String> = n
            .used_by
            .iter()
            .map(|u| format!("{}{}", u.vmid, if u.running { "" } else { " (stopped)" }))
            .collect();
        t.add_row(vec![
            n.name.clone(),
            wire_name(&n.kind),
            opt(n.bridge.clone()),
            opt(n.cidr.clone()),
            yes_no(n.active),
            yes_no(n.autostart),
            if users.is_empty() {
                "-".into()
            } else {
                users.join(", ")
            },
        ]);
    }
    print_table(&mut t);
}

pub fn node(n: &NodeInfo) {
    let used = n.memory_total.saturating_sub(n.memory_free);
    print_table(&mut kv_table(vec![
        ("node", n.node.clone()),
        ("accelerator", format!("{} ({})", n.accel, n.accel_reason)),
        ("cpus", n.cpus.to_string()),
        (
            "memory",
            format!(
                "{} used of {} ({} available)",
                bytes(used),
                bytes(n.memory_total),
                bytes(n.memory_free)
            ),
        ),
        (
            "load",
            format!(
                "{:.2} {:.2} {:.2}",
                n.loadavg[0], n.loadavg[1], n.loadavg[2]
            ),
        ),
        ("uptime", duration(n.uptime_s)),
        (
            "vms",
            format!("{} running of {}", n.vms_running, n.vms_total),
        ),
        ("libvirt", n.libvirt_version.clone()),
        ("keel", n.keel_version.clone()),
    ]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(20 * 1024 * 1024 * 1024), "20.0 GiB");
        assert_eq!(mib(512), "512 MiB");
        assert_eq!(mib(2048), "2 GiB");
        assert_eq!(mib(1536), "1.5 GiB");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(185), "3m 05s");
        assert_eq!(duration(7260), "2h 01m");
        assert_eq!(duration(3 * 86400 + 4 * 3600), "3d 04h");
    }

    #[test]
    fn utc_times() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(time(1_763_761_803), "2025-11-21 21:50:03");
    }
}
