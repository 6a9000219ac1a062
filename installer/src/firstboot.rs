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

/// Where hostd writes the root-only token `keel join` uses to reach the local API.
pub const LOCAL_TOKEN: &str = "/var/lib/keel/local-root.token";
/// The cluster record a node has once it is a member.
pub const CLUSTER_RECORD: &str = "/var/lib/keel/cluster/cluster.json";
/// The local API `keel join` talks to (its default `--local-url`).
pub const LOCAL_API: &str = "127.0.0.1:8006";
/// Attempts of `keel join` and the pause before each retry.
const JOIN_BACKOFF_S: [u64; 5] = [10, 20, 40, 60, 60];
/// Bound of one `keel join` run (it follows the join task: corosync and Pacemaker start).
const JOIN_TIMEOUT_S: u64 = 900;

/// `HOST:PORT` of a member address as `keel join` reads it (`HOST`, `HOST:PORT`, an IPv6
/// address bare or in brackets; the API port is 8006 by default).
pub fn member_endpoint(address: &str) -> String {
    if let Some(rest) = address.strip_prefix('[') {
        return match rest.split_once("]:") {
            Some(_) => address.to_string(),
            None => format!("[{}]:8006", rest.trim_end_matches(']')),
        };
    }
    if let Ok(std::net::IpAddr::V6(a)) = address.parse::<std::net::IpAddr>() {
        return format!("[{a}]:8006");
    }
    if address.contains(':') {
        address.to_string()
    } else {
        format!("{address}:8006")
    }
}

/// What one `keel join` run means for the next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined,
    /// Retrying cannot help (the member refused, the pin does not match, this node cannot
    /// join, or it already holds a cluster record).
    Final(String),
    /// The member or the local API could not be reached, or the join broke off: try again.
    Retry(String),
}

/// Classify one `keel join` run from its exit status, output, and whether this node has a
/// cluster record afterwards.
pub fn classify(success: bool, output: &str, clustered: bool) -> JoinOutcome {
    if success {
        return JoinOutcome::Joined;
    }
    let last = output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_string();
    if clustered {
        return JoinOutcome::Final(format!(
            "keel join failed ({last}) but this node now has a cluster record ({CLUSTER_RECORD}): check `keel cluster status` on a member; a retry would be refused"
        ));
    }
    const FINAL: [&str; 7] = [
        "refused the join",
        "wrong fingerprint",
        "already a member",
        "already running",
        "exists: this node has a corosync configuration",
        "holds",
        "is not a SHA-256 fingerprint",
    ];
    if FINAL.iter().any(|m| output.contains(m)) {
        JoinOutcome::Final(last)
    } else {
        JoinOutcome::Retry(last)
    }
}

