//! `keel-installer`: validate an answer file, or render the provisioning files for one node.

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
    }
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
