//! The install program's steps, on a real machine: partition the chosen disk, make the file
//! systems and the volume group, lay down the product root filesystem, write the rendered
//! configuration, give the node its own identity, install GRUB for BIOS and UEFI, and log every
//! step to the console and to `/var/log/keel/install.log` on the target.
//!
//! Everything here drives the engines' own tools (sgdisk, mkfs.*, LVM, unsquashfs, grub-install,
//! ssh-keygen, chpasswd) through [`Log::run`]; the decisions (layout, files) come from the typed
//! [`Plan`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::plan::{Password, Plan, Reboot};
use crate::render::boot::{env_file, fstab, FstabEntry, GrubConfig, MenuEntry};
use crate::render::{self, RenderedFile};
use crate::system::partition;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{step}: `{command}` failed ({status}): {output}")]
    Command {
        step: String,
        command: String,
        status: String,
        output: String,
    },
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("{0}")]
    Other(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> InstallError {
    let what = what.into();
    move |err| InstallError::Io { what, err }
}

/// Step log: every line to the console (stdout, and `mirror` when set, e.g. `/dev/tty1`) and
/// into memory until the target's log file can be opened, then there.
pub struct Log {
    t0: Instant,
    lines: Vec<String>,
    file: Option<std::fs::File>,
    mirror: Option<std::fs::File>,
}

impl Log {
    pub fn new(mirror: Option<&Path>) -> Log {
        Log {
            t0: Instant::now(),
            lines: Vec::new(),
            file: None,
            mirror: mirror.and_then(|p| std::fs::OpenOptions::new().append(true).open(p).ok()),
        }
    }

    pub fn line(&mut self, msg: impl AsRef<str>) {
        let l = format!(
            "[{:7.1}s] {}",
            self.t0.elapsed().as_secs_f64(),
            msg.as_ref()
        );
        println!("{l}");
        let _ = std::io::stdout().flush();
        if let Some(m) = self.mirror.as_mut() {
            let _ = writeln!(m, "{l}\r");
        }
        if let Some(f) = self.file.as_mut() {
            let _ = writeln!(f, "{l}");
        } else {
            self.lines.push(l);
        }
    }

    /// From now on, also write to `path` (earlier lines are written first).
    pub fn attach(&mut self, path: &Path) -> Result<(), InstallError> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        // 0600: the log names users, keys' fingerprints and the install's decisions.
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io(format!("opening {}", path.display())))?;
        for l in self.lines.drain(..) {
            let _ = writeln!(f, "{l}");
        }
        self.file = Some(f);
        Ok(())
    }

    pub fn detach(&mut self) {
        if let Some(f) = self.file.take() {
            let _ = f.sync_all();
        }
    }

    /// Run a command, logging it; its output is logged when it fails (last 40 lines).
    pub fn run(&mut self, step: &str, cmd: &mut Command) -> Result<String, InstallError> {
        self.run_input(step, cmd, None)
    }

    pub fn run_input(
        &mut self,
        step: &str,
        cmd: &mut Command,
        input: Option<&str>,
    ) -> Result<String, InstallError> {
        let shown = format!("{cmd:?}").replace('"', "");
        self.run_shown(step, cmd, input, shown)
    }

    /// Like [`Log::run`], but logs `shown` instead of the command line (which holds a secret).
    pub fn run_redacted(
        &mut self,
        step: &str,
        cmd: &mut Command,
        shown: &str,
    ) -> Result<String, InstallError> {
        self.run_shown(step, cmd, None, shown.to_string())
    }

    fn run_shown(
        &mut self,
        step: &str,
        cmd: &mut Command,
        input: Option<&str>,
        shown: String,
    ) -> Result<String, InstallError> {
        self.line(format!("  $ {shown}"));
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| InstallError::Command {
            step: step.into(),
            command: shown.clone(),
            status: "not started".into(),
            output: e.to_string(),
        })?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            let _ = stdin.write_all(text.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| InstallError::Command {
                step: step.into(),
                command: shown.clone(),
                status: "lost".into(),
                output: e.to_string(),
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            let all = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
            let tail: Vec<&str> = all.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            for l in &tail {
                self.line(format!("    {l}"));
            }
            return Err(InstallError::Command {
                step: step.into(),
                command: shown,
                status: out.status.to_string(),
                output: tail.join("\n"),
            });
        }
        Ok(stdout)
    }
}

