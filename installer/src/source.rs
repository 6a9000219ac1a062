//! Where the install program gets its answer file, in this order:
//! 1. HTTPS: `keel.answer_url=https://…` with `keel.answer_fingerprint=AB:CD:…` on the kernel
//!    command line (the server's certificate is pinned; no CA is consulted);
//! 2. a partition or file system labelled `KEEL-ANSWER` holding `answer.toml` (a USB stick, a
//!    second virtual disk);
//! 3. the answer embedded in the ISO by `keel-installer build-iso --answer` (`/keel/answer.toml`);
//! 4. none: the console asks (see [`crate::prompt`]).
//!
//! `keel.prompt` on the kernel command line skips 1–3.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fetch;
use crate::system::KernelArgs;

/// The file-system label an answer partition carries.
pub const ANSWER_LABEL: &str = "KEEL-ANSWER";
/// The answer file's name on an answer partition and in the ISO (`/keel/answer.toml`).
pub const ANSWER_FILE: &str = "answer.toml";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Https {
        url: String,
    },
    Partition {
        device: PathBuf,
    },
    Embedded {
        path: PathBuf,
    },
    /// `keel-installer install --answer FILE`.
    File {
        path: PathBuf,
    },
    Prompt,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Https { url } => write!(f, "HTTPS {url} (pinned certificate)"),
            Source::Partition { device } => {
                write!(f, "partition {} labelled {ANSWER_LABEL}", device.display())
            }
            Source::Embedded { path } => write!(f, "embedded in the ISO ({})", path.display()),
            Source::File { path } => write!(f, "{} (--answer)", path.display()),
            Source::Prompt => write!(f, "console prompts"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("keel.answer_url is set but keel.answer_fingerprint is missing; add keel.answer_fingerprint=AB:CD:… (the SHA-256 of the server's certificate)")]
    NoFingerprint,
    #[error("fetching the answer file: {0}")]
    Fetch(#[from] fetch::FetchError),
    #[error("the answer file from {source_desc} is not UTF-8 text")]
    NotText { source_desc: String },
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("mounting {device}: {message}")]
    Mount { device: String, message: String },
}

/// The device carrying the `KEEL-ANSWER` label, looked up under `by_label`
/// (`/dev/disk/by-label`, maintained by udev).
pub fn find_labelled(by_label: &Path, label: &str) -> Option<PathBuf> {
    let p = by_label.join(label);
    p.exists().then(|| std::fs::canonicalize(&p).unwrap_or(p))
}

/// Fetch the answer over HTTPS with the pinned fingerprint; retried a few times (the network
/// may still be coming up).
pub fn fetch_answer(url: &str, fingerprint: &str, attempts: u32) -> Result<String, SourceError> {
    let mut last = None;
    for i in 0..attempts.max(1) {
        if i > 0 {
            std::thread::sleep(Duration::from_secs(3));
        }
        match fetch::request(url, fingerprint, "GET", None, Duration::from_secs(20)) {
            Ok(b) => {
                return String::from_utf8(b).map_err(|_| SourceError::NotText {
                    source_desc: url.to_string(),
                })
            }
            // A wrong certificate will not become right by retrying.
            Err(e @ fetch::FetchError::PinMismatch { .. }) => return Err(e.into()),
            Err(e @ fetch::FetchError::BadInput(_)) => return Err(e.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .map(SourceError::Fetch)
        .unwrap_or(SourceError::NoFingerprint))
}

/// Read `answer.toml` from the labelled partition: mount it read-only at `mnt`, read, unmount.
pub fn read_partition(device: &Path, mnt: &Path) -> Result<String, SourceError> {
    std::fs::create_dir_all(mnt).map_err(|err| SourceError::Io {
        what: format!("creating {}", mnt.display()),
        err,
    })?;
    let out = std::process::Command::new("mount")
        .args(["-o", "ro"])
        .arg(device)
        .arg(mnt)
        .output()
        .map_err(|err| SourceError::Io {
            what: "running mount".into(),
            err,
        })?;
    if !out.status.success() {
        return Err(SourceError::Mount {
            device: device.display().to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let p = mnt.join(ANSWER_FILE);
    let r = std::fs::read_to_string(&p).map_err(|err| SourceError::Io {
        what: format!(
            "reading {ANSWER_FILE} on {} (the partition labelled {ANSWER_LABEL})",
            device.display()
        ),
        err,
    });
    let _ = std::process::Command::new("umount").arg(mnt).status();
    r
}

/// Pick the source per the order above and read it. `Ok(None)` means: prompt.
pub fn obtain(
    args: &KernelArgs,
    by_label: &Path,
    embedded: &Path,
    mnt: &Path,
) -> Result<Option<(Source, String)>, SourceError> {
    if args.prompt {
        return Ok(None);
    }
    if let Some(url) = &args.answer_url {
        let fp = args
            .answer_fingerprint
            .as_deref()
            .ok_or(SourceError::NoFingerprint)?;
        let text = fetch_answer(url, fp, 5)?;
        return Ok(Some((Source::Https { url: url.clone() }, text)));
    }
    if let Some(dev) = find_labelled(by_label, ANSWER_LABEL) {
        let text = read_partition(&dev, mnt)?;
        return Ok(Some((Source::Partition { device: dev }, text)));
    }
    if embedded.exists() {
        let text = std::fs::read_to_string(embedded).map_err(|err| SourceError::Io {
            what: format!("reading {}", embedded.display()),
            err,
        })?;
        return Ok(Some((
            Source::Embedded {
                path: embedded.to_path_buf(),
            },
            text,
        )));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_prompt_label_embedded() {
        let t = std::env::temp_dir().join(format!("keel-src-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(t.join("by-label")).expect("mkdir");
        let emb = t.join("answer.toml");
        let none = KernelArgs::default();
        // Nothing anywhere: prompt.
        assert_eq!(
            obtain(&none, &t.join("by-label"), &emb, &t.join("m")).expect("ok"),
            None
        );
        std::fs::write(&emb, "x = 1\n").expect("write");
        let (s, text) = obtain(&none, &t.join("by-label"), &emb, &t.join("m"))
            .expect("ok")
            .expect("some");
        assert!(matches!(s, Source::Embedded { .. }));
        assert_eq!(text, "x = 1\n");
        // A labelled device wins over the embedded file.
        std::fs::write(t.join("dev-vdb"), "").expect("write");
        std::os::unix::fs::symlink(t.join("dev-vdb"), t.join("by-label").join(ANSWER_LABEL))
            .expect("symlink");
        assert_eq!(
            find_labelled(&t.join("by-label"), ANSWER_LABEL),
            Some(t.join("dev-vdb"))
        );
        // keel.prompt overrides everything.
        let p = KernelArgs {
            prompt: true,
            ..Default::default()
        };
        assert_eq!(
            obtain(&p, &t.join("by-label"), &emb, &t.join("m")).expect("ok"),
            None
        );
        // A URL without a fingerprint is refused.
        let u = KernelArgs {
            answer_url: Some("https://127.0.0.1:1/a.toml".into()),
            ..Default::default()
        };
        assert!(matches!(
            obtain(&u, &t.join("by-label"), &emb, &t.join("m")),
            Err(SourceError::NoFingerprint)
        ));
        let _ = std::fs::remove_dir_all(&t);
    }
}
