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
    saved: Option<libc::termios>,
}

impl NoEcho {
    #[allow(unsafe_code)]
    fn new() -> NoEcho {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed termios that tcgetattr fills in;
        // a failure (not a terminal) leaves the settings untouched and `saved` empty.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return NoEcho { saved: None };
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            t.c_lflag |= libc::ECHONL;
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return NoEcho { saved: None };
            }
            NoEcho { saved: Some(saved) }
        }
    }
}

impl Drop for NoEcho {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            // SAFETY: restores the settings tcgetattr returned for the same descriptor.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, t);
            }
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
