//! Starting, stopping and watching the cluster daemons: corosync, Pacemaker and keel-clusterd.
//!
//! Two backends behind [`ServiceManager`]:
//! * [`Systemd`]: `systemctl start|stop|is-active|show` of the distribution's units (their
//!   own `Restart=` brings a crashed daemon back);
//! * [`Direct`]: for hosts without systemd and the netns lab — spawns the real binaries
//!   (`corosync -f`, `pacemakerd`, `keel-clusterd`) in their own session with a pidfile under
//!   `<state>/run/` (`PID STARTTIME`), output appended to `<state>/log/<name>.log`, and stops
//!   them by that PID only.
//!
//! Liveness in [`Direct`] is by PID and exit status, never by name: the thread that reaps a
//! spawned daemon records how it ended (status, time); a PID whose process exited, is a zombie
//! (`/proc/PID/stat` state `Z`/`X`) or whose start time differs from the one recorded (a
//! reused PID) is not running, whatever its name. A daemon Keel stopped on purpose (leave,
//! removal) is remembered as not wanted, so hostd's supervisor does not bring it back.
//!
//! Every command (`kill`, `systemctl`, `corosync-cfgtool`, …) runs through `keel-runner`
//! with a timeout. Reloading corosync's configuration is the same for both backends:
//! `corosync-cfgtool -R`, which tells every member to re-read corosync.conf.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_api::cluster::{DaemonExit, DaemonRunState, DaemonStatus};
use keel_runner::{Cmd, Runner, System};

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

/// Bound of `systemctl start` (Pacemaker's unit waits for its daemons).
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound of `systemctl stop` (pacemakerd stops its resources first).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound of a query (`is-active`, `show`, `corosync-cfgtool -s`, `kill`).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of `corosync-cfgtool -R`.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The daemons Keel manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Daemon {
    Corosync,
    Pacemaker,
    Clusterd,
    /// corosync-qdevice: only while corosync.conf has a `quorum.device` (not in [`Daemon::ALL`]).
    Qdevice,
}

impl Daemon {
    /// In dependency order: Pacemaker and keel-clusterd need corosync.
    pub const ALL: [Daemon; 3] = [Daemon::Corosync, Daemon::Pacemaker, Daemon::Clusterd];

    pub fn unit(self) -> &'static str {
        match self {
            Daemon::Corosync => "corosync.service",
            Daemon::Pacemaker => "pacemaker.service",
            Daemon::Clusterd => "keel-clusterd.service",
            Daemon::Qdevice => "corosync-qdevice.service",
        }
    }
    /// The program (and pidfile) name.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Corosync => "corosync",
            Daemon::Pacemaker => "pacemakerd",
            Daemon::Clusterd => "keel-clusterd",
            Daemon::Qdevice => "corosync-qdevice",
        }
    }
    /// The name the status API shows.
    pub fn label(self) -> &'static str {
        match self {
            Daemon::Corosync => "corosync",
            Daemon::Pacemaker => "pacemaker",
            Daemon::Clusterd => "keel-clusterd",
            Daemon::Qdevice => "corosync-qdevice",
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
    /// Keel's intent: false once Keel stopped the daemon on purpose (until it starts it).
    fn wanted(&self, _d: Daemon) -> bool {
        true
    }
    /// The supervisor's word on a daemon that is not running: when it tries again
    /// (`restarting`), or why it does not (`message`).
    fn set_note(&self, _d: Daemon, _next_attempt: Option<u64>, _message: Option<String>) {}
    /// The supervisor restarted `d` after an unexpected exit.
    fn count_restart(&self, _d: Daemon) {}
    /// The daemon's state for the status API.
    fn inspect(&self, d: Daemon) -> DaemonStatus {
        let (state, message) = match self.is_active(d) {
            Ok(true) => (DaemonRunState::Running, None),
            Ok(false) => (DaemonRunState::Dead, None),
            Err(e) => (DaemonRunState::Dead, Some(e.to_string())),
        };
        DaemonStatus {
            name: d.label().into(),
            state,
            pid: None,
            since: None,
            restarts: 0,
            last_exit: None,
            next_attempt: None,
            message,
            manager: self.kind().into(),
        }
    }
}

fn runner_err(e: keel_runner::RunError) -> ServiceError {
    failed("command", e.to_string())
}

