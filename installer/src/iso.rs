//! `keel-installer build-iso`: the hybrid BIOS+UEFI installer ISO. The product root filesystem
//! comes from `iso/installer/build.sh` (cached by content hash under
//! `/var/cache/keel/installer/<hash>/`); Keel's binaries are packed into a small second squashfs
//! (cached by their hash); the per-answer assembly is `grub-mkrescue` over hard links, so it is
//! cheap. Layout on the ISO:
//!
//! ```text
//! /boot/vmlinuz  /boot/initrd-live.gz  /boot/grub/grub.cfg (typed, see render::boot)
//! /keel/root.squashfs  /keel/keel.squashfs  /keel/answer.toml (optional)  /keel/manifest.json
//! ```

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::render::boot::{GrubConfig, MenuEntry};

/// The ISO's volume label.
pub const VOLUME_ID: &str = "KEEL_INSTALLER";
/// Keel's binaries packed into the ISO (`keel-clusterd` when it was built).
pub const BINARIES: &[&str] = &["keel-hostd", "keel", "keel-installer"];
pub const OPTIONAL_BINARIES: &[&str] = &["keel-clusterd"];

#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("{what} failed ({status}); last output:\n{tail}")]
    Step {
        what: String,
        status: String,
        tail: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IsoError {
    let what = what.into();
    move |err| IsoError::Io { what, err }
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub answer: Option<String>,
    pub out: PathBuf,
    /// `iso/installer` (the rootfs recipe).
    pub recipe: PathBuf,
    /// Where keel-hostd, keel, keel-installer (and keel-clusterd) are.
    pub bin_dir: PathBuf,
    /// Cache root (`/var/cache/keel/installer`).
    pub cache: PathBuf,
    /// Extra kernel parameters for the installer entries (`keel.answer_url=…`).
    pub kernel_args: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    pub iso: PathBuf,
    pub bytes: u64,
    pub rootfs_dir: PathBuf,
    pub rootfs_seconds: f64,
    pub bins_seconds: f64,
    pub assemble_seconds: f64,
    pub total_seconds: f64,
}

/// The ISO's GRUB menu.
pub fn iso_grub_cfg(extra: &[String]) -> GrubConfig {
    let entry = |title: &str, consoles: [&str; 2], more: &[&str]| {
        let mut args: Vec<String> =
            vec!["keel.live".into(), consoles[0].into(), consoles[1].into()];
        args.extend(more.iter().map(|s| s.to_string()));
        args.extend(extra.iter().cloned());
        MenuEntry {
            title: title.into(),
            root_uuid: None,
            root_file: Some("/keel/root.squashfs".into()),
            kernel: "/boot/vmlinuz".into(),
            args,
            initrd: "/boot/initrd-live.gz".into(),
        }
    };
    GrubConfig {
        timeout_secs: 3,
        serial: true,
        modules: vec![],
        entries: vec![
            entry(
                "Install Keel (serial console)",
                ["console=tty0", "console=ttyS0,115200"],
                &[],
            ),
            entry(
                "Install Keel (screen)",
                ["console=ttyS0,115200", "console=tty0"],
                &[],
            ),
            entry(
                "Install Keel, asking on the console (ignore answer files)",
                ["console=ttyS0,115200", "console=tty0"],
                &["keel.prompt"],
            ),
        ],
    }
}

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix}: {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_prefix(msg.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Run `cmd`, showing its stderr lines as the spinner's message (and keeping the last ones for
/// the error).
fn run_step(what: &str, cmd: &mut Command) -> Result<String, IsoError> {
    let pb = spinner(what);
    eprintln!("build-iso: {what}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!("starting {what}")))?;
    let stderr = child.stderr.take();
    let pb2 = pb.clone();
    let reader = std::thread::spawn(move || {
        let mut tail: Vec<String> = Vec::new();
        if let Some(e) = stderr {
            for l in BufReader::new(e).lines().map_while(Result::ok) {
                pb2.set_message(l.clone());
                if pb2.is_hidden() {
                    eprintln!("  {l}");
                }
                tail.push(l);
                if tail.len() > 30 {
                    tail.remove(0);
                }
            }
        }
        tail
    });
    let out = child
        .wait_with_output()
        .map_err(io(format!("waiting for {what}")))?;
    let tail = reader.join().unwrap_or_default();
    pb.finish_and_clear();
    if !out.status.success() {
        return Err(IsoError::Step {
            what: what.into(),
            status: out.status.to_string(),
            tail: tail.join("\n"),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn link_or_copy(src: &Path, dst: &Path) -> Result<(), IsoError> {
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    std::fs::copy(src, dst).map(|_| ()).map_err(io(format!(
        "copying {} to {}",
        src.display(),
        dst.display()
    )))
}

fn hash_files(paths: &[PathBuf]) -> Result<String, IsoError> {
    let mut h = Sha256::new();
    for p in paths {
        let mut f = std::fs::File::open(p).map_err(io(format!("reading {}", p.display())))?;
        std::io::copy(&mut f, &mut h).map_err(io(format!("reading {}", p.display())))?;
        h.update(
            p.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
        );
    }
    Ok(hex::encode(h.finalize())[..16].to_string())
}

/// Keep the `keep` newest files named `PREFIX…SUFFIX` in `dir` (older binaries squashfs).
fn prune(dir: &Path, prefix: &str, suffix: &str, keep: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut v: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with(prefix) && n.ends_with(suffix)
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    v.sort();
    let n = v.len().saturating_sub(keep);
    for (_, p) in v.into_iter().take(n) {
        let _ = std::fs::remove_file(p);
    }
}

/// Build the ISO. The answer (if any) is validated first: an invalid one builds nothing.
pub fn build(opts: &BuildOptions) -> Result<BuildReport, IsoError> {
    let t0 = Instant::now();
    if let Some(a) = &opts.answer {
        if let Err(crate::Error::Invalid(issues)) = crate::load_answer(a) {
            return Err(IsoError::Invalid(format!(
                "the answer file is not valid; nothing was built:\n{issues}"
            )));
        }
    }
    let mut bins = Vec::new();
    for b in BINARIES {
        let p = opts.bin_dir.join(b);
        if !p.exists() {
            return Err(IsoError::Invalid(format!(
                "{} not found; build Keel first (cargo build --workspace --bins) or pass --bin-dir",
                p.display()
            )));
        }
        bins.push(p);
    }
    for b in OPTIONAL_BINARIES {
        let p = opts.bin_dir.join(b);
        if p.exists() {
            bins.push(p);
        }
    }

    // 1. The product root filesystem (cached by the recipe's content hash).
    let t = Instant::now();
    let script = opts.recipe.join("build.sh");
    let out = run_step(
        "product root filesystem (iso/installer/build.sh; cached by content hash)",
        Command::new("bash")
            .arg(&script)
            .env("KEEL_INSTALLER_CACHE", &opts.cache),
    )?;
    let rootfs_dir = PathBuf::from(out.lines().last().unwrap_or_default().trim());
    for f in [
        "root.squashfs",
        "vmlinuz",
        "initrd-live.gz",
        "manifest.json",
    ] {
        if !rootfs_dir.join(f).exists() {
            return Err(IsoError::Invalid(format!(
                "{} did not produce {f} in {}",
                script.display(),
                rootfs_dir.display()
            )));
        }
    }
    let rootfs_seconds = t.elapsed().as_secs_f64();

    // 2. Keel's binaries as a squashfs (cached by their hash).
    let t = Instant::now();
    let bh = hash_files(&bins)?;
    let keel_sq = opts.cache.join(format!("bins-{bh}.squashfs"));
    if !keel_sq.exists() {
        let stage = opts.cache.join(format!(".bins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&stage);
        let bin = stage.join("usr/local/bin");
        std::fs::create_dir_all(&bin).map_err(io(format!("creating {}", bin.display())))?;
        for b in &bins {
            let name = b.file_name().unwrap_or_default();
            link_or_copy(b, &bin.join(name))?;
        }
        let part = keel_sq.with_extension(format!("{}.part", std::process::id()));
        let r = run_step(
            "Keel's binaries (keel.squashfs)",
            Command::new("mksquashfs").arg(&stage).arg(&part).args([
                "-comp",
                "zstd",
                "-noappend",
                "-no-progress",
                "-all-root",
            ]),
        );
        let _ = std::fs::remove_dir_all(&stage);
        r?;
        std::fs::rename(&part, &keel_sq).map_err(io("renaming keel.squashfs"))?;
        prune(&opts.cache, "bins-", ".squashfs", 3);
    }
    let bins_seconds = t.elapsed().as_secs_f64();

    // 3. Assemble.
    let t = Instant::now();
    let stage = opts.cache.join(format!(".iso-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&stage);
    for d in ["boot/grub", "keel"] {
        std::fs::create_dir_all(stage.join(d)).map_err(io(format!("creating {d}")))?;
    }
    let r = (|| {
        link_or_copy(&rootfs_dir.join("vmlinuz"), &stage.join("boot/vmlinuz"))?;
        link_or_copy(
            &rootfs_dir.join("initrd-live.gz"),
            &stage.join("boot/initrd-live.gz"),
        )?;
        link_or_copy(
            &rootfs_dir.join("root.squashfs"),
            &stage.join("keel/root.squashfs"),
        )?;
        link_or_copy(&keel_sq, &stage.join("keel/keel.squashfs"))?;
        std::fs::write(
            stage.join("boot/grub/grub.cfg"),
            iso_grub_cfg(&opts.kernel_args).render(),
        )
        .map_err(io("writing grub.cfg"))?;
        if let Some(a) = &opts.answer {
            std::fs::write(stage.join("keel").join(crate::source::ANSWER_FILE), a)
                .map_err(io("writing answer.toml"))?;
        }
        let manifest = serde_json::json!({
            "rootfs": rootfs_dir,
            "binaries": bins.iter().map(|b| b.file_name().map(|n| n.to_string_lossy().to_string())).collect::<Vec<_>>(),
            "binaries_hash": bh,
            "answer": opts.answer.is_some(),
            "kernel_args": opts.kernel_args,
        });
        std::fs::write(stage.join("keel/manifest.json"), manifest.to_string())
            .map_err(io("writing manifest.json"))?;
        if let Some(d) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        run_step(
            "hybrid BIOS+UEFI image (grub-mkrescue)",
            Command::new("grub-mkrescue")
                .arg("-o")
                .arg(&opts.out)
                .arg(&stage)
                .args(["--", "-volid", VOLUME_ID]),
        )
    })();
    let _ = std::fs::remove_dir_all(&stage);
    r?;
    let bytes = std::fs::metadata(&opts.out)
        .map_err(io(format!("reading {}", opts.out.display())))?
        .len();
    Ok(BuildReport {
        iso: opts.out.clone(),
        bytes,
        rootfs_dir,
        rootfs_seconds,
        bins_seconds,
        assemble_seconds: t.elapsed().as_secs_f64(),
        total_seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_menu() {
        let g = iso_grub_cfg(&["keel.index=3".into()]).render();
        assert!(g.contains("menuentry 'Install Keel (serial console)' {\n  search --no-floppy --file --set=root /keel/root.squashfs\n  linux /boot/vmlinuz keel.live console=tty0 console=ttyS0,115200 keel.index=3\n  initrd /boot/initrd-live.gz\n}"), "{g}");
        assert!(g.contains("keel.prompt keel.index=3"), "{g}");
    }
}
