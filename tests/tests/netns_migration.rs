//! Scenario 4 (netns lab): 2 nodes, each with a private libvirtd; a small TCG guest (Keel's
//! live kernel + initrd, direct kernel boot, no disk) is live-migrated from node1 to node2
//! with `virsh migrate --live --p2p` over the lab network; its serial tick counter must
//! continue without a gap and without a second boot. That raw engine run is the reference.
//!
//! Then the same lab runs keel-hostd on both nodes against their libvirtds, forms a Keel
//! cluster, switches each libvirtd to TLS with the files hostd wrote from its cluster
//! certificate, and migrates through Keel (`keel vm migrate`): a running VM with a qcow2 disk
//! on the node-local pool, live with its disk copied over TLS NBD (ticks continuous, one boot,
//! total time and downtime beside the raw run as ratios), back again paused (the disk's
//! sha256 equal on both sides with the guest paused; the source volume released each time), a
//! cancelled migration (tiny bandwidth: the VM keeps running on node1, nothing left on node2),
//! refusals (a network missing on the target, the node itself), and an offline migration of a
//! stopped VM through the web UI's Migrate dialog (ui/e2e/migrate.mjs; needs ui/dist).
//! Last, backups in a cluster: a target and a job defined through node1 are listed by node2;
//! a `minutely` job backs a VM up once per slot, on the node that holds it, also after the VM
//! moved (the claims in the config store).

use anyhow::{bail, ensure, Context, Result};
use keel_tests::keelnode::{self, KNode};
use keel_tests::netns::{LabOpts, NetnsLab, Node};
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

/// What the raw `virsh migrate` run measured (the reference of the Keel run).
struct Raw {
    wall_s: f64,
    downtime_ms: Option<f64>,
}

fn scenario(lab: &NetnsLab, t_up: Duration) -> Result<()> {
    let raw = raw_scenario(lab, t_up)?;
    let t0 = Instant::now();
    keel_scenario(lab, &raw)?;
    eprintln!(
        "METRIC keel_migration_part={:.2}s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn raw_scenario(lab: &NetnsLab, t_up: Duration) -> Result<Raw> {
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
    n2.virsh(&["undefine", DOM])?;
    Ok(Raw {
        wall_s: mig_wall.as_secs_f64(),
        downtime_ms: field("Total downtime:")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok()),
    })
}

// ------------------------------------------------------------------ through Keel

/// `ui/e2e/migrate.mjs` (playwright-core + chromium) inside `n`'s namespaces against its API:
/// the Migrate dialog of VM `vmid` offers `target` and moves the VM there.
fn ui_migrate(n: &Node, vmid: &str, target: &str) -> Result<()> {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui");
    ensure!(
        ui.join("dist/index.html").exists() && ui.join("node_modules/playwright-core").exists(),
        "ui/dist or ui/node_modules is missing: the Migrate dialog cannot be checked (scripts/test.sh builds them; by hand: cd ui && npm ci && npm run build)"
    );
    let o = n.sh(&format!(
        "cd '{}' && KEEL_UI_URL='https://[{}]:8006' KEEL_UI_PASSWORD='{}' KEEL_MIGRATE_VMID={vmid} KEEL_MIGRATE_TARGET={target} node e2e/migrate.mjs 2>&1",
        ui.display(),
        n.addr6,
        keelnode::PW
    ))?;
    let tail: Vec<&str> = o.stdout.lines().rev().take(3).collect();
    eprintln!("ui/e2e/migrate.mjs: {}", tail.join(" | "));
    ensure!(
        o.success(),
        "ui/e2e/migrate.mjs on {} failed:\n{}{}",
        n.name,
        o.stdout,
        o.stderr
    );
    Ok(())
}

fn sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// The VM's serial log: QEMU keeps writing the path of the node the VM was created on (a
/// migrated definition keeps it), so read whichever exists.
fn vm_serial(ks: &[&KNode], vmid: u32) -> (usize, Vec<u64>) {
    for k in ks {
        let p = k.state.join(format!("serial/{vmid}.log"));
        if p.exists() {
            return serial(&p);
        }
    }
    (0, vec![])
}