/// Run a command (bounded by [`keel_runner::DEFAULT_TIMEOUT`]), returning (success, stdout,
/// stderr). A timeout is an error.
pub fn run(argv: &[&str]) -> Result<(bool, String, String), ServiceError> {
    if argv.is_empty() {
        return Err(failed("run", "empty command"));
    }
    let o = System.run(&Cmd::argv(argv)).map_err(runner_err)?;
    Ok((o.success(), o.stdout, o.stderr))
}

/// Run a command that must succeed; returns stdout.
pub fn run_ok(argv: &[&str]) -> Result<String, ServiceError> {
    if argv.is_empty() {
        return Err(failed("run", "empty command"));
    }
    System.run_ok(&Cmd::argv(argv)).map_err(runner_err)
}

/// `corosync-cfgtool -R`: every member re-reads corosync.conf.
pub fn reload_corosync() -> Result<(), ServiceError> {
    System
        .run_ok(&Cmd::argv(&["corosync-cfgtool", "-R"]).timeout(RELOAD_TIMEOUT))
        .map(|_| ())
        .map_err(runner_err)
}

/// Is a corosync answering on this host (its IPC socket)?
pub fn corosync_running() -> bool {
    corosync_answers(&System)
}

/// `corosync-cfgtool -s` succeeds within [`QUERY_TIMEOUT`].
pub fn corosync_answers(r: &dyn Runner) -> bool {
    r.run(&Cmd::argv(&["corosync-cfgtool", "-s"]).timeout(QUERY_TIMEOUT))
        .is_ok_and(|o| o.success())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub comm: String,
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), …
    pub state: char,
    /// Start time after boot, in clock ticks (field 22): with the PID, a process identity.
    pub starttime: u64,
}

impl ProcStat {
    /// Parse the text of `/proc/PID/stat` (the name may hold spaces and parentheses).
    pub fn parse(text: &str) -> Option<ProcStat> {
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_string();
        let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
        let state = rest.first()?.chars().next()?;
        // fields after the name start at field 3 (state); starttime is field 22
        let starttime = rest.get(19)?.parse().ok()?;
        Some(ProcStat {
            comm,
            state,
            starttime,
        })
    }