/// Where the product image is (the mounted installer medium).
#[derive(Debug, Clone)]
pub struct Image {
    /// `root.squashfs`
    pub root: PathBuf,
    /// `keel.squashfs` (Keel's binaries), if present.
    pub keel: Option<PathBuf>,
}

/// The partition numbers of Keel's layout.
pub const PART_BIOS: u32 = 1;
pub const PART_EFI: u32 = 2;
pub const PART_ROOT: u32 = 3;
pub const PART_SWAP: u32 = 4;
pub const PART_LVM: u32 = 5;

/// The sgdisk arguments for the plan's layout (GPT): BIOS boot 1 MiB, EFI 512 MiB (vfat), root,
/// swap (if any), and the rest as an LVM physical volume.
pub fn sgdisk_args(plan: &Plan) -> Vec<String> {
    let d = &plan.disk;
    let mut a: Vec<String> = vec![
        "--zap-all".into(),
        "--clear".into(),
        format!("--new={PART_BIOS}:0:+1M"),
        format!("--typecode={PART_BIOS}:ef02"),
        format!("--change-name={PART_BIOS}:bios"),
        format!("--new={PART_EFI}:0:+512M"),
        format!("--typecode={PART_EFI}:ef00"),
        format!("--change-name={PART_EFI}:efi"),
        format!("--new={PART_ROOT}:0:+{}G", d.root_size_gib),
        format!("--typecode={PART_ROOT}:8304"),
        format!("--change-name={PART_ROOT}:root"),
    ];
    if d.swap_size_gib > 0 {
        a.extend([
            format!("--new={PART_SWAP}:0:+{}G", d.swap_size_gib),
            format!("--typecode={PART_SWAP}:8200"),
            format!("--change-name={PART_SWAP}:swap"),
        ]);
    }
    a.extend([
        format!("--new={PART_LVM}:0:0"),
        format!("--typecode={PART_LVM}:8e00"),
        format!("--change-name={PART_LVM}:{}", d.vg_name),
    ]);
    a.push(d.device.path.clone());
    a
}

/// The installed system's kernel command line.
pub fn kernel_args(root_uuid: &str) -> Vec<String> {
    vec![
        format!("root=UUID={root_uuid}"),
        "ro".into(),
        "console=tty0".into(),
        "console=ttyS0,115200".into(),
    ]
}

/// The installed system's grub.cfg (read by both the BIOS and the UEFI GRUB).
pub fn target_grub_cfg(plan: &Plan, root_uuid: &str, kver: &str) -> GrubConfig {
    GrubConfig {
        timeout_secs: 2,
        serial: true,
        modules: vec![
            "part_gpt".into(),
            if plan.disk.root_fs == "xfs" {
                "xfs"
            } else {
                "ext2"
            }
            .into(),
        ],
        entries: vec![MenuEntry {
            title: format!("Keel ({})", plan.fqdn),
            root_uuid: Some(root_uuid.into()),
            root_file: None,
            kernel: format!("/boot/vmlinuz-{kver}"),
            args: kernel_args(root_uuid),
            initrd: format!("/boot/initrd.img-{kver}"),
        }],
    }
}

/// What first boot needs (`/etc/keel/firstboot.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FirstBootSpec {
    pub hostname: String,
    /// A script to run (absolute path on the node).
    pub hook: Option<String>,
    pub webhook: Option<crate::answer::Webhook>,
    pub join: Option<JoinSpec>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JoinSpec {
    pub address: String,
    pub fingerprint: String,
    pub token: String,
}

