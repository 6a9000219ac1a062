//! Scenario 4 (netns lab): 2 nodes, each with a private libvirtd; a small TCG guest (Keel's
//! live kernel + initrd, direct kernel boot, no disk) is live-migrated from node1 to node2
//! with `virsh migrate --live --p2p` over the lab network; its serial tick counter must
//! continue without a gap and without a second boot.

use anyhow::{bail, ensure, Context, Result};
use keel_tests::netns::{LabOpts, NetnsLab};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DOM: &str = "keel-mig";
const T: Duration = Duration::from_secs(180);

/// (boot markers, tick numbers in order) from the serial log.
fn serial(path: &Path) -> (usize, Vec<u64>) {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let boots = text.matches("KEEL-LIVE: guest booted").count();
    let ticks = text
        .lines()
        .filter_map(|l| l.split("KEEL-LIVE: tick ").nth(1))
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    (boots, ticks)
}

fn domain_xml(kernel: &Path, initrd: &Path, log: &Path) -> String {
    format!(
        r#"<domain type='qemu'>
  <name>{DOM}</name>
  <memory unit='MiB'>160</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{}</kernel><initrd>{}</initrd><cmdline>console=ttyS0 quiet</cmdline></os>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model></cpu>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{}' append='on'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
"#,
        kernel.display(),
        initrd.display(),
        log.display()
    )
}

fn scenario(lab: &NetnsLab, t_up: Duration) -> Result<()> {
    let shared = lab.shared_dir();
    let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("../iso/live/build.sh");
    let out = Command::new("bash")
        .arg(&build)
        .arg(&shared)
        .output()
        .context("running iso/live/build.sh")?;
    ensure!(
        out.status.success(),
        "live ISO build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t0 = Instant::now();
    lab.start_libvirtd()?;
    eprintln!(
        "METRIC lab_up={:.2}s libvirtd_pair_ready={:.2}s",
        t_up.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    let (n1, n2) = (lab.node(1)?, lab.node(2)?);
    for n in [n1, n2] {
        let caps = n.virsh(&["capabilities"])?;
        ensure!(
            caps.contains(&format!("-{:012}</uuid>", n.index)),
            "{}: libvirtd does not report its lab host_uuid",
            n.name
        );
    }
    let log = shared.join("serial.log");
    let xml = shared.join("domain.xml");
    std::fs::write(
        &xml,
        domain_xml(&shared.join("vmlinuz"), &shared.join("initrd.gz"), &log),
    )?;
    n1.virsh(&["define", &xml.to_string_lossy()])?;
    let t_start = Instant::now();
    n1.virsh(&["start", DOM])?;
    lab.wait_for("guest ticking (tick 3) on node1", T, || {
        Ok(serial(&log).1.last().is_some_and(|&t| t >= 3))
    })?;
    eprintln!(
        "METRIC guest_start_to_tick3={:.2}s",
        t_start.elapsed().as_secs_f64()
    );

    let (_, before) = serial(&log);
    let last_before = before.last().copied().unwrap_or(0);
    let t_mig = Instant::now();
    let dst = n2.libvirt_tcp_uri();
    let miguri = format!("tcp://{}:49152", n2.addr4);
    n1.virsh(&[
        "migrate",
        "--live",
        "--p2p",
        "--persistent",
        "--undefinesource",
        DOM,
        &dst,
        "--migrateuri",
        &miguri,
    ])
    .context("virsh migrate")?;
    let mig_wall = t_mig.elapsed();
    let on2 = n2.virsh(&["domstate", DOM])?;
    ensure!(on2.trim() == "running", "guest on node2 is {on2:?}");
    let on1 = n1.virsh(&["list", "--all", "--name"])?;
    ensure!(
        !on1.lines().any(|l| l.trim() == DOM),
        "guest still defined on node1: {on1}"
    );
    let job = n2
        .virsh(&["domjobinfo", DOM, "--completed"])
        .or_else(|_| n1.virsh(&["domjobinfo", DOM, "--completed"]))?;
    let field = |k: &str| {
        job.lines()
            .find(|l| l.starts_with(k))
            .map(|l| {
                l[k.len()..]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| "?".into())
    };
    eprintln!(
        "METRIC migrate_wall={:.2}s libvirt_time_elapsed={} total_downtime={} data_processed={}",
        mig_wall.as_secs_f64(),
        field("Time elapsed:"),
        field("Total downtime:"),
        field("Data processed:")
    );
    // the guest keeps ticking on node2: at least 3 more ticks after the migration
    let target = last_before + 4;
    lab.wait_for("guest ticking on node2 after migration", T, || {
        Ok(serial(&log).1.last().is_some_and(|&t| t >= target))
    })?;
    let (boots, ticks) = serial(&log);
    ensure!(
        boots == 1,
        "guest booted {boots} times (restart, not live migration)"
    );
    ensure!(
        ticks.first() == Some(&1),
        "first tick is {:?}",
        ticks.first()
    );
    for w in ticks.windows(2) {
        if w[1] != w[0] + 1 {
            bail!("tick gap/repeat: {} then {} (all: {ticks:?})", w[0], w[1]);
        }
    }
    // QEMU really runs in node2's namespace now and not in node1's
    let qemu_in = |n: &keel_tests::netns::Node| n.peak_rss_kib(&["qemu-system"]).len();
    ensure!(
        qemu_in(n2) == 1 && qemu_in(n1) == 0,
        "qemu processes: node1={} node2={}",
        qemu_in(n1),
        qemu_in(n2)
    );
    eprintln!(
        "METRIC ticks_before={last_before} ticks_now={} (continuous, 1 boot)",
        ticks.last().copied().unwrap_or(0)
    );
    n2.virsh(&["destroy", DOM])?;
    Ok(())
}

#[test]
fn netns_live_migration_keeps_guest_running() {
    let t0 = Instant::now();
    let mut opts = LabOpts::new("migration");
    opts.libvirt = true;
    let lab = NetnsLab::up(2, opts).expect("lab up");
    let t_up = t0.elapsed();
    let r = scenario(&lab, t_up);
    lab.finish(r).expect("scenario");
    drop(lab);
    eprintln!(
        "netns_migration wall time: {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}
