//! `keel-installer install`: the install program as it runs on the booted ISO. Gets the answer
//! (see [`crate::source`]), validates it and plans it against this machine before anything is
//! written, then runs [`crate::install::install`]. Console markers for automation:
//! `KEEL-INSTALLER: starting`, `KEEL-INSTALL-FAILED: …`, `KEEL-INSTALL-DONE …`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::answer::Answer;
use crate::hw::Hardware;
use crate::install::{self, Image, Log};
use crate::plan::Reboot;
use crate::prompt::{self, PromptError};
use crate::source::{self, Source};
use crate::system::{self, KernelArgs};
use crate::util::{is_hostname_pattern, Cidr};

#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Running on the installer medium (reboot/poweroff at the end).
    pub live: bool,
    /// An answer file given directly (skips the sources).
    pub answer: Option<PathBuf>,
    /// Where the target's root is mounted during the install.
    pub target: PathBuf,
    /// The medium's `keel/` directory (root.squashfs, keel.squashfs, answer.toml).
    pub image_dir: PathBuf,
    /// Validate and plan only; print the plan.
    pub dry_run: bool,
}

/// The node number for a `node{NN}` hostname: `keel.index=N` on the kernel command line; else
/// the last octet of the management interface's first static IPv4 address (`192.0.2.11/24` →
/// 11); else the last octet of the first NIC's MAC address (decimal). `None` when the hostname
/// is not a pattern.
pub fn derive_index(a: &Answer, hw: &Hardware, args: &KernelArgs) -> Result<Option<u32>, String> {
    if !is_hostname_pattern(&a.global.hostname) {
        return Ok(None);
    }
    if let Some(i) = &args.index {
        return i
            .parse()
            .map(Some)
            .map_err(|_| format!("keel.index=`{i}` is not a number"));
    }
    let n = &a.network;
    let mgmt: Vec<&Vec<String>> = n
        .nics
        .iter()
        .filter(|x| x.role.as_deref() == Some("management"))
        .map(|x| &x.addresses)
        .chain(
            n.bonds
                .iter()
                .filter(|x| x.role.as_deref() == Some("management"))
                .map(|x| &x.addresses),
        )
        .chain(
            n.vlans
                .iter()
                .filter(|x| x.role.as_deref() == Some("management"))
                .map(|x| &x.addresses),
        )
        .chain(
            n.bridges
                .iter()
                .filter(|x| x.role.as_deref() == Some("management"))
                .map(|x| &x.addresses),
        )
        .collect();
    for addrs in mgmt {
        for s in addrs {
            if let Ok(Cidr {
                addr: std::net::IpAddr::V4(v4),
                ..
            }) = Cidr::parse(s)
            {
                return Ok(Some(u32::from(v4.octets()[3])));
            }
        }
    }
    let mac = n
        .nics
        .iter()
        .find_map(|x| x.mac.clone())
        .or_else(|| hw.nics.first().map(|x| x.mac.clone()));
    match mac.as_deref().and_then(|m| m.rsplit(':').next()).and_then(|o| u32::from_str_radix(o, 16).ok()) {
        Some(i) => Ok(Some(i)),
        None => Err("global.hostname is a numbered pattern, but no node index could be decided: give keel.index=N on the kernel command line or a static management address".into()),
    }
}

fn console_secret<R: BufRead, W: Write>(input: &mut R, out: &mut W) -> Result<String, PromptError> {
    let tty = std::io::stdin().is_terminal();
    if tty {
        let _ = Command::new("stty").arg("-echo").status();
    }
    let r = prompt::plain_secret(input, out);
    if tty {
        let _ = Command::new("stty").arg("echo").status();
        let _ = writeln!(out);
    }
    r
}

fn failed(log: &mut Log, msg: &str) -> i32 {
    for l in msg.lines() {
        log.line(format!("KEEL-INSTALL-FAILED: {l}"));
    }
    1
}

