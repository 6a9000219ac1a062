//! What `cluster init` and `join` need installed on this node, checked before either changes
//! anything: a node missing keel-clusterd used to start corosync and Pacemaker, swap its
//! certificate and only then fail ("config store unavailable"), half-clustered.
//!
//! Must not: install anything (the error says what to install and how).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::ClusterState;
use crate::error::{Error, Result};

/// Programs the cluster workflows run, with the Debian package that ships each.
const PROGRAMS: &[(&str, &str)] = &[
    ("corosync", "corosync"),
    ("corosync-cfgtool", "corosync"),
    ("corosync-quorumtool", "corosync"),
    ("pacemakerd", "pacemaker"),
    ("crm_node", "pacemaker"),
    ("cibadmin", "pacemaker-cli-utils"),
    ("crm_mon", "pacemaker-cli-utils"),
];

/// Where systemd looks for unit files Keel needs.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// Whether `name` is an executable file in one of `path`'s directories.
fn on_path(name: &str, path: &OsStr) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path).any(|d| {
        std::fs::metadata(d.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// What is missing, one line each with how to fix it (empty: nothing).
/// `units`: with systemd as the service manager, the directories its unit files live in.
pub(super) fn missing(
    clusterd_bin: Option<&Path>,
    path: &OsStr,
    units: Option<&[PathBuf]>,
) -> Vec<String> {
    let mut out = Vec::new();
    match clusterd_bin {
        None => out.push(
            "keel-clusterd (the replicated config store) is not installed next to keel-hostd: \
             build it (`cargo build --release -p keel-clusterd`) and install it beside keel-hostd \
             (`bash scripts/setup.sh` does both), or set cluster.clusterd_bin in hostd.toml"
                .to_string(),
        ),
        Some(p) if !p.is_file() => out.push(format!(
            "keel-clusterd {} does not exist (cluster.clusterd_bin in hostd.toml)",
            p.display()
        )),
        Some(_) => {}
    }
    let mut packages: Vec<&str> = Vec::new();
    let mut progs: Vec<&str> = Vec::new();
    for (prog, pkg) in PROGRAMS {
        if !on_path(prog, path) {
            progs.push(prog);
            if !packages.contains(pkg) {
                packages.push(pkg);
            }
        }
    }
    if !progs.is_empty() {
        out.push(format!(
            "{} not found on keel-hostd's PATH: install them (`apt-get install {}`)",
            progs.join(", "),
            packages.join(" ")
        ));
    }
    if let Some(dirs) = units {
        let unit = "keel-clusterd.service";
        if !dirs.iter().any(|d| d.join(unit).is_file()) {
            out.push(format!(
                "systemd has no {unit}: install iso/installer/files/etc/systemd/system/{unit} \
                 into /etc/systemd/system and run `systemctl daemon-reload` (`bash scripts/setup.sh` does)"
            ));
        }
    }
    out
}

/// Refuse (409) when anything `cluster init`/`join` needs is missing; nothing is changed.
pub(super) fn check(cs: &ClusterState, what: &str) -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = UNIT_DIRS.iter().map(PathBuf::from).collect();
    let units = (cs.svc.kind() == "systemd").then_some(dirs.as_slice());
    let m = missing(cs.clusterd_bin.as_deref(), &path, units);
    if m.is_empty() {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "{what} needs what this node lacks (nothing was changed): {}",
        m.join("; ")
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn exe(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn names_what_is_missing_and_how_to_install_it() {
        let dir = std::env::temp_dir().join(format!("keel-prereq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("bin");
        let units = dir.join("units");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&units).unwrap();
        let path = bin.clone().into_os_string();

        // a node set up with keel-hostd and keel only, no cluster stack
        let m = missing(None, &path, None);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m[0].contains("keel-clusterd") && m[0].contains("scripts/setup.sh"),
            "{m:?}"
        );
        assert!(
            m[1].contains("corosync, corosync-cfgtool, corosync-quorumtool, pacemakerd")
                && m[1].contains("apt-get install corosync pacemaker pacemaker-cli-utils"),
            "{m:?}"
        );

        // everything but crm_mon, a non-executable file does not count
        let clusterd = exe(&bin, "keel-clusterd");
        for (p, _) in PROGRAMS.iter().filter(|(p, _)| *p != "crm_mon") {
            exe(&bin, p);
        }
        std::fs::write(bin.join("crm_mon"), "").unwrap();
        let m = missing(Some(&clusterd), &path, None);
        assert_eq!(
            m,
            vec!["crm_mon not found on keel-hostd's PATH: install them (`apt-get install pacemaker-cli-utils`)"]
        );
        exe(&bin, "crm_mon");
        assert!(missing(Some(&clusterd), &path, None).is_empty());

        // a configured binary that is not there; systemd without Keel's unit
        let m = missing(
            Some(&bin.join("nope")),
            &path,
            Some(std::slice::from_ref(&units)),
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].contains("nope does not exist"), "{m:?}");
        assert!(m[1].contains("keel-clusterd.service"), "{m:?}");
        std::fs::write(units.join("keel-clusterd.service"), "").unwrap();
        assert!(missing(Some(&clusterd), &path, Some(&[units])).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
