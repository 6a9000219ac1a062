//! The engine commands of backups, each with its timeout, through `keel-runner`: virsh's
//! `backup-begin`, `domjobinfo`, `checkpoint-list`/`checkpoint-delete` (libvirt's backup and
//! checkpoint API has no binding in the `virt` crate 0.5), and `qemu-img`.

use std::time::Duration;

use keel_runner::{Cmd, RunError, Runner};

use crate::error::{Error, Result};

const VIRSH_T: Duration = Duration::from_secs(60);
/// A disk copy or flatten: bounded, but generous (hours for very large disks).
pub const COPY_T: Duration = Duration::from_secs(6 * 3600);

pub fn engine_err(e: RunError) -> Error {
    Error::Internal(e.to_string())
}

pub struct Engine<'a> {
    pub runner: &'a dyn Runner,
    pub uri: String,
}

/// One disk of a domain, from its live XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomDisk {
    pub target: String,
    pub path: String,
    pub format: String,
}

/// The guest disks (not CD-ROMs or floppies) of a domain XML, in device order.
pub fn domain_disks(xml: &str) -> Result<Vec<DomDisk>> {
    let el =
        crate::xml::Element::parse(xml).map_err(|e| Error::Internal(format!("domain XML: {e}")))?;
    let mut out = Vec::new();
    let Some(devs) = el.find("devices") else {
        return Ok(out);
    };
    for d in devs.find_all("disk") {
        if d.get_attr("device").unwrap_or("disk") != "disk" {
            continue;
        }
        let target = d
            .find("target")
            .and_then(|t| t.get_attr("dev"))
            .unwrap_or_default()
            .to_string();
        let path = d
            .find("source")
            .and_then(|s| s.get_attr("file").or_else(|| s.get_attr("dev")))
            .unwrap_or_default()
            .to_string();
        let format = d
            .find("driver")
            .and_then(|s| s.get_attr("type"))
            .unwrap_or("raw")
            .to_string();
        out.push(DomDisk {
            target,
            path,
            format,
        });
    }
    Ok(out)
}

/// State of a libvirt job as `domjobinfo --rawstats` prints it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobStats {
    /// 0 none, 1 bounded, 2 unbounded, 3 completed, 4 failed, 5 cancelled.
    pub kind: u32,
    pub processed: u64,
    pub total: u64,
    pub error: Option<String>,
}

/// Parse `virsh domjobinfo --rawstats` output (`Job type: N` then `key=value` lines).
pub fn parse_jobstats(out: &str) -> JobStats {
    let mut j = JobStats::default();
    let (mut dp, mut dt, mut xp, mut xt) = (None, None, None, None);
    for l in out.lines() {
        let l = l.trim();
        if let Some(v) = l.strip_prefix("Job type:") {
            let v = v.trim();
            j.kind = v.parse().unwrap_or(match v {
                "Bounded" => 1,
                "Unbounded" => 2,
                "Completed" => 3,
                "Failed" => 4,
                "Cancelled" => 5,
                _ => 0,
            });
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            continue;
        };
        let n = v.trim().parse::<u64>().ok();
        match k.trim() {
            "disk_processed" => dp = n,
            "disk_total" => dt = n,
            "data_processed" => xp = n,
            "data_total" => xt = n,
            "errmsg" => j.error = Some(v.trim().to_string()),
            _ => {}
        }
    }
    j.processed = dp.or(xp).unwrap_or(0);
    j.total = dt.or(xt).unwrap_or(0);
    j
}

/// The `<domainbackup>` document of a push backup into `dir`; `incremental` names the
/// checkpoint the changes are taken since.
pub fn backup_xml(disks: &[(String, String)], incremental: Option<&str>) -> String {
    use crate::xml::Element;
    let mut ds = Element::new("disks");
    for (target, file) in disks {
        ds.push(
            Element::new("disk")
                .attr("name", target)
                .attr("backup", "yes")
                .attr("type", "file")
                .child(Element::new("target").attr("file", file))
                .child(Element::new("driver").attr("type", "qcow2")),
        );
    }
    Element::new("domainbackup")
        .attr("mode", "push")
        .child_opt(incremental.map(|c| Element::new("incremental").text(c)))
        .child(ds)
        .render()
}

/// The `<domaincheckpoint>` created in the same call: a bitmap on each listed disk.
pub fn checkpoint_xml(name: &str, targets: &[String]) -> String {
    use crate::xml::Element;
    let mut ds = Element::new("disks");
    for t in targets {
        ds.push(
            Element::new("disk")
                .attr("name", t)
                .attr("checkpoint", "bitmap"),
        );
    }
    Element::new("domaincheckpoint")
        .child(Element::new("name").text(name))
        .child(ds)
        .render()
}