/// Run the install program; returns the process exit code.
pub fn run(opts: &InstallOptions) -> i32 {
    let mut log = Log::new(None);
    log.line("KEEL-INSTALLER: starting");
    let args = KernelArgs::read();
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    // Never offer the installer medium or the answer partition's disk as a target.
    let mut exclude = system::devices_of_mount(&mounts, "/mnt/keel/iso");
    if let Some(d) = source::find_labelled(Path::new("/dev/disk/by-label"), source::ANSWER_LABEL) {
        exclude.push(system::whole_disk(&d.to_string_lossy()));
    }
    let hw = system::hardware(&exclude);
    for d in &hw.disks {
        log.line(format!("disk {d}"));
    }
    for n in &hw.nics {
        log.line(format!("nic {} {}", n.name, n.mac));
    }

    let got = match &opts.answer {
        Some(p) => std::fs::read_to_string(p)
            .map(|t| Some((Source::File { path: p.clone() }, t)))
            .map_err(|e| format!("reading {}: {e}", p.display())),
        None => source::obtain(
            &args,
            Path::new("/dev/disk/by-label"),
            &opts.image_dir.join(source::ANSWER_FILE),
            Path::new("/run/keel-answer"),
        )
        .map_err(|e| e.to_string()),
    };
    let (src, text) = match got {
        Ok(Some(x)) => x,
        Ok(None) => {
            log.line(
                "no answer file (HTTPS, KEEL-ANSWER partition or embedded); asking on the console",
            );
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let mut out = std::io::stdout();
            match prompt::prompt_answer(&mut input, &mut out, &hw, console_secret) {
                Ok(a) => match toml::to_string(&a) {
                    Ok(t) => (Source::Prompt, t),
                    Err(e) => return failed(&mut log, &format!("cannot write the answer: {e}")),
                },
                Err(e) => return failed(&mut log, &e.to_string()),
            }
        }
        Err(e) => return failed(&mut log, &format!("{e}; nothing was written")),
    };
    log.line(format!("answer file: {src}"));

    let answer = match crate::load_answer(&text) {
        Ok(a) => a,
        Err(crate::Error::Invalid(issues)) => {
            return failed(
                &mut log,
                &format!("the answer file ({src}) is not valid; nothing was written:\n{issues}"),
            )
        }
    };
    let index = match derive_index(&answer, &hw, &args) {
        Ok(i) => i,
        Err(e) => return failed(&mut log, &format!("{e}; nothing was written")),
    };
    let plan = match crate::plan::plan(&answer, index, &hw) {
        Ok(p) => p,
        Err(crate::Error::Invalid(issues)) => {
            return failed(
                &mut log,
                &format!("the answer does not fit this machine; nothing was written:\n{issues}"),
            )
        }
    };
    log.line(format!(
        "plan: {} (node index {}), disk {}, management {} {}",
        plan.fqdn,
        index.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        plan.disk.device.path,
        plan.network.management,
        plan.management_address()
            .map(|c| c.to_string())
            .unwrap_or_else(|| "dhcp".into())
    ));
    if opts.dry_run {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        );
        return 0;
    }
    let image = Image {
        root: opts.image_dir.join("root.squashfs"),
        keel: Some(opts.image_dir.join("keel.squashfs")).filter(|p| p.exists()),
    };
    if !image.root.exists() {
        return failed(
            &mut log,
            &format!(
                "{} not found (is this the installer medium?); nothing was written",
                image.root.display()
            ),
        );
    }
    let t = std::time::Instant::now();
    if let Err(e) = install::install(&mut log, &plan, &image, &opts.target, &text) {
        return failed(&mut log, &format!("{e}"));
    }
    log.line(format!(
        "KEEL-INSTALL-DONE host={} disk={} seconds={:.0}",
        plan.hostname,
        plan.disk.device.path,
        t.elapsed().as_secs_f64()
    ));
    if opts.live {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let verb = match plan.reboot {
            Reboot::Reboot => "reboot",
            Reboot::Poweroff => "poweroff",
        };
        let _ = Command::new("systemctl").arg(verb).status();
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(hostname: &str, extra: &str) -> Answer {
        crate::parse_answer(&format!(
            "[global]\nhostname = \"{hostname}\"\ndomain = \"lab\"\n[disk]\n{extra}"
        ))
        .expect("parse")
    }

    #[test]
    fn node_index() {
        let hw = Hardware {
            nics: vec![crate::hw::NicInfo {
                name: "ens3".into(),
                mac: "52:54:00:00:00:1f".into(),
            }],
            disks: vec![],
        };
        let none = KernelArgs::default();
        assert_eq!(derive_index(&answer("pve1", ""), &hw, &none), Ok(None));
        let a = answer(
            "node{NN}",
            "[[network.bridges]]\nname = \"vmbr0\"\nrole = \"management\"\naddresses = [\"10.0.0.12/24\"]\n",
        );
        assert_eq!(derive_index(&a, &hw, &none), Ok(Some(12)));
        let k = KernelArgs {
            index: Some("3".into()),
            ..Default::default()
        };
        assert_eq!(derive_index(&a, &hw, &k), Ok(Some(3)));
        assert_eq!(
            derive_index(&answer("node{NN}", ""), &hw, &none),
            Ok(Some(31))
        );
        let bad = KernelArgs {
            index: Some("x".into()),
            ..Default::default()
        };
        assert!(derive_index(&a, &hw, &bad).is_err());
    }
}
