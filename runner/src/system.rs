//! The real backend: spawns the command in its own process group and bounds it.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Cmd, Output, RunError, Runner};

/// Runs commands on this host. Cheap to create; holds no state.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

type Buf = Arc<Mutex<Vec<u8>>>;

fn drain(mut r: impl Read + Send + 'static, buf: Buf) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => match buf.lock() {
                    Ok(mut b) => b.extend_from_slice(&chunk[..n]),
                    Err(_) => break,
                },
            }
        }
    })
}

fn text(buf: &Buf) -> String {
    match buf.lock() {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    }
}

/// Wait for the output readers, but not forever: a grandchild that kept the pipe open must not
/// hold the caller hostage after the command itself ended.
fn join_bounded(handles: Vec<thread::JoinHandle<()>>, grace: Duration) {
    let t0 = Instant::now();
    for h in handles {
        while !h.is_finished() && t0.elapsed() < grace {
            thread::sleep(Duration::from_millis(5));
        }
        if h.is_finished() {
            let _ = h.join();
        }
    }
}

impl Runner for System {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        use std::os::unix::process::CommandExt;
        let shown = cmd.to_string();
        let t0 = Instant::now();
        let mut c = Command::new(cmd.program());
        c.args(cmd.get_args())
            .stdin(if cmd.get_stdin().is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // its own process group, so a timeout kills everything it started
            .process_group(0);
        for (k, v) in cmd.get_env() {
            c.env(k, v);
        }
        let mut child = c.spawn().map_err(|source| RunError::Spawn {
            cmd: shown.clone(),
            source,
        })?;
        let out: Buf = Arc::default();
        let err: Buf = Arc::default();
        let mut readers = Vec::new();
        if let Some(o) = child.stdout.take() {
            readers.push(drain(o, out.clone()));
        }
        if let Some(e) = child.stderr.take() {
            readers.push(drain(e, err.clone()));
        }
        if let (Some(mut w), Some(bytes)) = (child.stdin.take(), cmd.get_stdin()) {
            let bytes = bytes.to_vec();
            // a command that does not read its input must not block us: write from a thread
            thread::spawn(move || {
                let _ = w.write_all(&bytes);
            });
        }
        let deadline = t0 + cmd.get_timeout();
        let mut sleep = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) => {}
                Err(e) => {
                    return Err(RunError::Spawn {
                        cmd: shown,
                        source: e,
                    })
                }
            }
            if Instant::now() >= deadline {
                break None;
            }
            thread::sleep(sleep);
            sleep = (sleep * 2).min(Duration::from_millis(20));
        };
        let Some(status) = status else {
            let pid = rustix::process::Pid::from_raw(child.id() as i32);
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            join_bounded(readers, Duration::from_millis(200));
            tracing::warn!(cmd = %shown, timeout_s = cmd.get_timeout().as_secs_f32(), "command timed out and was killed");
            return Err(RunError::Timeout {
                cmd: shown,
                after: cmd.get_timeout(),
                stderr: text(&err),
            });
        };
        join_bounded(readers, Duration::from_secs(2));
        let o = Output {
            code: status.code(),
            stdout: text(&out),
            stderr: text(&err),
        };
        tracing::debug!(cmd = %shown, code = ?o.code, ms = t0.elapsed().as_millis() as u64, "command ran");
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_exit_code_and_stdin() -> Result<(), RunError> {
        let o =
            System.run(&Cmd::argv(&["sh", "-c", "cat; echo oops >&2; exit 3"]).stdin("hello"))?;
        assert_eq!(o.code, Some(3));
        assert_eq!(o.stdout, "hello");
        assert_eq!(o.stderr, "oops\n");
        let e = System.run_ok(&Cmd::argv(&["sh", "-c", "echo bad input >&2; exit 2"]));
        match e {
            Err(RunError::Failed { code, stderr, .. }) => {
                assert_eq!(code, Some(2));
                assert_eq!(stderr, "bad input\n");
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn a_wedged_command_is_killed_at_its_timeout_with_its_stderr() {
        let t0 = Instant::now();
        // the child and a grandchild that keeps the pipes open: both must die
        let r = System.run(
            &Cmd::argv(&["sh", "-c", "echo started >&2; sleep 1000 & sleep 1000"])
                .timeout(Duration::from_millis(300)),
        );
        let took = t0.elapsed();
        match r {
            Err(e @ RunError::Timeout { .. }) => {
                assert_eq!(e.stderr(), "started\n");
                assert!(e.to_string().contains("did not finish within 0.3s"), "{e}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let r = System.run(&Cmd::new("/nonexistent/keel-no-such-tool"));
        assert!(matches!(r, Err(RunError::Spawn { .. })), "{r:?}");
    }
}