impl Engine<'_> {
    fn virsh(&self, args: &[&str]) -> Cmd {
        let mut v = vec!["virsh", "-q", "-c", self.uri.as_str()];
        v.extend_from_slice(args);
        Cmd::argv(&v).timeout(VIRSH_T)
    }

    pub fn backup_begin(&self, dom: &str, backup_file: &str, checkpoint_file: &str) -> Result<()> {
        self.runner
            .run_ok(&self.virsh(&["backup-begin", dom, backup_file, checkpoint_file]))
            .map_err(|e| Error::Internal(format!("libvirt refused the backup: {e}")))?;
        Ok(())
    }

    /// The running job's stats (kind 0 when none).
    pub fn job(&self, dom: &str) -> Result<JobStats> {
        let out = self
            .runner
            .run_ok(&self.virsh(&["domjobinfo", dom, "--rawstats"]))
            .map_err(engine_err)?;
        Ok(parse_jobstats(&out))
    }

    /// The last completed (or failed) job's stats.
    pub fn completed_job(&self, dom: &str) -> Result<JobStats> {
        let out = self
            .runner
            .run_ok(&self.virsh(&["domjobinfo", dom, "--completed", "--anystats", "--rawstats"]))
            .map_err(engine_err)?;
        Ok(parse_jobstats(&out))
    }

    pub fn abort_job(&self, dom: &str) {
        let _ = self.runner.run(&self.virsh(&["domjobabort", dom]));
    }

    /// Checkpoint names, parents before children.
    pub fn checkpoints(&self, dom: &str) -> Result<Vec<String>> {
        let out = self
            .runner
            .run_ok(&self.virsh(&["checkpoint-list", dom, "--name", "--topological"]))
            .map_err(engine_err)?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Delete one checkpoint (its bitmap merged into its parent's by libvirt). Never with
    /// `--metadata`: on a broken chain that crashed libvirtd 9.0 (backup-ha-probe).
    pub fn delete_checkpoint(&self, dom: &str, name: &str) -> Result<()> {
        self.runner
            .run_ok(&self.virsh(&["checkpoint-delete", dom, name]))
            .map_err(engine_err)?;
        Ok(())
    }

    /// Drop libvirt's record of one checkpoint whose bitmap is already gone from the disk.
    /// One checkpoint, never `--children`: `--children --metadata` on a broken chain crashed
    /// libvirtd 9.0 (backup-ha-probe).
    pub fn delete_checkpoint_metadata(&self, dom: &str, name: &str) -> Result<()> {
        self.runner
            .run_ok(&self.virsh(&["checkpoint-delete", dom, name, "--metadata"]))
            .map_err(engine_err)?;
        Ok(())
    }

    /// Virtual size of an image, bytes (`-U`: the VM may hold it open).
    pub fn virtual_size(&self, path: &str) -> Result<u64> {
        let out = self
            .runner
            .run_ok(
                &Cmd::argv(&["qemu-img", "info", "-U", "--output=json", path])
                    .timeout(Duration::from_secs(60)),
            )
            .map_err(engine_err)?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| Error::Internal(format!("qemu-img info {path}: {e}")))?;
        v["virtual-size"]
            .as_u64()
            .ok_or_else(|| Error::Internal(format!("qemu-img info {path}: no virtual-size")))
    }

    /// Point an incremental's backing file at `backing` without touching data (`rebase -u`).
    pub fn rebase_unsafe(&self, file: &str, backing: &str) -> Result<()> {
        self.runner
            .run_ok(
                &Cmd::argv(&[
                    "qemu-img", "rebase", "-u", "-F", "qcow2", "-b", backing, file,
                ])
                .timeout(Duration::from_secs(120)),
            )
            .map_err(engine_err)?;
        Ok(())
    }

    /// Rebase `file` onto `backing` (relative to the file's directory), or onto nothing, in
    /// safe mode: what the image shows is unchanged, the clusters where the old chain and the
    /// new one differ are written into it first, the header last.
    pub fn rebase(&self, file: &str, backing: Option<&str>) -> Result<()> {
        let mut a = vec!["qemu-img", "rebase", "-f", "qcow2"];
        match backing {
            Some(b) => a.extend(["-F", "qcow2", "-b", b]),
            None => a.extend(["-b", ""]),
        }
        a.push(file);
        self.runner
            .run_ok(&Cmd::argv(&a).timeout(COPY_T))
            .map_err(engine_err)?;
        Ok(())
    }

    /// Copy (and flatten a backing chain of) `src` into `dst`. `existing`: `dst` exists
    /// already (a volume libvirt created) and is written in place.
    pub fn convert(
        &self,
        src: &str,
        src_fmt: &str,
        dst: &str,
        dst_fmt: &str,
        existing: bool,
    ) -> Result<()> {
        let mut a = vec!["qemu-img", "convert", "-U", "-f", src_fmt, "-O", dst_fmt];
        if existing {
            a.push("-n");
        }
        a.extend_from_slice(&[src, dst]);
        self.runner
            .run_ok(&Cmd::argv(&a).timeout(COPY_T))
            .map_err(engine_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobstats_parse_progress_and_errors() {
        let j = parse_jobstats("Job type: 2\n\noperation=9\ntime_elapsed=120\ndisk_total=67108864\ndisk_processed=1048576\n");
        assert_eq!((j.kind, j.processed, j.total), (2, 1_048_576, 67_108_864));
        let j = parse_jobstats("Job type: 4\n\nerrmsg=No space left on device\n");
        assert_eq!(j.kind, 4);
        assert_eq!(j.error.as_deref(), Some("No space left on device"));
        assert_eq!(parse_jobstats("Job type: None\n").kind, 0);
    }

    #[test]
    fn domain_disks_skip_cdroms() -> Result<()> {
        let xml = r#"<domain><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/p/a.qcow2'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/p/x.iso'/><target dev='sda' bus='sata'/></disk>
<disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/vg/lv'/><target dev='vdb' bus='virtio'/></disk>
</devices></domain>"#;
        let d = domain_disks(xml)?;
        assert_eq!(d.len(), 2);
        assert_eq!(
            (
                d[0].target.as_str(),
                d[0].path.as_str(),
                d[0].format.as_str()
            ),
            ("vda", "/p/a.qcow2", "qcow2")
        );
        assert_eq!((d[1].target.as_str(), d[1].format.as_str()), ("vdb", "raw"));
        let b = backup_xml(&[("vda".into(), "/t/vda.qcow2".into())], Some("keel-1"));
        assert!(b.contains("<incremental>keel-1</incremental>"), "{b}");
        assert!(
            b.contains("file=\"/t/vda.qcow2\"") || b.contains("file='/t/vda.qcow2'"),
            "{b}"
        );
        Ok(())
    }
}
