//! `keel-installer`: validate an answer file, render the provisioning files for one node, build
//! the installer ISO, run the install program (on the ISO) and the first-boot agent (on a node).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use installer::hw::{DiskInfo, Hardware, NicInfo};
use installer::render::{self, RenderedFile};
use installer::{Error, Issue};

#[derive(Parser)]
#[command(
    name = "keel-installer",
    about = "Keel's installer: answer files and provisioning plans"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum TargetArg {
    Debian,
    Rhel,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check an answer file; exit 0 when valid, 1 when not.
    Validate {
        file: PathBuf,
        /// Print {"valid": bool, "errors": [{"path", "message"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Render the files for one node into DIR (paths under DIR mirror the target system).
    Plan {
        file: PathBuf,
        #[arg(long)]
        node_index: Option<u32>,
        /// JSON list of {"name", "mac"}.
        #[arg(long)]
        nics: PathBuf,
        /// JSON list of {"path", "size_bytes", "model", "serial", "partitions"}.
        #[arg(long)]
        disks: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value = "debian")]
        target: TargetArg,
    },
    /// Build the hybrid BIOS+UEFI installer ISO (the answer file, if given, is embedded).
    BuildIso {
        #[arg(long)]
        answer: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Extra kernel parameter for the installer's boot entries (repeatable), e.g.
        /// keel.answer_url=https://… keel.answer_fingerprint=AB:CD:…
        #[arg(long = "kernel-arg")]
        kernel_args: Vec<String>,
        /// The product rootfs recipe (iso/installer of the source tree).
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../iso/installer"))]
        recipe: PathBuf,
        /// Where keel-hostd, keel, keel-installer (and keel-clusterd) are; default: next to this
        /// program.
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        #[arg(long, default_value = "/var/cache/keel/installer")]
        cache: PathBuf,
        /// Print the build report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The install program (runs on the booted installer ISO; erases the disk the answer selects).
    Install {
        /// Running from the installer medium (set by the ISO's systemd unit).
        #[arg(long)]
        live: bool,
        /// Use this answer file instead of looking for one.
        #[arg(long)]
        answer: Option<PathBuf>,
        #[arg(long, default_value = "/mnt/target")]
        target: PathBuf,
        /// The medium's keel/ directory.
        #[arg(long, default_value = "/mnt/keel/iso/keel")]
        image_dir: PathBuf,
        /// Validate and plan against this machine, print the plan, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Allow a real install outside the installer ISO (without keel.live on the kernel
        /// command line).
        #[arg(long)]
        not_live_ok: bool,
    },
    /// The first-boot agent (keel-firstboot.service on an installed node).
    Firstboot,
}

fn issues_of(r: Result<installer::answer::Answer, Error>) -> Vec<Issue> {
    match r {
        Ok(_) => vec![],
        Err(Error::Invalid(i)) => i.0,
    }
}

fn print_issues(issues: &[Issue]) {
    for i in issues {
        eprintln!("{i}");
    }
}

fn write_files(out: &Path, files: &[RenderedFile]) -> Result<()> {
    for f in files {
        let rel = f.path.trim_start_matches('/');
        let p = out.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&p, &f.content).with_context(|| format!("writing {}", p.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode))
                .with_context(|| format!("chmod {}", p.display()))?;
        }
        println!("{}", p.display());
    }
    Ok(())
}

fn run() -> Result<ExitCode> {
    match Cli::parse().cmd {
        Cmd::Validate { file, json } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let issues = issues_of(installer::load_answer(&text));
            if json {
                let v = serde_json::json!({ "valid": issues.is_empty(), "errors": issues });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if issues.is_empty() {
                println!("{}: valid", file.display());
            } else {
                print_issues(&issues);
            }
            Ok(if issues.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Plan {
            file,
            node_index,
            nics,
            disks,
            out,
            target,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let nics: Vec<NicInfo> = serde_json::from_str(
                &std::fs::read_to_string(&nics)
                    .with_context(|| format!("reading {}", nics.display()))?,
            )
            .with_context(|| format!("parsing {}", nics.display()))?;
            let disks: Vec<DiskInfo> = serde_json::from_str(
                &std::fs::read_to_string(&disks)
                    .with_context(|| format!("reading {}", disks.display()))?,
            )
            .with_context(|| format!("parsing {}", disks.display()))?;
            let hw = Hardware { nics, disks };
            let planned = installer::parse_answer(&text)
                .and_then(|a| installer::plan::plan(&a, node_index, &hw));
            let plan = match planned {
                Ok(p) => p,
                Err(Error::Invalid(i)) => {
                    print_issues(&i.0);
                    return Ok(ExitCode::from(1));
                }
            };
            let files = match target {
                TargetArg::Debian => render::debian::render(&plan),
                TargetArg::Rhel => match render::rhel::render(&plan) {
                    Ok(ks) => vec![RenderedFile::new("/ks.cfg", 0o600, ks)],
                    Err(Error::Invalid(i)) => {
                        print_issues(&i.0);
                        return Ok(ExitCode::from(1));
                    }
                },
            };
            let mut plan_json = serde_json::to_string_pretty(&plan)?;
            plan_json.push('\n');
            let mut all = files;
            all.push(RenderedFile::new("/keel-plan.json", 0o600, plan_json));
            write_files(&out, &all)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::BuildIso {
            answer,
            out,
            kernel_args,
            recipe,
            bin_dir,
            cache,
            json,
        } => {
            let answer = match answer {
                Some(p) => Some(
                    std::fs::read_to_string(&p)
                        .with_context(|| format!("reading {}", p.display()))?,
                ),
                None => None,
            };
            let bin_dir = match bin_dir {
                Some(d) => d,
                None => std::env::current_exe()?
                    .parent()
                    .map(Path::to_path_buf)
                    .context("locating this program's directory")?,
            };
            let report = installer::iso::build(&installer::iso::BuildOptions {
                answer,
                out,
                recipe,
                bin_dir,
                cache,
                kernel_args,
            })?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{}: {} MiB (rootfs {:.0}s, binaries {:.0}s, assembly {:.0}s, total {:.0}s)",
                    report.iso.display(),
                    report.bytes >> 20,
                    report.rootfs_seconds,
                    report.bins_seconds,
                    report.assemble_seconds,
                    report.total_seconds
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Install {
            live,
            answer,
            target,
            image_dir,
            dry_run,
            not_live_ok,
        } => {
            let on_medium = installer::system::KernelArgs::read().live;
            if !dry_run && !on_medium && !not_live_ok {
                anyhow::bail!(
                    "refusing to install: this is not the installer ISO (no keel.live on the kernel command line); use --dry-run to check an answer against this machine, or --not-live-ok if you really mean it"
                );
            }
            Ok(code(installer::program::run(
                &installer::program::InstallOptions {
                    live: live && on_medium,
                    answer,
                    target,
                    image_dir,
                    dry_run,
                },
            )))
        }
        Cmd::Firstboot => {
            let mut log = installer::install::Log::new(None);
            Ok(if installer::firstboot::run(&mut log) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

fn main() -> ExitCode {
    match run() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keel-installer: {e:#}");
            ExitCode::from(2)
        }
    }
}