fn continuous(boots: usize, ticks: &[u64]) -> Result<()> {
    ensure!(
        boots == 1,
        "guest booted {boots} times (restart, not migration)"
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
    Ok(())
}

fn domains(n: &Node) -> Result<Vec<String>> {
    Ok(n.virsh(&["list", "--all", "--name"])?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

/// A field of `virsh domjobinfo --completed`, as its first number.
fn jobfield(job: &str, k: &str) -> Option<f64> {
    job.lines()
        .find(|l| l.starts_with(k))
        .and_then(|l| l[k.len()..].split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn wait_ticks(lab: &NetnsLab, ks: &[&KNode], vmid: u32, at_least: u64, what: &str) -> Result<()> {
    lab.wait_for(what, T, || {
        Ok(vm_serial(ks, vmid).1.last().is_some_and(|&t| t >= at_least))
    })?;
    Ok(())
}

fn keel_scenario(lab: &NetnsLab, raw: &Raw) -> Result<()> {
    let (n1, n2) = (lab.node(1)?, lab.node(2)?);
    let t0 = Instant::now();
    let k1 = keelnode::start_hostd_qemu(lab, n1, "")?;
    let k2 = keelnode::start_hostd_qemu(lab, n2, "")?;
    keelnode::form_cluster(lab, &[&k1, &k2], "keelmig", "off")?;
    eprintln!(
        "METRIC keel_pair_clustered={:.2}s",
        t0.elapsed().as_secs_f64()
    );
    // hostd wrote libvirt's and QEMU's TLS files from its cluster certificate at init/join;
    // each libvirtd now serves TLS with them (and QEMU uses them for migration and NBD)
    let t1 = Instant::now();
    for n in [n1, n2] {
        let tls = keelnode::libvirt_tls(n);
        lab.wait_for(
            &format!("{}: TLS files written by keel-hostd", n.name),
            Duration::from_secs(30),
            || Ok(tls.server_key.exists() && tls.qemu_dir.join("client-key.pem").exists()),
        )?;
        lab.enable_libvirt_tls(n, &tls)?;
    }
    // hostd notices the restarted libvirtd at its first call and reconnects
    for k in [&k1, &k2] {
        let node = k.n.name.clone();
        lab.wait_for(
            &format!("{node}: hostd reconnected to libvirtd"),
            Duration::from_secs(30),
            || Ok(k.keel(&["--node", &node, "storage", "list"])?.success()),
        )?;
    }
    // node1 reaches node2's libvirtd over TLS with its cluster certificate; without a client
    // certificate signed by the cluster CA it is refused
    let pki1 = keelnode::client_pki_dir(n1);
    let tls_uri =
        |pki: &Path| format!("qemu+tls://[{}]/system?pkipath={}", n2.addr6, pki.display());
    n1.run_ok(&["virsh", "-c", &tls_uri(&pki1), "version"])
        .context("node1 → node2 libvirt over TLS")?;
    let bogus = lab.shared_dir().join("bogus-pki");
    std::fs::create_dir_all(&bogus)?;
    for f in ["cacert.pem", "clientcert.pem", "clientkey.pem"] {
        std::fs::copy(keelnode::client_pki_dir(n1).join(f), bogus.join(f))?;
    }
    // a self-signed client certificate for the same name: not signed by the cluster CA
    let o = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=node1", "-keyout"])
        .arg(bogus.join("clientkey.pem"))
        .arg("-out")
        .arg(bogus.join("clientcert.pem"))
        .output()?;
    ensure!(
        o.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = n1.run(&["virsh", "-c", &tls_uri(&bogus), "version"])?;
    ensure!(
        !o.success(),
        "node2's libvirtd accepted a client certificate not signed by the cluster CA"
    );
    eprintln!(
        "METRIC libvirt_tls_switch={:.2}s",
        t1.elapsed().as_secs_f64()
    );

    // a VM with a qcow2 disk on node1's local pool holding 32 MiB of known data, booting the
    // live ISO (the ISO is in the local pool of both nodes)
    let iso = lab.shared_dir().join("keel-live.iso");
    let iso_s = iso.to_string_lossy().to_string();
    k1.keel_ok(&["--node", "node1", "storage", "upload", "local", &iso_s])?;
    k2.keel_ok(&["--node", "node2", "storage", "upload", "local", &iso_s])?;
    let k = [&k1, &k2];
    k1.keel_ok(&[
        "--node",
        "node1",
        "vm",
        "create",
        "--vmid",
        "100",
        "--name",
        "mig-live",
        "--memory-mib",
        "160",
        "--disk",
        "local:64:qcow2",
        "--cdrom",
        "local:keel-live.iso",
        "--boot",
        "cdrom,disk0",
    ])?;
    // cloud-init on, through the CLI: its seed, a volume of node1's local pool, moves with the
    // VM (copied to node2's local pool, released here) and back
    k1.keel_ok(&[
        "--node",
        "node1",
        "vm",
        "cloud-init",
        "100",
        "--enable",
        "--hostname",
        "mig-live-ci",
        "--ci-user",
        "ops",
    ])?;
    let shown = k1.keel_ok(&["--node", "node1", "vm", "cloud-init", "100"])?;
    ensure!(
        shown.contains("mig-live-ci") && shown.contains("ops"),
        "keel vm cloud-init 100 shows: {shown}"
    );
    let seed = "images/vm-100-cloudinit.iso";
    let (s1, s2) = (k1.state.join(seed), k2.state.join(seed));
    ensure!(s1.exists(), "no cloud-init seed at {}", s1.display());
    let disk = "images/vm-100-disk-0.qcow2";
    let (d1, d2) = (k1.state.join(disk), k2.state.join(disk));
    n1.run_ok(&[
        "qemu-io",
        "-f",
        "qcow2",
        "-c",
        "write -P 0x5a 0 32M",
        &d1.to_string_lossy(),
    ])?;
    k1.keel_ok(&["--node", "node1", "vm", "start", "100"])?;
    wait_ticks(lab, &k, 100, 3, "Keel VM ticking (tick 3) on node1")?;

    // 1. live, with its disk copied over TLS NBD
    let before = vm_serial(&k, 100).1.last().copied().unwrap_or(0);
    let t_mig = Instant::now();
    let out = k1.keel_ok(&["--node", "node1", "vm", "migrate", "100", "node2"])?;
    let wall = t_mig.elapsed().as_secs_f64();
    ensure!(
        n2.virsh(&["domstate", "mig-live"])?.trim() == "running",
        "not running on node2"
    );
    ensure!(
        !domains(n1)?.contains(&"mig-live".to_string()),
        "still defined on node1"
    );
    ensure!(
        !d1.exists(),
        "node1's volume was not released: {}",
        d1.display()
    );
    ensure!(d2.exists(), "no disk on node2 at {}", d2.display());
    ensure!(
        s2.exists() && !s1.exists(),
        "the cloud-init seed did not move: node1 {}, node2 {}",
        s1.exists(),
        s2.exists()
    );
    let xml2 = n2.virsh(&["dumpxml", "mig-live"])?;
    ensure!(
        xml2.contains(&s2.to_string_lossy().to_string()),
        "node2's domain does not use node2's seed: {xml2}"
    );
    let job = n2.virsh(&["domjobinfo", "mig-live", "--completed"])?;
    // the 32 MiB written on node1 arrived in node2's copy (read beside the running guest)
    n2.run_ok(&[
        "qemu-io",
        "-r",
        "-U",
        "-f",
        "qcow2",
        "-c",
        "read -P 0x5a 0 32M",
        &d2.to_string_lossy(),
    ])
    .context("node2's disk lacks the data written on node1")?;
    let downtime = jobfield(&job, "Total downtime:");
    let rec = k2.keel_ok(&["cluster", "config", "get", "vms/100"])?;
    ensure!(
        rec.contains("\"node2\""),
        "/vms/100 does not name node2: {rec}"
    );
    wait_ticks(lab, &k, 100, before + 4, "Keel VM ticking on node2")?;
    let (boots, ticks) = vm_serial(&k, 100);
    continuous(boots, &ticks)?;
    eprintln!(
        "METRIC keel_migrate_wall={wall:.2}s libvirt_time_elapsed={}ms total_downtime={}ms disk_data=32MiB raw_virsh_wall={:.2}s raw_downtime={}ms ratio_wall={:.2} ratio_downtime={}",
        jobfield(&job, "Time elapsed:").unwrap_or(-1.0),
        downtime.unwrap_or(-1.0),
        raw.wall_s,
        raw.downtime_ms.unwrap_or(-1.0),
        wall / raw.wall_s,
        match (downtime, raw.downtime_ms) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "?".into(),
        }
    );
    eprintln!("keel vm migrate output:\n{out}");

    // 2. back, paused: the disk is the same on both sides, node2's copy released
    n2.virsh(&["suspend", "mig-live"])?;
    let h2 = sha256(&d2)?;
    k2.keel_ok(&["--node", "node2", "vm", "migrate", "100", "node1"])?;
    ensure!(
        n1.virsh(&["domstate", "mig-live"])?.trim() == "paused",
        "not paused on node1"
    );
    let h1 = sha256(&d1)?;
    ensure!(h1 == h2, "disk sha256 differs: node2 {h2}, node1 {h1}");
    ensure!(!d2.exists(), "node2's volume was not released");
    ensure!(
        s1.exists() && !s2.exists(),
        "the cloud-init seed did not come back"
    );
    n1.virsh(&["resume", "mig-live"])?;
    let before = vm_serial(&k, 100).1.last().copied().unwrap_or(0);
    wait_ticks(lab, &k, 100, before + 2, "Keel VM ticking on node1 again")?;
    eprintln!("METRIC disk_sha256_equal={h1}");

    // 3. cancel: at 1 MiB/s the 32 MiB disk takes half a minute; abort it on the way
    let upid = k1.keel_ok(&[
        "--node",
        "node1",
        "--no-wait",
        "vm",
        "migrate",
        "100",
        "node2",
        "--bandwidth",
        "1",
    ])?;
    let upid = upid.trim().to_string();
    lab.wait_for("the slow migration copies", T, || {
        let j = n1.virsh(&["domjobinfo", "mig-live"]).unwrap_or_default();
        Ok(jobfield(&j, "Data processed:").is_some_and(|v| v > 0.0))
    })?;
    // the task reports libvirt's figures as they come
    lab.wait_for("progress in the migration task's log", T, || {
        let o = k1.keel(&["--node", "node1", "task", "log", &upid])?;
        Ok(o.stdout.contains("MiB remaining"))
    })?;
    let t_cancel = Instant::now();
    k1.keel_ok(&["--node", "node1", "vm", "migrate-cancel", "100"])?;
    let log = k1.keel(&["--node", "node1", "task", "log", "--follow", &upid])?;
    let log = format!("{}{}", log.stdout, log.stderr);
    eprintln!("cancelled migration's task log:\n{log}");
    ensure!(log.contains("migration failed"), "task log: {log}");
    ensure!(
        log.contains("MiB remaining"),
        "no progress from libvirt's job statistics in the task log: {log}"
    );
    ensure!(log.contains("stays on node1"), "task log: {log}");
    ensure!(
        n1.virsh(&["domstate", "mig-live"])?.trim() == "running",
        "not running on node1"
    );
    ensure!(
        !domains(n2)?.contains(&"mig-live".to_string()),
        "left on node2"
    );
    ensure!(
        !d2.exists() && !s2.exists(),
        "a partial copy (disk {}, cloud-init seed {}) was left on node2",
        d2.exists(),
        s2.exists()
    );
    let before = vm_serial(&k, 100).1.last().copied().unwrap_or(0);
    wait_ticks(
        lab,
        &k,
        100,
        before + 2,
        "Keel VM ticking on node1 after the cancel",
    )?;
    let (boots, ticks) = vm_serial(&k, 100);
    continuous(boots, &ticks)?;
    eprintln!(
        "METRIC cancel_to_task_end={:.2}s",
        t_cancel.elapsed().as_secs_f64()
    );

    // 4. refusals before anything moves, then 5. offline migration of a stopped VM
    k1.keel_ok(&[
        "--node",
        "node1",
        "net",
        "create",
        "mignet",
        "--nat",
        "10.231.7.1/24",
    ])?;
    k1.keel_ok(&[
        "--node",
        "node1",
        "vm",
        "create",
        "--vmid",
        "101",
        "--name",
        "mig-off",
        "--memory-mib",
        "64",
        "--disk",
        "local:16:qcow2",
        "--net",
        "network=mignet",
    ])?;
    let (o1, o2) = (
        k1.state.join("images/vm-101-disk-0.qcow2"),
        k2.state.join("images/vm-101-disk-0.qcow2"),
    );
    n1.run_ok(&[
        "qemu-io",
        "-f",
        "qcow2",
        "-c",
        "write -P 0x33 0 4M",
        &o1.to_string_lossy(),
    ])?;
    let h_off = sha256(&o1)?;
    let o = k1.keel(&["--node", "node1", "vm", "migrate", "101", "node2"])?;
    ensure!(
        !o.success() && o.stderr.contains("has no libvirt network \"mignet\""),
        "missing network not refused: {}{}",
        o.stdout,
        o.stderr
    );
    let o = k1.keel(&["--node", "node1", "vm", "migrate", "101", "node1"])?;
    ensure!(
        !o.success() && o.stderr.contains("already runs on node1"),
        "migration to itself not refused: {}",
        o.stderr
    );
    ensure!(o1.exists() && !o2.exists(), "a refusal moved something");
    k2.keel_ok(&[
        "--node",
        "node2",
        "net",
        "create",
        "mignet",
        "--nat",
        "10.231.7.1/24",
    ])?;
    // the offline migration through the web UI's Migrate dialog on node1 (node2 offered as
    // the target, the task followed to its end)
    let t_off = Instant::now();
    ui_migrate(n1, "101", "node2")?;
    ensure!(
        n2.virsh(&["domstate", "mig-off"])?.trim() == "shut off",
        "mig-off on node2"
    );
    ensure!(
        !domains(n1)?.contains(&"mig-off".to_string()),
        "mig-off still on node1"
    );
    ensure!(!o1.exists(), "node1's volume of VM 101 was not released");
    ensure!(sha256(&o2)? == h_off, "offline copy differs");
    eprintln!(
        "METRIC offline_migrate_wall={:.2}s",
        t_off.elapsed().as_secs_f64()
    );
    // 6. backup targets and jobs are cluster configuration; each slot backs a VM up once
    backup_step(lab, &k1, &k2)?;
    n1.virsh(&["destroy", "mig-live"])?;
    n1.virsh(&["destroy", "mig-off"])?;
    Ok(())
}

/// Backups of `vmid` complete on the `dir` target at `dir` (`<dir>/<vmid>/<id>/manifest.json`).
fn backups_of(dir: &Path, vmid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join(vmid.to_string()))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("manifest.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn json_of(out: String) -> Result<serde_json::Value> {
    serde_json::from_str(&out).with_context(|| format!("not JSON: {out}"))
}

/// The runs of backup job `job` on `k`'s node that backed VM `vmid` up: (upid, log).
fn job_backups(k: &KNode, job: &str, vmid: u32) -> Result<Vec<String>> {
    let node = k.n.name.clone();
    let target = format!("backupjob-{job}");
    let tasks = json_of(k.keel_ok(&[
        "--json", "--node", &node, "task", "list", "--target", &target,
    ])?)?;
    let mut out = vec![];
    for t in tasks.as_array().cloned().unwrap_or_default() {
        let upid = t["upid"].as_str().unwrap_or_default().to_string();
        ensure!(
            t["state"] != "running",
            "{node}: backup job run {upid} still running"
        );
        let log = k.keel_ok(&["--node", &node, "task", "log", &upid])?;
        if log.contains(&format!("VM {vmid}: ok")) {
            out.push(upid);
        }
    }
    Ok(out)
}

/// Step 6: a `dir` target on the lab's shared directory and a `minutely` job for VM 101,
/// created through node1 while the VM runs on node2: node2 lists both; the slot is backed up
/// by node2 only; after a live migration to node1 the next slot by node1 only (one backup per
/// slot); deleted through node2, node1 no longer lists them.
fn backup_step(lab: &NetnsLab, k1: &KNode, k2: &KNode) -> Result<()> {
    let t0 = Instant::now();
    let (vmid, job) = (101u32, "bk-min");
    k2.keel_ok(&["--node", "node2", "vm", "start", "101"])?;
    let dir = lab.shared_dir().join("backups-shared");
    std::fs::create_dir_all(&dir)?;
    let dir_s = dir.to_string_lossy().to_string();
    k1.keel_ok(&[
        "--node", "node1", "backup", "target", "add", "shared", "--path", &dir_s,
    ])?;
    k1.keel_ok(&[
        "--node",
        "node1",
        "backup",
        "job",
        "add",
        job,
        "--vms",
        "101",
        "--target",
        "shared",
        "--schedule",
        "minutely",
    ])?;
    let t = json_of(k2.keel_ok(&["--json", "--node", "node2", "backup", "target", "list"])?)?;
    ensure!(
        t[0]["name"] == "shared" && t[0]["scope"] == "cluster" && t[0]["ok"] == true,
        "node2's backup targets: {t}"
    );
    let j = json_of(k2.keel_ok(&["--json", "--node", "node2", "backup", "job", "list"])?)?;
    ensure!(
        j[0]["config"]["id"] == job && j[0]["scope"] == "cluster",
        "node2's backup jobs: {j}"
    );
    // slot 1: node2 holds the running VM
    lab.wait_for(
        "slot 1: a backup of VM 101",
        Duration::from_secs(90),
        || Ok(!backups_of(&dir, vmid).is_empty()),
    )?;
    let slot1 = Instant::now();
    // both schedulers (2 s passes) are past the slot, the run has ended
    lab.wait_for(
        "node2's run of slot 1 ended",
        Duration::from_secs(30),
        || Ok(job_backups(k2, job, vmid).is_ok_and(|v| v.len() == 1)),
    )?;
    std::thread::sleep(Duration::from_secs(4));
    ensure!(
        backups_of(&dir, vmid).len() == 1,
        "slot 1: {:?}",
        backups_of(&dir, vmid)
    );
    ensure!(
        job_backups(k1, job, vmid)?.is_empty(),
        "node1 backed VM 101 up in slot 1"
    );
    // live to node1 before the next slot
    k2.keel_ok(&["--node", "node2", "vm", "migrate", "101", "node1"])?;
    ensure!(
        slot1.elapsed() < Duration::from_secs(50),
        "the migration took until the next slot ({:.0}s after slot 1)",
        slot1.elapsed().as_secs_f64()
    );
    lab.wait_for(
        "slot 2: a second backup of VM 101",
        Duration::from_secs(90),
        || Ok(backups_of(&dir, vmid).len() >= 2),
    )?;
    lab.wait_for(
        "node1's run of slot 2 ended",
        Duration::from_secs(30),
        || Ok(job_backups(k1, job, vmid).is_ok_and(|v| v.len() == 1)),
    )?;
    std::thread::sleep(Duration::from_secs(4));
    ensure!(
        backups_of(&dir, vmid).len() == 2,
        "two slots: {:?}",
        backups_of(&dir, vmid)
    );
    ensure!(
        job_backups(k2, job, vmid)?.len() == 1,
        "node2 backed VM 101 up again"
    );
    let claim = k2.keel_ok(&[
        "cluster",
        "config",
        "get",
        &format!("backup/claims/{job}/101"),
    ])?;
    ensure!(claim.contains("\"node1\""), "the claim of slot 2: {claim}");
    // either node lists every node's last run: node2's of slot 1, node1's of slot 2
    let j = json_of(k2.keel_ok(&["--json", "--node", "node2", "backup", "job", "list"])?)?;
    let runs = j[0]["node_runs"].as_array().cloned().unwrap_or_default();
    ensure!(
        runs.len() == 2
            // node1's may be the next slot's, just started
            && (runs[0]["state"] == "ok" || runs[0]["state"] == "running")
            && runs[1]["state"] == "ok"
            && runs[0]["node"] == "node1"
            && runs[0]["upid"].as_str().is_some_and(|u| u.starts_with("UPID:node1:"))
            && runs[1]["node"] == "node2"
            && runs[1]["upid"].as_str().is_some_and(|u| u.starts_with("UPID:node2:"))
            && runs[0]["time"].as_i64() > runs[1]["time"].as_i64(),
        "node2's listing of the job's runs: {j}"
    );
    let table = k1.keel_ok(&["--node", "node1", "backup", "job", "list"])?;
    ensure!(
        table.contains("node1: ") && table.contains("node2: "),
        "node1's table of the job's runs:\n{table}"
    );
    // deleted through node2: gone on node1, with the job's claims
    k2.keel_ok(&["--node", "node2", "backup", "job", "remove", job])?;
    k2.keel_ok(&["--node", "node2", "backup", "target", "remove", "shared"])?;
    let j = json_of(k1.keel_ok(&["--json", "--node", "node1", "backup", "job", "list"])?)?;
    let t = json_of(k1.keel_ok(&["--json", "--node", "node1", "backup", "target", "list"])?)?;
    ensure!(
        j.as_array().is_some_and(Vec::is_empty) && t.as_array().is_some_and(Vec::is_empty),
        "node1 still lists: jobs {j}, targets {t}"
    );
    ensure!(
        !k1.keel(&[
            "cluster",
            "config",
            "get",
            &format!("backup/claims/{job}/101")
        ])?
        .success(),
        "the job's claim outlived it"
    );
    ensure!(
        !k1.keel(&[
            "cluster",
            "config",
            "get",
            &format!("backup/runs/{job}/node1")
        ])?
        .success(),
        "the job's run records outlived it"
    );
    eprintln!(
        "METRIC backup_cluster_step={:.2}s",
        t0.elapsed().as_secs_f64()
    );
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