pub fn firstboot_spec(plan: &Plan) -> FirstBootSpec {
    FirstBootSpec {
        hostname: plan.hostname.clone(),
        hook: plan.first_boot.as_ref().and_then(|f| {
            f.script.clone().or(f
                .inline
                .as_ref()
                .map(|_| "/etc/keel/first-boot.sh".to_string()))
        }),
        webhook: plan.post_install.clone(),
        join: plan.cluster.as_ref().map(|j| JoinSpec {
            address: j.address.clone(),
            fingerprint: j.fingerprint.clone(),
            token: j.token.clone(),
        }),
    }
}

fn write_file(root: &Path, f: &RenderedFile) -> Result<(), InstallError> {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(f.path.trim_start_matches('/'));
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    std::fs::write(&p, &f.content).map_err(io(format!("writing {}", p.display())))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode))
        .map_err(io(format!("chmod {}", p.display())))
}

fn random_hex(bytes: usize) -> Result<String, InstallError> {
    use std::io::Read;
    let mut b = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io("reading /dev/urandom"))?;
    Ok(hex::encode(b))
}

/// Mounts made during the install, undone in reverse order (also on failure).
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn unmount_all(&mut self, log: &mut Log) {
        while let Some(m) = self.0.pop() {
            let _ = log.run("unmount", Command::new("umount").arg(&m));
        }
    }
}

/// Run the install for `plan`: everything from partitioning to the bootloader. `answer_text` is
/// stored on the node (`/etc/keel/answer.toml`, 0600).
pub fn install(
    log: &mut Log,
    plan: &Plan,
    image: &Image,
    target: &Path,
    answer_text: &str,
) -> Result<(), InstallError> {
    let mut mounts = Mounts(Vec::new());
    let r = install_inner(log, plan, image, target, answer_text, &mut mounts);
    log.detach();
    mounts.unmount_all(log);
    r
}

fn blkid_uuid(log: &mut Log, dev: &str) -> Result<String, InstallError> {
    let u = log.run(
        "read UUID",
        Command::new("blkid").args(["-s", "UUID", "-o", "value", dev]),
    )?;
    let u = u.trim().to_string();
    if u.is_empty() {
        return Err(InstallError::Other(format!(
            "{dev} has no file-system UUID"
        )));
    }
    Ok(u)
}

