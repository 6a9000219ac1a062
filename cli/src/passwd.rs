//! `keel passwd [USER]`: change your own password (the current one is asked for) or, as root,
//! another user's. On a terminal the new password is read twice without echo; otherwise lines
//! are read from standard input: the current password first (when it is needed), then the new
//! one.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{anyhow, bail, Context, Result};
use keel_api::password::{validate_password, PasswordChange};
use reqwest::Method;

use crate::client::{ApiError, Client};

/// Echo off on the terminal while it lives (restored on drop).
struct NoEcho {
    saved: Option<rustix::termios::Termios>,
}

impl NoEcho {
    fn new() -> NoEcho {
        use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
        let stdin = std::io::stdin();
        // not a terminal: nothing to turn off, and nothing to restore
        let Ok(saved) = tcgetattr(&stdin) else {
            return NoEcho { saved: None };
        };
        let mut t = saved.clone();
        t.local_modes.remove(LocalModes::ECHO);
        t.local_modes.insert(LocalModes::ECHONL);
        if tcsetattr(&stdin, OptionalActions::Now, &t).is_err() {
            return NoEcho { saved: None };
        }
        NoEcho { saved: Some(saved) }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                t,
            );
        }
    }
}

fn read_line() -> Result<String> {
    let mut s = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut s)
        .context("reading standard input")?;
    if n == 0 {
        bail!("standard input ended before a password was read");
    }
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

fn prompt(text: &str) -> Result<String> {
    eprint!("{text}");
    let _ = std::io::stderr().flush();
    let _g = NoEcho::new();
    read_line()
}

/// The new password: twice on a terminal (they must match), once from a pipe.
fn new_password(user: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        let pw = read_line()?;
        validate_password("password", &pw).map_err(|e| anyhow!("{}", e.message))?;
        return Ok(pw);
    }
    loop {
        let a = prompt(&format!("New password for {user}: "))?;
        if let Err(e) = validate_password("password", &a) {
            eprintln!("{}; try again", e.message);
            continue;
        }
        let b = prompt("Retype the new password: ")?;
        if a == b {
            return Ok(a);
        }
        eprintln!("the passwords differ; try again");
    }
}

fn current_password() -> Result<String> {
    if std::io::stdin().is_terminal() {
        prompt("Current password: ")
    } else {
        read_line()
    }
}

pub async fn passwd(c: &Client, user: Option<String>) -> Result<()> {
    let who = user.clone().unwrap_or_else(|| "your user".into());
    // your own password needs the current one; for another user's (root) it is not asked for,
    // unless the server says that user is you
    let mut old = match user {
        None => Some(current_password()?),
        Some(_) => None,
    };
    let password = new_password(&who)?;
    loop {
        let req = PasswordChange {
            userid: user.clone(),
            password: password.clone(),
            old_password: old.clone(),
        };
        match c
            .call(Method::PUT, &["access", "password"], &[], Some(&req))
            .await
        {
            Ok(_) => {
                eprintln!("password of {who} changed; its other sessions on this node ended");
                return Ok(());
            }
            Err(e) => {
                let needs_old = e
                    .downcast_ref::<ApiError>()
                    .is_some_and(|a| a.field.as_deref() == Some("old_password"));
                if needs_old && old.is_none() && std::io::stdin().is_terminal() {
                    old = Some(current_password()?);
                    continue;
                }
                return Err(e);
            }
        }
    }
}