/// Poll `f` once a second until it holds or `timeout` passes; logs progress every 30 s.
fn wait_until(log: &mut Log, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    let mut said = 0;
    loop {
        if f() {
            log.line(format!(
                "first boot: {what}: ok after {:.0}s",
                t0.elapsed().as_secs_f64()
            ));
            return true;
        }
        let el = t0.elapsed();
        if el >= timeout {
            log.line(format!(
                "first boot: {what}: not within {}s",
                timeout.as_secs()
            ));
            return false;
        }
        if el.as_secs() / 30 > said {
            said = el.as_secs() / 30;
            log.line(format!(
                "first boot: still waiting for {what} ({}s)",
                el.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Can a TCP connection to `endpoint` (HOST:PORT) be opened within 3 s?
fn tcp_reachable(endpoint: &str) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(addrs) = endpoint.to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok())
}

fn join(log: &mut Log, j: &crate::install::JoinSpec) -> bool {
    let ok = join_inner(log, j);
    // One greppable line on the console and in install.log either way.
    if ok {
        log.line(format!("KEEL-FIRSTBOOT-JOINED member={}", j.address));
    } else {
        log.line(format!(
            "KEEL-FIRSTBOOT-JOIN-FAILED member={} (see the lines above; join by hand: keel join {} --fingerprint {} --token NEW_TOKEN)",
            j.address, j.address, j.fingerprint
        ));
    }
    ok
}

fn join_inner(log: &mut Log, j: &crate::install::JoinSpec) -> bool {
    // Does this keel know `join`? Its absence is reported, never papered over.
    let help = Command::new("keel").args(["join", "--help"]).output();
    match help {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            log.line(format!(
                "first boot: cannot join the cluster at {}: this `keel` has no `join` command ({})",
                j.address,
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim(),
            ));
            return false;
        }
        Err(e) => {
            log.line(format!("first boot: cannot run keel: {e}"));
            return false;
        }
    }
    if Path::new(CLUSTER_RECORD).exists() {
        log.line(format!(
            "first boot: this node already has a cluster record ({CLUSTER_RECORD}); not joining again"
        ));
        return false;
    }
    // The local hostd: its root-only token and its API port (it writes the token after the
    // certificate, and listens after that).
    wait_until(
        log,
        &format!("the local API on {LOCAL_API} (keel-hostd)"),
        Duration::from_secs(180),
        || Path::new(LOCAL_TOKEN).exists() && tcp_reachable(LOCAL_API),
    );
    // The network: the member's API port must answer before a join is worth trying.
    let ep = member_endpoint(&j.address);
    wait_until(
        log,
        &format!("the member's API at {ep}"),
        Duration::from_secs(300),
        || tcp_reachable(&ep),
    );
    let attempts = JOIN_BACKOFF_S.len() + 1;
    for attempt in 1..=attempts {
        log.line(format!(
            "first boot: keel join {} --fingerprint {} --token … (attempt {attempt}/{attempts})",
            j.address, j.fingerprint
        ));
        let t0 = Instant::now();
        let out = Command::new("timeout")
            .arg(JOIN_TIMEOUT_S.to_string())
            .arg("keel")
            .args(join_args(j))
            .output();
        let outcome = match out {
            Ok(o) => {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                for l in text.lines() {
                    log.line(format!("  {l}"));
                }
                log.line(format!(
                    "first boot: keel join exited {} after {:.0}s",
                    o.status,
                    t0.elapsed().as_secs_f64()
                ));
                classify(
                    o.status.success(),
                    &text,
                    Path::new(CLUSTER_RECORD).exists(),
                )
            }
            Err(e) => JoinOutcome::Final(format!("cannot run keel join: {e}")),
        };
        match outcome {
            JoinOutcome::Joined => {
                log.line(format!(
                    "first boot: joined the cluster through {} in {:.0}s",
                    j.address,
                    t0.elapsed().as_secs_f64()
                ));
                return true;
            }
            JoinOutcome::Final(m) => {
                log.line(format!("first boot: join failed, not retrying: {m}"));
                return false;
            }
            JoinOutcome::Retry(m) => {
                let Some(pause) = JOIN_BACKOFF_S.get(attempt - 1) else {
                    log.line(format!(
                        "first boot: join failed after {attempts} attempts: {m}"
                    ));
                    return false;
                };
                log.line(format!(
                    "first boot: join attempt {attempt} failed ({m}); retrying in {pause}s"
                ));
                std::thread::sleep(Duration::from_secs(*pause));
            }
        }
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

    #[test]
    fn member_endpoints() {
        assert_eq!(member_endpoint("10.0.0.1"), "10.0.0.1:8006");
        assert_eq!(member_endpoint("10.0.0.1:9000"), "10.0.0.1:9000");
        assert_eq!(member_endpoint("node1.lab"), "node1.lab:8006");
        assert_eq!(member_endpoint("node1.lab:8007"), "node1.lab:8007");
        assert_eq!(member_endpoint("fd00::1"), "[fd00::1]:8006");
        assert_eq!(member_endpoint("[fd00::1]"), "[fd00::1]:8006");
        assert_eq!(member_endpoint("[fd00::1]:8443"), "[fd00::1]:8443");
    }

    #[test]
    fn join_outcomes() {
        assert_eq!(classify(true, "joined", true), JoinOutcome::Joined);
        // Transient: the member is not up yet.
        assert!(matches!(
            classify(false, "Error: cannot reach 10.0.0.1:8006: connection refused\n", false),
            JoinOutcome::Retry(m) if m.contains("cannot reach")
        ));
        // A refusal is final: the token is spent or wrong, retrying cannot help.
        assert!(matches!(
            classify(
                false,
                "Error: the member refused the join: this join token was already used\n",
                false
            ),
            JoinOutcome::Final(_)
        ));
        assert!(matches!(
            classify(
                false,
                "Error: wrong fingerprint: 10.0.0.1:8006 presented certificate AA, expected BB\n",
                false
            ),
            JoinOutcome::Final(_)
        ));
        // Broke off after the member accepted: a record exists, a retry would be refused.
        assert!(matches!(
            classify(false, "Error: connection reset\n", true),
            JoinOutcome::Final(m) if m.contains("cluster record")
        ));
    }
}