    pub fn read(pid: u32) -> Option<ProcStat> {
        ProcStat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Exited but not reaped (`Z`), or being torn down (`X`).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// `exit status 1`, `killed by signal 9 (SIGKILL)`.
pub fn describe_exit(st: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(c) = st.code() {
        return format!("exit status {c}");
    }
    match st.signal() {
        Some(s) => {
            let name = match s {
                1 => " (SIGHUP)",
                2 => " (SIGINT)",
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            let core = if st.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            format!("killed by signal {s}{name}{core}")
        }
        None => format!("{st}"),
    }
}

/// The distribution's units through `systemctl`.
pub struct Systemd;

impl Systemd {
    fn systemctl(&self, args: &[&str], timeout: Duration) -> Result<String, ServiceError> {
        let cmd = Cmd::new("systemctl")
            .args(args.iter().copied())
            .timeout(timeout);
        System.run_ok(&cmd).map_err(runner_err)
    }
}

/// `systemctl show` properties → status (`--timestamp=unix` gives `@SECONDS`).
pub fn systemd_status(d: Daemon, show: &str) -> DaemonStatus {
    let props: HashMap<&str, &str> = show.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| props.get(k).copied().unwrap_or("");
    let ts = |k: &str| get(k).trim_start_matches('@').parse::<u64>().ok();
    let pid = get("MainPID").parse::<u32>().ok().filter(|p| *p != 0);
    let (active, sub) = (get("ActiveState"), get("SubState"));
    let state = match (active, sub) {
        ("active", _) | ("reloading", _) => DaemonRunState::Running,
        (_, "auto-restart") | ("activating", _) => DaemonRunState::Restarting,
        _ => DaemonRunState::Dead,
    };
    // CLD_EXITED=1 / "exited", CLD_KILLED=2 / "killed", CLD_DUMPED=3 / "dumped"
    let code = get("ExecMainCode");
    let status = get("ExecMainStatus");
    let last_exit = ts("ExecMainExitTimestamp").map(|at| DaemonExit {
        at: Some(at),
        status: match code {
            "2" | "killed" => format!("killed by signal {status}"),
            "3" | "dumped" => format!("killed by signal {status}, core dumped"),
            _ => format!("exit status {status}"),
        },
        pid: get("ExecMainPID").parse().ok().filter(|p| *p != 0),
    });
    DaemonStatus {
        name: d.label().into(),
        state,
        pid: if state == DaemonRunState::Running {
            pid
        } else {
            None
        },
        since: ts("StateChangeTimestamp"),
        restarts: get("NRestarts").parse().unwrap_or(0),
        last_exit,
        next_attempt: None,
        message: (state != DaemonRunState::Running)
            .then(|| format!("{}: {active} ({sub})", d.unit())),
        manager: "systemd".into(),
    }
}

impl ServiceManager for Systemd {
    fn start(&self, d: Daemon) -> Result<(), ServiceError> {
        // corosync-qdevice is Keel's to switch on and off (`keel cluster qdevice add|remove`):
        // enabled with it, so a node that reboots casts its QDevice vote again
        let args: &[&str] = match d {
            Daemon::Qdevice => &["enable", "--now", d.unit()],
            _ => &["start", d.unit()],
        };
        self.systemctl(args, START_TIMEOUT).map(|_| ())
    }
    fn stop(&self, d: Daemon) -> Result<(), ServiceError> {
        let args: &[&str] = match d {
            Daemon::Qdevice => &["disable", "--now", d.unit()],
            _ => &["stop", d.unit()],
        };
        self.systemctl(args, STOP_TIMEOUT).map(|_| ())
    }
    fn is_active(&self, d: Daemon) -> Result<bool, ServiceError> {
        let cmd =
            Cmd::argv(&["systemctl", "is-active", "--quiet", d.unit()]).timeout(QUERY_TIMEOUT);
        Ok(System.run(&cmd).map_err(runner_err)?.success())
    }
    fn kind(&self) -> &'static str {
        "systemd"
    }
    fn inspect(&self, d: Daemon) -> DaemonStatus {
        let props = "MainPID,ExecMainPID,ActiveState,SubState,NRestarts,ExecMainCode,ExecMainStatus,ExecMainExitTimestamp,StateChangeTimestamp";
        match self.systemctl(
            &["show", "--timestamp=unix", "-p", props, d.unit()],
            QUERY_TIMEOUT,
        ) {
            Ok(out) => systemd_status(d, &out),
            Err(e) => DaemonStatus {
                name: d.label().into(),
                state: DaemonRunState::Dead,
                pid: None,
                since: None,
                restarts: 0,
                last_exit: None,
                next_attempt: None,
                message: Some(e.to_string()),
                manager: "systemd".into(),
            },
        }
    }
}

/// What [`Direct`] knows about one daemon.
#[derive(Debug, Clone, Default)]
struct Record {
    /// The PID it spawned last (and the process start time).
    pid: Option<(u32, u64)>,
    /// Unix time of that start.
    started: Option<u64>,
    /// How the last spawned process ended (recorded by its reaper thread).
    exit: Option<DaemonExit>,
    /// `Some(false)` after a deliberate stop, `Some(true)` after a start.
    wanted: Option<bool>,
    restarts: u32,
    next_attempt: Option<u64>,
    message: Option<String>,
}

type Records = Arc<Mutex<HashMap<Daemon, Record>>>;

/// Spawns the daemons itself; see the module documentation.
pub struct Direct {
    pub run_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The keel-clusterd binary (`None`: not installed; starting it is then an error).
    pub clusterd_bin: Option<PathBuf>,
    /// Extra arguments for keel-clusterd (socket, database paths).
    pub clusterd_args: Vec<String>,
    /// Programs instead of the real daemons (unit tests of the decisions).
    programs: HashMap<Daemon, Vec<String>>,
    runner: Arc<dyn Runner>,
    records: Records,
    /// How long a fresh daemon must survive for `start` to succeed.
    settle: Duration,
    /// How long `stop` waits after SIGTERM before SIGKILL.
    stop_grace: Duration,
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
            programs: HashMap::new(),
            runner: Arc::new(System),
            records: Arc::default(),
            settle: Duration::from_millis(300),
            stop_grace: Duration::from_secs(60),
        }
    }

