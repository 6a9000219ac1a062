//! keel-runner: the one place Keel runs an external command.
//!
//! Every engine command (Pacemaker, corosync, DRBD, LVM, iSCSI, qemu-img, …) is a [`Cmd`] run
//! by a [`Runner`]. The real backend, [`System`], gives every call a timeout (a wedged engine
//! ends as [`RunError::Timeout`] instead of hanging a worker forever), kills the whole process
//! group on expiry, and keeps stderr for the error message. [`Fake`] is a queue of expected
//! calls with canned replies (pcs's `command_env`), so a workflow's unit test states exactly
//! which commands it runs, in which order, and fails on any other.
//!
//! Must not: decide anything about the engines it runs, or log a command's standard input
//! (it may carry secrets: a fence device's password on its way to `cibadmin`).

mod fake;
mod system;

use std::fmt;
use std::time::Duration;

pub use fake::{Fake, Reply};
pub use system::System;

/// The default bound of one command when the caller does not choose one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One external command: program, arguments, optional standard input, environment, timeout.
#[derive(Clone)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A command from a whole argument vector (`["crm_mon", "--output-as=xml"]`).
    pub fn argv<S: AsRef<str>>(argv: &[S]) -> Self {
        let mut it = argv.iter();
        let mut c = Cmd::new(it.next().map(|s| s.as_ref()).unwrap_or_default());
        c.args = it.map(|s| s.as_ref().to_string()).collect();
        c
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Bytes for the command's standard input (never logged; `Debug` shows only their size).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn program(&self) -> &str {
        &self.program
    }

    pub fn get_args(&self) -> &[String] {
        &self.args
    }

    pub fn get_stdin(&self) -> Option<&[u8]> {
        self.stdin.as_deref()
    }

    pub fn get_env(&self) -> &[(String, String)] {
        &self.env
    }

    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// Program and arguments, as one vector.
    pub fn to_argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
    }
}

/// `program arg1 arg2` (arguments with spaces quoted); standard input is never shown.
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.program)?;
        for a in &self.args {
            if a.is_empty() || a.contains(char::is_whitespace) {
                write!(f, " '{a}'")?;
            } else {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmd")
            .field("argv", &self.to_argv())
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What a finished command printed and how it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot run {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} did not finish within {}s and was killed{}", after.as_secs_f32(), tail(stderr))]
    Timeout {
        cmd: String,
        after: Duration,
        stderr: String,
    },
    #[error("{cmd} failed ({}){}", exit(*code), tail(detail(stderr, stdout)))]
    Failed {
        cmd: String,
        code: Option<i32>,
        stderr: String,
        stdout: String,
    },
    /// Only from [`Fake`]: the workflow ran a command its test did not expect.
    #[error("unexpected command {cmd}: {why}")]
    Unexpected { cmd: String, why: String },
}

fn exit(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal".into(),
    }
}

fn detail<'a>(stderr: &'a str, stdout: &'a str) -> &'a str {
    if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    }
}

/// `: last lines of stderr`, bounded, or nothing.
fn tail(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() {
        return String::new();
    }
    const MAX: usize = 2000;
    if s.len() <= MAX {
        return format!(": {s}");
    }
    let mut start = s.len() - MAX;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!(": …{}", &s[start..])
}

impl RunError {
    /// The command's stderr, when it ran.
    pub fn stderr(&self) -> &str {
        match self {
            RunError::Timeout { stderr, .. } | RunError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, RunError::Timeout { .. })
    }
}

/// Runs commands. `run` returns whatever the command's exit status; `run_ok` requires success.
pub trait Runner: Send + Sync {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError>;

    /// Run a command that must succeed; its stdout.
    fn run_ok(&self, cmd: &Cmd) -> Result<String, RunError> {
        let out = self.run(cmd)?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(RunError::Failed {
                cmd: cmd.to_string(),
                code: out.code,
                stderr: out.stderr,
                stdout: out.stdout,
            })
        }
    }
}

impl<R: Runner + ?Sized> Runner for std::sync::Arc<R> {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        (**self).run(cmd)
    }
}

impl<R: Runner + ?Sized> Runner for &R {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        (**self).run(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_and_hides_stdin() {
        let c = Cmd::argv(&["cibadmin", "--replace", "a b"]).stdin("password=hunter2");
        assert_eq!(c.to_string(), "cibadmin --replace 'a b'");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("stdin_bytes: Some(16)"), "{dbg}");
    }

    #[test]
    fn failed_error_carries_stderr_tail() {
        let e = RunError::Failed {
            cmd: "crm_verify -L".into(),
            code: Some(1),
            stderr: "error: no such resource\n".into(),
            stdout: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "crm_verify -L failed (exit status 1): error: no such resource"
        );
        let long = "x".repeat(5000);
        let e = RunError::Timeout {
            cmd: "drbdadm up r0".into(),
            after: Duration::from_millis(1500),
            stderr: long,
        };
        let s = e.to_string();
        assert!(s.starts_with("drbdadm up r0 did not finish within 1.5s and was killed: …"));
        assert!(s.len() < 2100);
    }
}
