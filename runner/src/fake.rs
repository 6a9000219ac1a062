//! The test backend: a queue of expected commands with canned replies.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::{Cmd, Output, RunError, Runner};

/// What a faked command answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// It ran: this exit code, stdout and stderr.
    Exit(Output),
    /// It hung until the runner's timeout.
    Timeout,
}

impl Reply {
    /// Exit 0 with this stdout.
    pub fn ok(stdout: impl Into<String>) -> Reply {
        Reply::Exit(Output {
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
        })
    }

    /// Exit `code` with this stderr.
    pub fn fail(code: i32, stderr: impl Into<String>) -> Reply {
        Reply::Exit(Output {
            code: Some(code),
            stdout: String::new(),
            stderr: stderr.into(),
        })
    }
}

struct Expect {
    argv: Vec<String>,
    stdin: Option<Vec<u8>>,
    reply: Reply,
}

/// Expected calls, in order. Any other call (or one out of order) is an
/// [`RunError::Unexpected`] that names what was expected; [`Fake::assert_done`] fails when
/// expected calls were never made.
#[derive(Default)]
pub struct Fake {
    queue: Mutex<VecDeque<Expect>>,
    ran: Mutex<Vec<Vec<String>>>,
}

impl Fake {
    pub fn new() -> Fake {
        Fake::default()
    }

    /// Expect `argv` next, answering `reply`.
    pub fn expect<S: AsRef<str>>(self, argv: &[S], reply: Reply) -> Fake {
        self.push(argv, None, reply);
        self
    }

    /// Expect `argv` next with exactly these bytes on its standard input.
    pub fn expect_stdin<S: AsRef<str>>(self, argv: &[S], stdin: &[u8], reply: Reply) -> Fake {
        self.push(argv, Some(stdin.to_vec()), reply);
        self
    }

    /// Add an expectation to a shared fake (`&self`).
    pub fn push<S: AsRef<str>>(&self, argv: &[S], stdin: Option<Vec<u8>>, reply: Reply) {
        if let Ok(mut q) = self.queue.lock() {
            q.push_back(Expect {
                argv: argv.iter().map(|s| s.as_ref().to_string()).collect(),
                stdin,
                reply,
            });
        }
    }

    /// Every command run so far, in order.
    pub fn ran(&self) -> Vec<Vec<String>> {
        self.ran.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Panics (it is for tests) when expected commands were never run.
    pub fn assert_done(&self) {
        let left: Vec<String> = self
            .queue
            .lock()
            .map(|q| q.iter().map(|e| e.argv.join(" ")).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "expected commands never ran: {left:?}; ran: {:?}",
            self.ran()
        );
    }
}

impl Runner for Fake {
    fn run(&self, cmd: &Cmd) -> Result<Output, RunError> {
        let argv = cmd.to_argv();
        if let Ok(mut r) = self.ran.lock() {
            r.push(argv.clone());
        }
        let unexpected = |why: String| RunError::Unexpected {
            cmd: cmd.to_string(),
            why,
        };
        let mut q = self
            .queue
            .lock()
            .map_err(|_| unexpected("fake runner poisoned".into()))?;
        let Some(next) = q.front() else {
            return Err(unexpected("no more commands were expected".into()));
        };
        if next.argv != argv {
            return Err(unexpected(format!("expected {:?}", next.argv)));
        }
        if let Some(want) = &next.stdin {
            if cmd.get_stdin() != Some(want.as_slice()) {
                return Err(unexpected(format!(
                    "standard input differs: expected {:?}, got {:?}",
                    String::from_utf8_lossy(want),
                    cmd.get_stdin().map(String::from_utf8_lossy)
                )));
            }
        }
        let reply = q.pop_front().map(|e| e.reply);
        match reply {
            Some(Reply::Exit(o)) => Ok(o),
            Some(Reply::Timeout) => Err(RunError::Timeout {
                cmd: cmd.to_string(),
                after: cmd.get_timeout(),
                stderr: String::new(),
            }),
            None => Err(unexpected("no more commands were expected".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_in_order_and_refuses_others() -> Result<(), RunError> {
        let f = Fake::new()
            .expect(&["crm_verify", "-L"], Reply::ok(""))
            .expect_stdin(&["cibadmin", "--xml-pipe"], b"<x/>", Reply::fail(1, "nope"))
            .expect(&["sleep", "1"], Reply::Timeout);
        f.run_ok(&Cmd::argv(&["crm_verify", "-L"]))?;
        let wrong = f.run(&Cmd::argv(&["cibadmin", "--xml-pipe"]).stdin("<y/>"));
        assert!(
            matches!(wrong, Err(RunError::Unexpected { .. })),
            "{wrong:?}"
        );
        let e = f.run_ok(&Cmd::argv(&["cibadmin", "--xml-pipe"]).stdin("<x/>"));
        assert!(e.is_err_and(|e| e.stderr() == "nope"));
        assert!(f
            .run(&Cmd::argv(&["sleep", "1"]))
            .is_err_and(|e| e.is_timeout()));
        f.assert_done();
        let extra = f.run(&Cmd::argv(&["crm_mon"]));
        assert!(extra.is_err_and(|e| e.to_string().contains("no more commands")));
        Ok(())
    }

    #[test]
    #[should_panic(expected = "expected commands never ran")]
    fn leftover_expectations_fail_the_test() {
        Fake::new().expect(&["true"], Reply::ok("")).assert_done();
    }
}