fn install_inner(
    log: &mut Log,
    plan: &Plan,
    image: &Image,
    target: &Path,
    answer_text: &str,
    mounts: &mut Mounts,
) -> Result<(), InstallError> {
    let disk = plan.disk.device.path.clone();
    let p = |n| partition(&disk, n);

    log.line(format!(
        "step 1/8: partitioning {} (GPT: bios, efi, root {} GiB {}, swap {} GiB, LVM VG {})",
        plan.disk.device,
        plan.disk.root_size_gib,
        plan.disk.root_fs,
        plan.disk.swap_size_gib,
        plan.disk.vg_name
    ));
    // Old LVM/RAID signatures on a wiped disk would otherwise be found again.
    log.run(
        "wipe signatures",
        Command::new("wipefs").args(["--all", "--force", &disk]),
    )?;
    log.run("partition", Command::new("sgdisk").args(sgdisk_args(plan)))?;
    let _ = log.run("reread partitions", Command::new("partprobe").arg(&disk));
    let _ = log.run(
        "udev settle",
        Command::new("udevadm").args(["settle", "--timeout=30"]),
    );
    for n in [PART_BIOS, PART_EFI, PART_ROOT, PART_LVM] {
        let dev = p(n);
        let mut i = 0;
        while !Path::new(&dev).exists() && i < 100 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            i += 1;
        }
        if !Path::new(&dev).exists() {
            return Err(InstallError::Other(format!(
                "{dev} did not appear after partitioning"
            )));
        }
    }

    log.line("step 2/8: file systems, swap, LVM volume group");
    log.run(
        "mkfs efi",
        Command::new("mkfs.vfat").args(["-F", "32", "-n", "EFI", &p(PART_EFI)]),
    )?;
    if plan.disk.root_fs == "xfs" {
        log.run(
            "mkfs root",
            Command::new("mkfs.xfs").args(["-f", "-L", "keel-root", &p(PART_ROOT)]),
        )?;
    } else {
        log.run(
            "mkfs root",
            Command::new("mkfs.ext4").args(["-q", "-F", "-L", "keel-root", &p(PART_ROOT)]),
        )?;
    }
    if plan.disk.swap_size_gib > 0 {
        log.run(
            "mkswap",
            Command::new("mkswap").args(["-L", "keel-swap", &p(PART_SWAP)]),
        )?;
    }
    log.run(
        "pvcreate",
        Command::new("pvcreate").args(["-ff", "-y", &p(PART_LVM)]),
    )?;
    log.run(
        "vgcreate",
        Command::new("vgcreate").args([&plan.disk.vg_name, &p(PART_LVM)]),
    )?;
    let root_uuid = blkid_uuid(log, &p(PART_ROOT))?;
    let efi_uuid = blkid_uuid(log, &p(PART_EFI))?;
    let swap_uuid = if plan.disk.swap_size_gib > 0 {
        Some(blkid_uuid(log, &p(PART_SWAP))?)
    } else {
        None
    };

    std::fs::create_dir_all(target).map_err(io(format!("creating {}", target.display())))?;
    log.run(
        "mount root",
        Command::new("mount").arg(p(PART_ROOT)).arg(target),
    )?;
    mounts.0.push(target.to_path_buf());
    log.attach(&target.join("var/log/keel/install.log"))?;

    log.line("step 3/8: laying down the root file system");
    let t = Instant::now();
    log.run(
        "unsquashfs root",
        Command::new("unsquashfs")
            .args(["-f", "-no-progress", "-quiet", "-d"])
            .arg(target)
            .arg(&image.root),
    )?;
    if let Some(k) = &image.keel {
        log.run(
            "unsquashfs keel",
            Command::new("unsquashfs")
                .args(["-f", "-no-progress", "-quiet", "-d"])
                .arg(target)
                .arg(k),
        )?;
    }
    log.line(format!("  copied in {:.0}s", t.elapsed().as_secs_f64()));
    let efi_dir = target.join("boot/efi");
    std::fs::create_dir_all(&efi_dir).map_err(io("creating /boot/efi"))?;
    log.run(
        "mount efi",
        Command::new("mount").arg(p(PART_EFI)).arg(&efi_dir),
    )?;
    mounts.0.push(efi_dir);
    for (src, dst, fstype) in [("proc", "proc", "proc"), ("sysfs", "sys", "sysfs")] {
        let d = target.join(dst);
        log.run(
            "mount",
            Command::new("mount").args(["-t", fstype, src]).arg(&d),
        )?;
        mounts.0.push(d);
    }
    for dst in ["dev", "sys/firmware/efi/efivars"] {
        let src = Path::new("/").join(dst);
        if !src.exists() {
            continue;
        }
        let d = target.join(dst);
        log.run(
            "bind mount",
            Command::new("mount").arg("--bind").arg(&src).arg(&d),
        )?;
        mounts.0.push(d);
    }

    log.line("step 4/8: configuration (network, time, hosts, SSH, fstab)");
    let mut files = render::debian::render(plan);
    let mut entries = vec![
        FstabEntry {
            spec: format!("UUID={root_uuid}"),
            mountpoint: "/".into(),
            fstype: plan.disk.root_fs.clone(),
            options: if plan.disk.root_fs == "xfs" {
                "defaults"
            } else {
                "errors=remount-ro"
            }
            .into(),
            pass: 1,
        },
        FstabEntry {
            spec: format!("UUID={efi_uuid}"),
            mountpoint: "/boot/efi".into(),
            fstype: "vfat".into(),
            options: "umask=0077".into(),
            pass: 2,
        },
    ];
    if let Some(u) = &swap_uuid {
        entries.push(FstabEntry {
            spec: format!("UUID={u}"),
            mountpoint: "none".into(),
            fstype: "swap".into(),
            options: "sw".into(),
            pass: 0,
        });
    }
    files.push(RenderedFile::new("/etc/fstab", 0o644, fstab(&entries)));
    files.push(RenderedFile::new(
        "/etc/default/locale",
        0o644,
        env_file(&[("LANG", &plan.locale)]),
    ));
    files.push(RenderedFile::new(
        "/etc/default/keyboard",
        0o644,
        env_file(&[("XKBMODEL", "pc105"), ("XKBLAYOUT", &plan.keyboard)]),
    ));
    files.push(RenderedFile::new(
        "/etc/keel/answer.toml",
        0o600,
        answer_text,
    ));
    let spec = firstboot_spec(plan);
    files.push(RenderedFile::new(
        "/etc/keel/firstboot.json",
        0o600,
        serde_json::to_string_pretty(&spec).map_err(|e| InstallError::Other(e.to_string()))?,
    ));
    files.push(RenderedFile::new("/etc/keel/firstboot-pending", 0o644, ""));
    for f in &files {
        write_file(target, f)?;
        log.line(format!("  wrote {} ({:04o})", f.path, f.mode));
    }
    // systemd-networkd owns the network; resolv.conf from the answer's DNS servers.
    let mut resolv = String::from("# Generated by keel-installer.\n");
    if !plan.network.dns_search.is_empty() {
        resolv.push_str(&format!("search {}\n", plan.network.dns_search.join(" ")));
    }
    for s in &plan.network.dns_servers {
        resolv.push_str(&format!("nameserver {s}\n"));
    }
    let _ = std::fs::remove_file(target.join("etc/resolv.conf"));
    write_file(
        target,
        &RenderedFile::new("/etc/resolv.conf", 0o644, resolv),
    )?;
    let tz = Path::new("/usr/share/zoneinfo").join(&plan.timezone);
    if target.join(tz.strip_prefix("/").unwrap_or(&tz)).exists() {
        let lt = target.join("etc/localtime");
        let _ = std::fs::remove_file(&lt);
        std::os::unix::fs::symlink(&tz, &lt).map_err(io("linking /etc/localtime"))?;
        write_file(
            target,
            &RenderedFile::new("/etc/timezone", 0o644, format!("{}\n", plan.timezone)),
        )?;
    } else {
        log.line(format!(
            "  warning: no zoneinfo for {}; keeping UTC",
            plan.timezone
        ));
    }

    log.line("step 5/8: identity (machine-id, SSH host keys, passwords, users)");
    let mid = random_hex(16)?;
    write_file(
        target,
        &RenderedFile::new("/etc/machine-id", 0o444, format!("{mid}\n")),
    )?;
    log.line(format!("  machine-id {mid}"));
    let chroot = |args: &[&str]| {
        let mut c = Command::new("chroot");
        c.arg(target).args(args);
        c
    };
    for e in std::fs::read_dir(target.join("etc/ssh"))
        .map_err(io("reading /etc/ssh"))?
        .flatten()
    {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    log.run("ssh host keys", &mut chroot(&["ssh-keygen", "-A"]))?;
    let fp = log.run(
        "ssh host key",
        &mut chroot(&[
            "ssh-keygen",
            "-l",
            "-f",
            "/etc/ssh/ssh_host_ed25519_key.pub",
        ]),
    )?;
    log.line(format!("  SSH host key {}", fp.trim()));
    match &plan.root_password {
        Password::Hash(h) => {
            log.line("  root password: from the hash in the answer");
            log.run_redacted(
                "root password",
                &mut chroot(&["usermod", "-p", h, "root"]),
                "chroot usermod -p <hash> root",
            )?;
        }
        Password::Plain(p) if !p.is_empty() => {
            log.line("  root password: set (hashed by chpasswd)");
            log.run_input(
                "root password",
                &mut chroot(&["chpasswd"]),
                Some(&format!("root:{p}\n")),
            )?;
        }
        Password::Plain(_) => log.line("  root password: none (locked; log in with an SSH key)"),
    }
    if let Some(a) = &plan.admin {
        log.line(format!("  admin user {}", a.name));
        log.run(
            "admin user",
            &mut chroot(&["useradd", "-m", "-s", "/bin/bash", &a.name]),
        )?;
        if let Some(h) = &a.password_hash {
            log.run_redacted(
                "admin password",
                &mut chroot(&["usermod", "-p", h, &a.name]),
                &format!("chroot usermod -p <hash> {}", a.name),
            )?;
        }
        let home = format!("/home/{}", a.name);
        let owner = format!("{0}:{0}", a.name);
        log.run("admin home", &mut chroot(&["chown", "-R", &owner, &home]))?;
    }

    log.line("step 6/8: services");
    log.run(
        "enable services",
        &mut chroot(&[
            "systemctl",
            "enable",
            "systemd-networkd",
            "ssh",
            "chrony",
            "keel-hostd",
            "keel-firstboot",
        ]),
    )?;

    log.line("step 7/8: bootloader (GRUB for BIOS and UEFI)");
    let kver = std::fs::read_dir(target.join("lib/modules"))
        .map_err(io("reading /lib/modules"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .max()
        .ok_or_else(|| InstallError::Other("no kernel in the image".into()))?;
    if !target.join(format!("boot/initrd.img-{kver}")).exists() {
        log.run(
            "initramfs",
            &mut chroot(&["update-initramfs", "-c", "-k", &kver]),
        )?;
    }
    log.run(
        "grub-install bios",
        &mut chroot(&[
            "grub-install",
            "--target=i386-pc",
            "--boot-directory=/boot",
            &disk,
        ]),
    )?;
    log.run(
        "grub-install efi",
        &mut chroot(&[
            "grub-install",
            "--target=x86_64-efi",
            "--efi-directory=/boot/efi",
            "--boot-directory=/boot",
            "--removable",
            "--no-nvram",
        ]),
    )?;
    let cfg = target_grub_cfg(plan, &root_uuid, &kver).render();
    write_file(
        target,
        &RenderedFile::new("/boot/grub/grub.cfg", 0o644, cfg),
    )?;
    log.line(format!(
        "  wrote /boot/grub/grub.cfg (kernel {kver}, root UUID {root_uuid})"
    ));

    log.line(format!(
        "step 8/8: done: {} on {}; {} next",
        plan.fqdn,
        disk,
        match plan.reboot {
            Reboot::Reboot => "reboot",
            Reboot::Poweroff => "power off",
        }
    ));
    let _ = log.run("sync", &mut Command::new("sync"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_table() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/good/minimal.toml"
        ))
        .expect("minimal");
        let a = crate::load_answer(&text).expect("valid");
        let hw = crate::hw::Hardware {
            nics: vec![crate::hw::NicInfo {
                name: "ens3".into(),
                mac: "52:54:00:00:01:01".into(),
            }],
            disks: vec![crate::hw::DiskInfo {
                path: "/dev/vda".into(),
                size_bytes: 100 << 30,
                model: String::new(),
                serial: String::new(),
                partitions: 0,
            }],
        };
        let plan = crate::plan::plan(&a, Some(1), &hw).expect("plan");
        let args = sgdisk_args(&plan).join(" ");
        assert_eq!(
            args,
            "--zap-all --clear --new=1:0:+1M --typecode=1:ef02 --change-name=1:bios \
             --new=2:0:+512M --typecode=2:ef00 --change-name=2:efi \
             --new=3:0:+32G --typecode=3:8304 --change-name=3:root \
             --new=4:0:+4G --typecode=4:8200 --change-name=4:swap \
             --new=5:0:0 --typecode=5:8e00 --change-name=5:keel /dev/vda"
        );
        let g = target_grub_cfg(&plan, "u-1", "6.1.0-50-amd64").render();
        assert!(g.contains("linux /boot/vmlinuz-6.1.0-50-amd64 root=UUID=u-1 ro console=tty0 console=ttyS0,115200"), "{g}");
    }
}
