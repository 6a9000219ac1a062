//! Starting and stopping the cluster daemons: corosync, Pacemaker and keel-clusterd.
//!
//! Two backends behind [`ServiceManager`]:
//! * [`Systemd`]: `systemctl start|stop|is-active` of the distribution's units;
//! * [`Direct`]: for hosts without systemd and the netns lab — spawns the real binaries
//!   (`corosync -f`, `pacemakerd`, `keel-clusterd`) in their own session with a pidfile under
//!   `<state>/run/`, output appended to `<state>/log/<name>.log`, and stops them by that PID
//!   only (after checking the PID still runs the expected program).
//!
//! Reloading corosync's configuration is the same for both: `corosync-cfgtool -R`, which tells
//! every member to re-read corosync.conf.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{what}: {msg}")]
    Failed { what: String, msg: String },
}

fn failed(what: impl Into<String>, msg: impl Into<String>) -> ServiceError {
    ServiceError::Failed {
        what: what.into(),
        msg: msg.into(),
    }
}

/// The daemons Keel manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Corosync,
    Pacemaker,
    Clusterd,
}

impl Daemon {
    pub fn unit(self) -> &'static str {
        match self {
            Daemon::Corosync => "corosync.service",
            Daemon::Pacemaker => "pacemaker.service",
            Daemon::Clusterd => "keel-clusterd.service",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Corosync => "corosync",
            Daemon::Pacemaker => "pacemakerd",
            Daemon::Clusterd => "keel-clusterd",
        }
    }
}

/// Start, stop and query the cluster daemons.
pub trait ServiceManager: Send + Sync {
    fn start(&self, d: Daemon) -> Result<(), ServiceError>;
    fn stop(&self, d: Daemon) -> Result<(), ServiceError>;
    fn is_active(&self, d: Daemon) -> Result<bool, ServiceError>;
    /// Which backend (for logs).
    fn kind(&self) -> &'static str;
}

/// Run a command, returning (success, stdout, stderr).
pub fn run(argv: &[&str]) -> Result<(bool, String, String), ServiceError> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| failed("run", "empty command"))?;
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(argv.join(" "), format!("cannot run: {e}")))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Run a command that must succeed; returns stdout.
pub fn run_ok(argv: &[&str]) -> Result<String, ServiceError> {
    let (ok, out, err) = run(argv)?;
    if !ok {
        return Err(failed(
            argv.join(" "),
            format!("failed: {}{}", err.trim(), out.trim()),
        ));
    }
    Ok(out)
}

/// `corosync-cfgtool -R`: every member re-reads corosync.conf.
pub fn reload_corosync() -> Result<(), ServiceError> {
    run_ok(&["corosync-cfgtool", "-R"]).map(|_| ())
}

/// Is a corosync answering on this host (its IPC socket)?
pub fn corosync_running() -> bool {
    matches!(run(&["corosync-cfgtool", "-s"]), Ok((true, _, _)))
}

pub struct Systemd;

impl ServiceManager for Systemd {
    fn start(&self, d: Daemon) -> Result<(), ServiceError> {
        run_ok(&["systemctl", "start", d.unit()]).map(|_| ())
    }
    fn stop(&self, d: Daemon) -> Result<(), ServiceError> {
        run_ok(&["systemctl", "stop", d.unit()]).map(|_| ())
    }
    fn is_active(&self, d: Daemon) -> Result<bool, ServiceError> {
        Ok(run(&["systemctl", "is-active", "--quiet", d.unit()])?.0)
    }
    fn kind(&self) -> &'static str {
        "systemd"
    }
}

/// Spawns the daemons itself; see the module documentation.
pub struct Direct {
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The keel-clusterd binary (`None`: not installed; starting it is then an error).
    pub clusterd_bin: Option<PathBuf>,
    /// Extra arguments for keel-clusterd (socket, database paths).
    pub clusterd_args: Vec<String>,
}

impl Direct {
    pub fn new(
        state_dir: &Path,
        clusterd_bin: Option<PathBuf>,
        clusterd_args: Vec<String>,
    ) -> Self {
        Direct {
            run_dir: state_dir.join("run"),
            log_dir: state_dir.join("log"),
            clusterd_bin,
            clusterd_args,
        }
    }

    fn pidfile(&self, d: Daemon) -> PathBuf {
        self.run_dir.join(format!("{}.pid", d.name()))
    }

