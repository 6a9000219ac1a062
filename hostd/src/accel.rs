//! Decide per host whether guests run on KVM or TCG, by a real probe.
//!
//! `/dev/kvm` existing proves little: on some hosts (nested, broken firmware) a KVM guest
//! hangs forever. The probe boots a real kernel under `-accel kvm` and waits, bounded, for the
//! kernel's first console line. The result is cached in the state directory, keyed by the
//! kernel, QEMU binary and CPU, so it runs once per host change.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::AccelSetting;
use crate::domain::DomainType;

const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
const QEMU: &str = "qemu-system-x86_64";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelDecision {
    pub domain_type: DomainType,
    pub reason: String,
}

impl AccelDecision {
    pub fn accel_name(&self) -> &'static str {
        match self.domain_type {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "tcg",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Cached {
    key: String,
    decision: AccelDecision,
}

fn tcg(reason: impl Into<String>) -> AccelDecision {
    AccelDecision {
        domain_type: DomainType::Qemu,
        reason: reason.into(),
    }
}

/// Find a kernel to probe with.
fn probe_kernel(configured: Option<&Path>, state_dir: &Path) -> Option<PathBuf> {
    if let Some(p) = configured {
        return Some(p.to_path_buf());
    }
    let live = state_dir.join("live/vmlinuz");
    if live.exists() {
        return Some(live);
    }
    let mut boot: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    boot.sort();
    boot.pop()
}

fn cache_key(kernel: &Path) -> String {
    let mut h = Sha256::new();
    h.update(kernel.display().to_string());
    for p in [kernel.to_path_buf(), which(QEMU).unwrap_or_default()] {
        if let Ok(m) = std::fs::metadata(&p) {
            h.update(format!("{:?}{}", m.modified().ok(), m.len()));
        }
    }
    h.update(std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default());
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    h.update(
        cpu.lines()
            .find(|l| l.starts_with("model name"))
            .unwrap_or(""),
    );
    hex::encode(h.finalize())
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.exists())
}

/// Decide, honouring an explicit setting, else probing (cached).
pub fn decide(
    setting: AccelSetting,
    configured_kernel: Option<&Path>,
    state_dir: &Path,
) -> AccelDecision {
    match setting {
        AccelSetting::Kvm => {
            return AccelDecision {
                domain_type: DomainType::Kvm,
                reason: "forced by config (accel = \"kvm\")".into(),
            }
        }
        AccelSetting::Tcg => return tcg("forced by config (accel = \"tcg\")"),
        AccelSetting::Auto => {}
    }
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return tcg("/dev/kvm is missing or not accessible");
    }
    let Some(kernel) = probe_kernel(configured_kernel, state_dir) else {
        return tcg(
            "no kernel to probe KVM with (set probe_kernel); not trusting /dev/kvm blindly",
        );
    };
    let key = cache_key(&kernel);
    let cache = state_dir.join("accel-probe.json");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Ok(c) = serde_json::from_str::<Cached>(&text) {
            if c.key == key {
                return c.decision;
            }
        }
    }
    let decision = probe(&kernel, state_dir);
    info!(accel = decision.accel_name(), reason = %decision.reason, "KVM probe");
    if let Ok(text) = serde_json::to_string(&Cached {
        key,
        decision: decision.clone(),
    }) {
        if let Err(e) = std::fs::write(&cache, text) {
            warn!(error = %e, "cannot cache KVM probe result");
        }
    }
    decision
}

/// Boot `kernel` under KVM; KVM works if the kernel prints its banner in time.
pub fn probe(kernel: &Path, work_dir: &Path) -> AccelDecision {
    let log = work_dir.join("accel-probe.log");
    let _ = std::fs::remove_file(&log);
    let started = Instant::now();
    let child = Command::new(QEMU)
        .args([
            "-accel",
            "kvm",
            "-machine",
            "pc",
            "-cpu",
            "host",
            "-m",
            "128",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1 earlyprintk=serial"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return tcg(format!("cannot run {QEMU} for the KVM probe: {e}")),
    };
    let result = loop {
        if std::fs::read_to_string(&log).is_ok_and(|s| s.contains("Linux version")) {
            break AccelDecision {
                domain_type: DomainType::Kvm,
                reason: format!(
                    "probe: a kernel booted under KVM in {:.1}s",
                    started.elapsed().as_secs_f64()
                ),
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            let last = err.lines().last().unwrap_or("").to_string();
            break tcg(format!(
                "probe: QEMU with KVM exited ({status}) before the kernel printed: {last}"
            ));
        }
        if started.elapsed() > PROBE_TIMEOUT {
            break tcg(format!(
                "probe: a kernel under KVM printed nothing in {}s (KVM hangs on this host)",
                PROBE_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Only our own child, by PID.
    let _ = child.kill();
    let _ = child.wait();
    result
}
