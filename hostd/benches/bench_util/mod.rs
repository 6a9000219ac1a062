//! Helpers shared by the benches (`mod bench_util;` in each): exit with a message, numeric
//! environment knobs, the root/libvirtd preflight, percentiles, formatting and RSS.

#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

/// The bench's name in messages (set by each bench's `main`).
pub static NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

pub fn die(msg: &str) -> ! {
    eprintln!("{}: {msg}", NAME.get().copied().unwrap_or("bench"));
    std::process::exit(1);
}

pub fn env_num(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default,
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => die(&format!("{name}={v:?} is not a positive integer")),
        },
    }
}

/// Root, virsh and a reachable system libvirtd: say clearly what is missing.
pub fn preflight() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        die("must run as root (it drives the system libvirtd and writes /var/tmp/keel-test)");
    }
    match Command::new("virsh")
        .args(["-c", "qemu:///system", "version"])
        .output()
    {
        Err(e) => die(&format!("cannot run virsh ({e}); install libvirt-clients")),
        Ok(o) if !o.status.success() => die(&format!(
            "libvirtd is not reachable at qemu:///system: {}\n(start it: systemctl start libvirtd, or `libvirtd -d`)",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => {}
    }
}

// ---------------------------------------------------------------- statistics

/// Nearest-rank percentile of sorted samples.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort();
    v
}

pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

pub fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1e3)
}

pub fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "n/a".into();
    }
    format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
}

/// VmHWM and VmRSS of a process, as printed by the kernel (e.g. "41234 kB").
pub fn peak_rss(pid: u32) -> String {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return format!("pid {pid}: /proc status unreadable (process gone?)");
    };
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .map(|l| l[k.len()..].trim().to_string())
            .unwrap_or_else(|| "?".into())
    };
    let kb = |v: &str| {
        v.trim_end_matches(" kB")
            .trim()
            .parse::<f64>()
            .map(|k| format!("{:.1} MiB", k / 1024.0))
            .unwrap_or_else(|_| v.to_string())
    };
    format!(
        "peak RSS (VmHWM) {}  current RSS {}  (pid {pid})",
        kb(&field("VmHWM:")),
        kb(&field("VmRSS:"))
    )
}

/// The PID of the process whose command line contains `needle` (the harness keeps its Child
/// private; its config path is unique to it).
pub fn pid_with_arg(needle: &str) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        if pid == me {
            return None;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        cmd.split(|b| *b == 0)
            .any(|a| a == needle.as_bytes())
            .then_some(pid)
    })
}