    /// The PID in the pidfile if that process still runs the daemon's program.
    fn live_pid(&self, d: Daemon) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pidfile(d))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        // comm is truncated to 15 characters
        let want: String = d.name().chars().take(15).collect();
        (comm.trim() == want).then_some(pid)
    }

    fn argv(&self, d: Daemon) -> Result<Vec<String>, ServiceError> {
        Ok(match d {
            Daemon::Corosync => vec!["corosync".into(), "-f".into()],
            Daemon::Pacemaker => vec!["pacemakerd".into()],
            Daemon::Clusterd => {
                let bin = self.clusterd_bin.as_ref().ok_or_else(|| {
                    failed("keel-clusterd", "binary not found (install keel-clusterd)")
                })?;
                let mut v = vec![bin.display().to_string()];
                v.extend(self.clusterd_args.iter().cloned());
                v
            }
        })
    }
}

impl ServiceManager for Direct {
    fn start(&self, d: Daemon) -> Result<(), ServiceError> {
        if self.live_pid(d).is_some() {
            return Ok(());
        }
        for dir in [&self.run_dir, &self.log_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| failed(d.name(), format!("creating {}: {e}", dir.display())))?;
        }
        let log_path = self.log_dir.join(format!("{}.log", d.name()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| failed(d.name(), format!("opening {}: {e}", log_path.display())))?;
        let log2 = log
            .try_clone()
            .map_err(|e| failed(d.name(), e.to_string()))?;
        let argv = self.argv(d)?;
        // `setsid PROG` execs PROG in a new session (same PID: our child is no group leader),
        // so the daemon outlives hostd and the PID we record is the daemon's.
        let mut cmd = Command::new("setsid");
        cmd.args(&argv)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        if d == Daemon::Pacemaker {
            cmd.env("PCMK_logfile", "/var/log/pacemaker/pacemaker.log")
                .env("PCMK_logfacility", "none");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(d.name(), format!("spawning {argv:?}: {e}")))?;
        let pid = child.id();
        crate::ca::write_file_mode(&self.pidfile(d), format!("{pid}\n").as_bytes(), 0o644)
            .map_err(|e| failed(d.name(), e.to_string()))?;
        // reap it whenever it exits (no zombies); the wait result is only logged
        let name = d.name();
        std::thread::spawn(move || {
            if let Ok(st) = child.wait() {
                tracing::info!(daemon = name, pid, status = %st, "daemon exited");
            }
        });
        // it must survive its first moments (config errors make corosync exit at once)
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(300) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.live_pid(d).is_none() {
            return Err(failed(
                d.name(),
                format!("exited right after start; see {}", log_path.display()),
            ));
        }
        tracing::info!(daemon = d.name(), pid, "started (direct)");
        Ok(())
    }

    fn stop(&self, d: Daemon) -> Result<(), ServiceError> {
        let Some(pid) = self.live_pid(d) else {
            let _ = std::fs::remove_file(self.pidfile(d));
            return Ok(());
        };
        run_ok(&["kill", "-TERM", &pid.to_string()])?;
        // pacemakerd stops its children in order; give it time before SIGKILL
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            if self.live_pid(d).is_none() {
                let _ = std::fs::remove_file(self.pidfile(d));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        run_ok(&["kill", "-KILL", &pid.to_string()])?;
        let _ = std::fs::remove_file(self.pidfile(d));
        Ok(())
    }

    fn is_active(&self, d: Daemon) -> Result<bool, ServiceError> {
        Ok(self.live_pid(d).is_some())
    }

    fn kind(&self) -> &'static str {
        "direct"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_pidfile_of_another_program_is_not_ours() -> Result<(), ServiceError> {
        let dir = tempfile::tempdir().map_err(|e| failed("tmp", e.to_string()))?;
        let d = Direct::new(dir.path(), None, vec![]);
        std::fs::create_dir_all(&d.run_dir).map_err(|e| failed("mkdir", e.to_string()))?;
        // our own PID runs the test binary, not corosync: never treated as corosync
        std::fs::write(d.pidfile(Daemon::Corosync), std::process::id().to_string())
            .map_err(|e| failed("write", e.to_string()))?;
        assert!(!d.is_active(Daemon::Corosync)?);
        d.stop(Daemon::Corosync)?; // removes the stale pidfile, kills nothing
        assert!(!d.pidfile(Daemon::Corosync).exists());
        assert!(d.start(Daemon::Clusterd).is_err(), "no binary configured");
        Ok(())
    }
}