    /// Run `argv` instead of the real daemon `d` (tests).
    pub fn with_program(mut self, d: Daemon, argv: &[&str]) -> Self {
        self.programs
            .insert(d, argv.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Run `kill` through `runner` (tests).
    pub fn with_runner(mut self, runner: Arc<dyn Runner>) -> Self {
        self.runner = runner;
        self
    }

    /// How long `stop` waits for SIGTERM to work before SIGKILL.
    pub fn with_stop_grace(mut self, d: Duration) -> Self {
        self.stop_grace = d;
        self
    }

    fn pidfile(&self, d: Daemon) -> PathBuf {
        self.run_dir.join(format!("{}.pid", d.name()))
    }

    fn record<T>(&self, d: Daemon, f: impl FnOnce(&mut Record) -> T) -> T {
        let mut g = self.records.lock().unwrap_or_else(|p| p.into_inner());
        f(g.entry(d).or_default())
    }

    /// The pidfile: PID and, when written by this version, the process start time.
    fn read_pidfile(&self, d: Daemon) -> Option<(u32, Option<u64>)> {
        let text = std::fs::read_to_string(self.pidfile(d)).ok()?;
        let mut it = text.split_whitespace();
        let pid = it.next()?.parse().ok()?;
        Some((pid, it.next().and_then(|s| s.parse().ok())))
    }

    /// The PID in the pidfile if that process is alive and is the one recorded: not exited
    /// (its reaper recorded no exit), not a zombie, same start time (or, for a pidfile of an
    /// older hostd without one, the daemon's program name).
    fn live_pid(&self, d: Daemon) -> Option<u32> {
        let (pid, start) = self.read_pidfile(d)?;
        let exited = self.record(d, |r| {
            r.exit.as_ref().is_some_and(|e| e.pid == Some(pid))
                && r.pid.is_some_and(|(p, _)| p == pid)
        });
        if exited {
            return None;
        }
        let st = ProcStat::read(pid)?;
        if st.is_dead() {
            return None;
        }
        match start {
            Some(s) => (st.starttime == s).then_some(pid),
            None => {
                let want: String = self.program_name(d).chars().take(15).collect();
                (st.comm == want).then_some(pid)
            }
        }
    }

    fn program_name(&self, d: Daemon) -> String {
        match self.programs.get(&d).and_then(|a| a.first()) {
            Some(p) => Path::new(p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            None => d.name().to_string(),
        }
    }

    fn argv(&self, d: Daemon) -> Result<Vec<String>, ServiceError> {
        if let Some(a) = self.programs.get(&d) {
            return Ok(a.clone());
        }
        Ok(match d {
            Daemon::Corosync => vec!["corosync".into(), "-f".into()],
            Daemon::Pacemaker => vec!["pacemakerd".into()],
            // -f: foreground (the reaper thread sees its exit)
            Daemon::Qdevice => vec!["corosync-qdevice".into(), "-f".into()],
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

    fn kill(&self, sig: &str, pid: u32) -> Result<(), ServiceError> {
        let cmd = Cmd::argv(&["kill", sig, &pid.to_string()]).timeout(QUERY_TIMEOUT);
        self.runner.run_ok(&cmd).map(|_| ()).map_err(runner_err)
    }
}

impl ServiceManager for Direct {
    fn start(&self, d: Daemon) -> Result<(), ServiceError> {
        self.record(d, |r| r.wanted = Some(true));
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
        if d == Daemon::Qdevice {
            // its pidfile and socket directory (systemd's RuntimeDirectory= in the unit)
            let rd = Path::new("/run/corosync-qdevice");
            std::fs::create_dir_all(rd)
                .map_err(|e| failed(d.name(), format!("creating {}: {e}", rd.display())))?;
        }
        if d == Daemon::Pacemaker {
            cmd.env("PCMK_logfile", "/var/log/pacemaker/pacemaker.log")
                .env("PCMK_logfacility", "none");
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(d.name(), format!("spawning {argv:?}: {e}")))?;
        let pid = child.id();
        // its identity: PID + start time (a later process with the same PID is not it)
        let starttime = ProcStat::read(pid).map(|s| s.starttime).unwrap_or(0);
        self.record(d, |r| {
            r.pid = Some((pid, starttime));
            r.started = Some(unix_now());
            r.next_attempt = None;
            r.message = None;
        });
        crate::ca::write_file_mode(
            &self.pidfile(d),
            format!("{pid} {starttime}\n").as_bytes(),
            0o644,
        )
        .map_err(|e| failed(d.name(), e.to_string()))?;
        // reap it whenever it exits (no zombies) and record how it ended
        let name = d.name();
        let records = self.records.clone();
        std::thread::spawn(move || {
            let status = match child.wait() {
                Ok(st) => describe_exit(&st),
                Err(e) => format!("unknown ({e})"),
            };
            tracing::warn!(daemon = name, pid, %status, "daemon exited");
            let mut g = records.lock().unwrap_or_else(|p| p.into_inner());
            let r = g.entry(d).or_default();
            r.exit = Some(DaemonExit {
                at: Some(unix_now()),
                status,
                pid: Some(pid),
            });
        });
        // it must survive its first moments (config errors make corosync exit at once)
        let t0 = Instant::now();
        while t0.elapsed() < self.settle {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.live_pid(d).is_none() {
            let how = self
                .record(d, |r| r.exit.clone())
                .filter(|e| e.pid == Some(pid))
                .map(|e| format!(" ({})", e.status))
                .unwrap_or_default();
            return Err(failed(
                d.name(),
                format!("exited right after start{how}; see {}", log_path.display()),
            ));
        }
        tracing::info!(daemon = d.name(), pid, "started (direct)");
        Ok(())
    }

    fn stop(&self, d: Daemon) -> Result<(), ServiceError> {
        self.record(d, |r| {
            r.wanted = Some(false);
            r.next_attempt = None;
            r.message = None;
        });
        let Some(pid) = self.live_pid(d) else {
            let _ = std::fs::remove_file(self.pidfile(d));
            return Ok(());
        };
        self.kill("-TERM", pid)?;
        // pacemakerd stops its children in order; give it time before SIGKILL
        let t0 = Instant::now();
        while t0.elapsed() < self.stop_grace {
            if self.live_pid(d).is_none() {
                let _ = std::fs::remove_file(self.pidfile(d));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.live_pid(d).is_some() {
            self.kill("-KILL", pid)?;
        }
        let _ = std::fs::remove_file(self.pidfile(d));
        Ok(())
    }

    fn is_active(&self, d: Daemon) -> Result<bool, ServiceError> {
        Ok(self.live_pid(d).is_some())
    }

    fn kind(&self) -> &'static str {
        "direct"
    }

    fn wanted(&self, d: Daemon) -> bool {
        self.record(d, |r| r.wanted) != Some(false)
    }

    fn set_note(&self, d: Daemon, next_attempt: Option<u64>, message: Option<String>) {
        self.record(d, |r| {
            r.next_attempt = next_attempt;
            r.message = message;
        });
    }

    fn count_restart(&self, d: Daemon) {
        self.record(d, |r| r.restarts += 1);
    }

    fn inspect(&self, d: Daemon) -> DaemonStatus {
        let live = self.live_pid(d);
        let file = self.read_pidfile(d);
        let r = self.record(d, |r| r.clone());
        // a daemon a previous hostd started has no reaper here: say what /proc shows
        let last_exit = r.exit.clone().or_else(|| {
            let (pid, _) = file?;
            // our own child: its reaper records the exit in a moment
            let ours = r.pid.is_some_and(|(p, _)| p == pid);
            (live.is_none() && !ours).then(|| DaemonExit {
                at: None,
                status: match ProcStat::read(pid) {
                    Some(st) if st.is_dead() => "exited (a zombie not reaped yet)".into(),
                    _ => "exited (not started by this hostd: status unknown)".into(),
                },
                pid: Some(pid),
            })
        });
        let state = match live {
            Some(_) => DaemonRunState::Running,
            None if r.wanted == Some(false) => DaemonRunState::Stopped,
            None if r.next_attempt.is_some() => DaemonRunState::Restarting,
            None => DaemonRunState::Dead,
        };
        let since = match live {
            Some(_) => r.started,
            None => last_exit.as_ref().and_then(|e| e.at),
        };
        DaemonStatus {
            name: d.label().into(),
            state,
            pid: live,
            since,
            restarts: r.restarts,
            last_exit,
            next_attempt: if live.is_none() { r.next_attempt } else { None },
            message: if live.is_none() { r.message } else { None },
            manager: "direct".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_runner::{Fake, Reply};

    fn io(e: impl std::fmt::Display) -> ServiceError {
        failed("test", e.to_string())
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) -> Result<(), ServiceError> {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if f() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(failed(what, "not within 10 s"))
    }

    #[test]
    fn direct_pidfile_of_another_program_is_not_ours() -> Result<(), ServiceError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let d = Direct::new(dir.path(), None, vec![]);
        std::fs::create_dir_all(&d.run_dir).map_err(io)?;
        // our own PID runs the test binary, not corosync: never treated as corosync
        std::fs::write(d.pidfile(Daemon::Corosync), std::process::id().to_string()).map_err(io)?;
        assert!(!d.is_active(Daemon::Corosync)?);
        d.stop(Daemon::Corosync)?; // removes the stale pidfile, kills nothing
        assert!(!d.pidfile(Daemon::Corosync).exists());
        assert!(d.start(Daemon::Clusterd).is_err(), "no binary configured");
        Ok(())
    }

    #[test]
    fn proc_stat_parses_names_with_spaces_and_parens() {
        let line = "4242 (a (b) c) Z 1 4242 4242 0 -1 4194564 0 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        let st = ProcStat::parse(line);
        assert_eq!(
            st,
            Some(ProcStat {
                comm: "a (b) c".into(),
                state: 'Z',
                starttime: 987654
            })
        );
        assert!(st.is_some_and(|s| s.is_dead()));
        assert_eq!(ProcStat::parse("12 (x) S 1"), None);
    }

    /// The bug a fault-injection run found: a zombie with the daemon's name counted as
    /// running, so the daemon was never started again.
    #[test]
    fn a_zombie_with_the_daemons_name_is_not_running() -> Result<(), ServiceError> {
        let dir = tempfile::tempdir().map_err(io)?;
        // a child we do not reap: after SIGKILL it stays a zombie named "sleep"
        let mut child = Command::new("sleep").arg("30").spawn().map_err(io)?;
        let pid = child.id();
        let start = ProcStat::read(pid).map(|s| s.starttime).unwrap_or(0);
        let d = Direct::new(dir.path(), None, vec![]).with_program(Daemon::Corosync, &["sleep"]);
        std::fs::create_dir_all(&d.run_dir).map_err(io)?;
        // both pidfile forms: with the start time, and an old one (name check only)
        for text in [format!("{pid} {start}\n"), format!("{pid}\n")] {
            std::fs::write(d.pidfile(Daemon::Corosync), &text).map_err(io)?;
            assert!(d.is_active(Daemon::Corosync)?, "alive: {text}");
        }
        System
            .run_ok(&Cmd::argv(&["kill", "-KILL", &pid.to_string()]))
            .map_err(runner_err)?;
        wait_for("zombie", || {
            ProcStat::read(pid).is_some_and(|s| s.state == 'Z')
        })?;
        for text in [format!("{pid} {start}\n"), format!("{pid}\n")] {
            std::fs::write(d.pidfile(Daemon::Corosync), &text).map_err(io)?;
            assert!(
                !d.is_active(Daemon::Corosync)?,
                "a zombie is not running: {text}"
            );
        }
        let st = d.inspect(Daemon::Corosync);
        assert_eq!(st.state, DaemonRunState::Dead);
        assert!(
            st.last_exit
                .as_ref()
                .is_some_and(|e| e.pid == Some(pid) && e.status.contains("zombie")),
            "{st:?}"
        );
        // a pidfile whose start time differs is another process (a reused PID)
        let me = std::process::id();
        let my_start = ProcStat::read(me).map(|s| s.starttime).unwrap_or(0);
        std::fs::write(
            d.pidfile(Daemon::Corosync),
            format!("{me} {}\n", my_start + 1),
        )
        .map_err(io)?;
        assert!(!d.is_active(Daemon::Corosync)?);
        let _ = child.wait();
        Ok(())
    }

    /// Start, an unexpected death (recorded by the reaper with its signal), a restart, a
    /// deliberate stop (not wanted any more).
    #[test]
    fn direct_records_exits_and_intent() -> Result<(), ServiceError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let d = Direct::new(dir.path(), None, vec![])
            .with_program(Daemon::Pacemaker, &["sleep", "60"])
            .with_stop_grace(Duration::from_secs(5));
        d.start(Daemon::Pacemaker)?;
        let st = d.inspect(Daemon::Pacemaker);
        assert_eq!(st.state, DaemonRunState::Running, "{st:?}");
        let pid = st.pid.ok_or_else(|| failed("pid", "none"))?;
        assert!(st.since.is_some());
        assert!(d.wanted(Daemon::Pacemaker));
        System
            .run_ok(&Cmd::argv(&["kill", "-KILL", &pid.to_string()]))
            .map_err(runner_err)?;
        wait_for("exit recorded", || {
            d.inspect(Daemon::Pacemaker)
                .last_exit
                .is_some_and(|e| e.at.is_some())
        })?;
        let st = d.inspect(Daemon::Pacemaker);
        assert_eq!(st.state, DaemonRunState::Dead, "{st:?}");
        assert_eq!(st.pid, None);
        let exit = st.last_exit.ok_or_else(|| failed("exit", "none"))?;
        assert_eq!(exit.status, "killed by signal 9 (SIGKILL)");
        assert_eq!(exit.pid, Some(pid));
        assert!(d.wanted(Daemon::Pacemaker), "it died; nobody stopped it");
        // the supervisor's note shows while it is down
        d.set_note(
            Daemon::Pacemaker,
            Some(unix_now() + 2),
            Some("backoff 2 s".into()),
        );
        assert_eq!(
            d.inspect(Daemon::Pacemaker).state,
            DaemonRunState::Restarting
        );
        d.count_restart(Daemon::Pacemaker);
        d.start(Daemon::Pacemaker)?;
        let st = d.inspect(Daemon::Pacemaker);
        assert_eq!(st.state, DaemonRunState::Running);
        assert_ne!(st.pid, Some(pid));
        assert_eq!(st.restarts, 1);
        assert_eq!(st.message, None);
        d.stop(Daemon::Pacemaker)?;
        let st = d.inspect(Daemon::Pacemaker);
        assert_eq!(st.state, DaemonRunState::Stopped, "{st:?}");
        assert!(!d.wanted(Daemon::Pacemaker));
        assert!(!d.pidfile(Daemon::Pacemaker).exists());
        Ok(())
    }

    #[test]
    fn a_daemon_that_exits_at_once_fails_its_start_with_the_status() -> Result<(), ServiceError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let d = Direct::new(dir.path(), None, vec![])
            .with_program(Daemon::Corosync, &["sh", "-c", "exit 8"]);
        let e = d.start(Daemon::Corosync).err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("exited right after start (exit status 8)")),
            "{e:?}"
        );
        Ok(())
    }

    #[test]
    fn stop_signals_through_the_runner() -> Result<(), ServiceError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let fake = Arc::new(Fake::new());
        let d = Direct::new(dir.path(), None, vec![])
            .with_program(Daemon::Clusterd, &["sleep", "60"])
            .with_runner(fake.clone())
            .with_stop_grace(Duration::from_millis(300));
        d.start(Daemon::Clusterd)?;
        let pid = d
            .inspect(Daemon::Clusterd)
            .pid
            .ok_or_else(|| failed("pid", "none"))?
            .to_string();
        // the fake "kill" does nothing: SIGTERM, then SIGKILL after the grace period
        fake.push(&["kill", "-TERM", &pid], None, Reply::ok(""));
        fake.push(&["kill", "-KILL", &pid], None, Reply::ok(""));
        d.stop(Daemon::Clusterd)?;
        fake.assert_done();
        System
            .run_ok(&Cmd::argv(&["kill", "-KILL", &pid]))
            .map_err(runner_err)?;
        Ok(())
    }

    #[test]
    fn systemd_show_is_read() {
        let show = "MainPID=0\nExecMainPID=812\nActiveState=activating\nSubState=auto-restart\nNRestarts=3\nExecMainCode=2\nExecMainStatus=9\nExecMainExitTimestamp=@1700000100\nStateChangeTimestamp=@1700000100\n";
        let st = systemd_status(Daemon::Clusterd, show);
        assert_eq!(st.state, DaemonRunState::Restarting);
        assert_eq!(st.restarts, 3);
        assert_eq!(st.pid, None);
        assert_eq!(
            st.last_exit,
            Some(DaemonExit {
                at: Some(1_700_000_100),
                status: "killed by signal 9".into(),
                pid: Some(812)
            })
        );
        let up = systemd_status(
            Daemon::Corosync,
            "MainPID=77\nActiveState=active\nSubState=running\nNRestarts=0\nStateChangeTimestamp=@5\n",
        );
        assert_eq!(
            (up.state, up.pid, up.since),
            (DaemonRunState::Running, Some(77), Some(5))
        );
        assert_eq!(up.last_exit, None);
    }
}
