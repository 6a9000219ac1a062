//! The first-boot agent (`keel-installer firstboot`, the oneshot `keel-firstboot.service` on an
//! installed node): prints hostd's certificate fingerprint, runs the first-boot hook, posts the
//! post-install webhook (pinned), joins the cluster when the answer said so (`keel join`), then
//! disables itself. Every step is logged to the console and `/var/log/keel/install.log`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::fetch;
use crate::install::{FirstBootSpec, Log};

pub const SPEC: &str = "/etc/keel/firstboot.json";
pub const PENDING: &str = "/etc/keel/firstboot-pending";
pub const LOG: &str = "/var/log/keel/install.log";
pub const HOSTD_FINGERPRINT: &str = "/var/lib/keel/hostd.fingerprint";

/// The `keel join` command line for a join spec.
pub fn join_args(j: &crate::install::JoinSpec) -> Vec<String> {
    vec![
        "join".into(),
        j.address.clone(),
        "--fingerprint".into(),
        j.fingerprint.clone(),
        "--token".into(),
        j.token.clone(),
    ]
}

/// The JSON the webhook receives.
pub fn webhook_body(spec: &FirstBootSpec, machine_id: &str, fingerprint: Option<&str>) -> String {
    serde_json::json!({
        "event": "installed",
        "hostname": spec.hostname,
        "machine_id": machine_id,
        "hostd_fingerprint": fingerprint,
    })
    .to_string()
}

/// Run the agent. Returns whether every step succeeded (it disables itself either way: a
/// failed step is logged for the operator, not retried at every boot).
pub fn run(log: &mut Log) -> bool {
    let _ = log.attach(Path::new(LOG));
    log.line("first boot: starting");
    let spec: FirstBootSpec = match std::fs::read_to_string(SPEC)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            log.line(format!("first boot: cannot read {SPEC}: {e}"));
            finish(log);
            return false;
        }
    };
    let mut ok = true;

    // hostd makes its certificate on first start; wait for its fingerprint.
    let t0 = Instant::now();
    let mut fp = None;
    while t0.elapsed() < Duration::from_secs(180) {
        if let Ok(s) = std::fs::read_to_string(HOSTD_FINGERPRINT) {
            if !s.trim().is_empty() {
                fp = Some(s.trim().to_string());
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    match &fp {
        Some(f) => log.line(format!("KEEL-HOSTD-FINGERPRINT {f}")),
        None => {
            log.line(format!("first boot: keel-hostd wrote no {HOSTD_FINGERPRINT} within 180 s; see journalctl -u keel-hostd"));
            ok = false;
        }
    }

    if let Some(hook) = &spec.hook {
        log.line(format!("first boot: running the hook {hook}"));
        match Command::new(hook).output() {
            Ok(o) => {
                for l in String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .chain(String::from_utf8_lossy(&o.stderr).lines())
                {
                    log.line(format!("  {l}"));
                }
                log.line(format!("first boot: hook exited {}", o.status));
                ok &= o.status.success();
            }
            Err(e) => {
                log.line(format!("first boot: cannot run {hook}: {e}"));
                ok = false;
            }
        }
    }

    if let Some(w) = &spec.webhook {
        let mid = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        let body = webhook_body(&spec, mid.trim(), fp.as_deref());
        let mut done = false;
        for attempt in 1..=5 {
            match fetch::request(
                &w.url,
                &w.fingerprint,
                "POST",
                Some(("application/json", body.as_bytes())),
                Duration::from_secs(20),
            ) {
                Ok(_) => {
                    log.line(format!("first boot: posted to {}", w.url));
                    done = true;
                    break;
                }
                Err(e @ fetch::FetchError::PinMismatch { .. }) => {
                    log.line(format!("first boot: webhook refused: {e}"));
                    break;
                }
                Err(e) => {
                    log.line(format!("first boot: webhook attempt {attempt}/5: {e}"));
                    std::thread::sleep(Duration::from_secs(5));
                }
            }
        }
        ok &= done;
    }

    if let Some(j) = &spec.join {
        ok &= join(log, j);
    }
    log.line(format!(
        "first boot: {}",
        if ok {
            "done"
        } else {
            "done with errors (see above)"
        }
    ));
    finish(log);
    ok
}

fn join(log: &mut Log, j: &crate::install::JoinSpec) -> bool {
    // Does this keel know `join`? Its absence is reported, never papered over.
    let help = Command::new("keel").args(["join", "--help"]).output();
    match help {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            log.line(format!(
                "first boot: cannot join the cluster at {}: this `keel` has no `join` command ({}); join by hand once it exists: keel join {} --fingerprint {} --token …",
                j.address,
                String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("").trim(),
                j.address,
                j.fingerprint
            ));
            return false;
        }
        Err(e) => {
            log.line(format!("first boot: cannot run keel: {e}"));
            return false;
        }
    }
    for attempt in 1..=5 {
        log.line(format!(
            "first boot: keel join {} (attempt {attempt}/5)",
            j.address
        ));
        match Command::new("keel").args(join_args(j)).output() {
            Ok(o) => {
                for l in String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .chain(String::from_utf8_lossy(&o.stderr).lines())
                {
                    log.line(format!("  {l}"));
                }
                if o.status.success() {
                    log.line("first boot: joined the cluster");
                    return true;
                }
                log.line(format!("first boot: keel join exited {}", o.status));
            }
            Err(e) => log.line(format!("first boot: cannot run keel join: {e}")),
        }
        std::thread::sleep(Duration::from_secs(10));
    }
    false
}

fn finish(log: &mut Log) {
    let _ = std::fs::remove_file(PENDING);
    let _ = log.run(
        "disable first boot",
        Command::new("systemctl").args(["disable", "keel-firstboot.service"]),
    );
    log.detach();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::JoinSpec;

    #[test]
    fn join_command_and_webhook_body() {
        let j = JoinSpec {
            address: "192.0.2.11:8006".into(),
            fingerprint: "AB".into(),
            token: "t".into(),
        };
        assert_eq!(
            join_args(&j).join(" "),
            "join 192.0.2.11:8006 --fingerprint AB --token t"
        );
        let s = FirstBootSpec {
            hostname: "node01".into(),
            hook: None,
            webhook: None,
            join: Some(j),
        };
        let b: serde_json::Value =
            serde_json::from_str(&webhook_body(&s, "abc", Some("FP"))).expect("json");
        assert_eq!(b["hostname"], "node01");
        assert_eq!(b["hostd_fingerprint"], "FP");
    }
}
