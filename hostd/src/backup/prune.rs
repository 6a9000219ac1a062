//! Retention: which of a VM's backups on a target a keep-policy keeps, and their deletion
//! (docs/backups.md, "Retention").
//!
//! Selection ([`select`], pure): backups newest first; `keep-last N` keeps the newest N; then
//! each periodic rule (hourly, daily, weekly, monthly, yearly, in local time) walks the
//! backups not yet decided, newest first, and keeps the newest backup of each period that has
//! no kept backup yet, until it has kept N. Then the chains: on a directory target a kept
//! incremental whose parents are not all kept is **merged** onto its nearest kept ancestor (or
//! into a full backup) and the parents between are removed ([`merge`]); on an sftp target, and
//! for a chain with a missing backup, the **chain rule** keeps every backup a kept incremental
//! depends on (its parent, the parent's parent… back to its full backup), with the reason.
//! Everything else is removed.
//!
//! Deletion ([`delete_dirs`]): newest first, so an incremental always goes before the backup it
//! is based on; each backup directory is first renamed to `.deleting-<id>` (one `rename(2)`,
//! fsync'ed), so it leaves the listing at once and a crash never leaves a listed backup with a
//! missing parent; the renamed directory is then removed, and leftovers of an interrupted prune
//! are finished by the next prune or delete of that VM.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use keel_api::backup::{
    BackupKind, BackupManifest, KeepPolicy, PruneEntry, PruneMerge, PruneRequest, PruneResult,
};

use super::{merge, store, targets};
use crate::error::{Error, Result};
use crate::tasks::TaskHandle;
use crate::Node;

/// The offset of local time from UTC at Unix time `t`, seconds (from the C library's time
/// zone: `TZ` or /etc/localtime).
#[allow(unsafe_code)]
pub fn local_offset(t: i64) -> i64 {
    let tt: libc::time_t = t as libc::time_t;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers refer to live, properly sized values for the call's duration.
    let r = unsafe { libc::localtime_r(&tt, &mut tm) };
    if r.is_null() {
        0
    } else {
        tm.tm_gmtoff as i64
    }
}

/// The period of a periodic rule a local time falls in: (key, label).
fn period(rule: &str, local: i64) -> (i64, String) {
    let days = local.div_euclid(86_400);
    let (y, m, d, h, _, _) = keel_api::time::utc_parts(local);
    match rule {
        "keep-hourly" => (
            local.div_euclid(3600),
            format!("{y:04}-{m:02}-{d:02} {h:02}h"),
        ),
        "keep-daily" => (days, format!("{y:04}-{m:02}-{d:02}")),
        "keep-weekly" => {
            // 1970-01-01 was a Thursday: Monday-based weekday = (days + 3) mod 7
            let monday = days - (days + 3).rem_euclid(7);
            let (wy, wm, wd, _, _, _) = keel_api::time::utc_parts(monday * 86_400);
            (monday, format!("week of {wy:04}-{wm:02}-{wd:02}"))
        }
        "keep-monthly" => (y * 12 + m, format!("{y:04}-{m:02}")),
        _ => (y, format!("{y:04}")),
    }
}

/// What a policy keeps and removes, newest first each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub kept: Vec<PruneEntry>,
    pub removed: Vec<PruneEntry>,
}

/// Apply `policy` to `backups` (any order); `offset(t)` gives local time's offset from UTC.
/// `merge`: kept incrementals are merged rather than keeping their parents (a target whose
/// files Keel can rewrite in place: a directory).
pub fn select(
    backups: &[BackupManifest],
    policy: &KeepPolicy,
    offset: &dyn Fn(i64) -> i64,
    merge: bool,
) -> Selection {
    let mut list: Vec<&BackupManifest> = backups.iter().collect();
    list.sort_by(|a, b| (b.start_time, &b.id).cmp(&(a.start_time, &a.id)));
    let n = list.len();
    let mut keep: Vec<Option<String>> = vec![None; n];
    for (rule, count) in policy.rules() {
        if count == 0 {
            continue;
        }
        if rule == "keep-last" {
            for k in keep.iter_mut().take(count as usize) {
                *k = Some("keep-last".into());
            }
            continue;
        }
        let periods: Vec<(i64, String)> = list
            .iter()
            .map(|b| period(rule, b.start_time + offset(b.start_time)))
            .collect();
        let mut covered: HashSet<i64> = (0..n)
            .filter(|&i| keep[i].is_some())
            .map(|i| periods[i].0)
            .collect();
        let mut taken = 0;
        for i in 0..n {
            if taken >= count {
                break;
            }
            if keep[i].is_some() || covered.contains(&periods[i].0) {
                continue;
            }
            covered.insert(periods[i].0);
            keep[i] = Some(format!("{rule} ({})", periods[i].1));
            taken += 1;
        }
    }
    // a kept incremental's chain: its parents are kept too (the chain rule) or, with `merge`,
    // the kept incremental is merged onto its nearest kept ancestor (or into a full backup)
    // and the parents between are removed; a chain with a missing backup is never merged
    let index: HashMap<&str, usize> = list
        .iter()
        .enumerate()
        .map(|(i, b)| (b.id.as_str(), i))
        .collect();
    let by_policy: Vec<bool> = keep.iter().map(Option::is_some).collect();
    let mut merges: Vec<Option<PruneMerge>> = vec![None; n];
    let mut absorbed: Vec<Option<String>> = vec![None; n];
    for i in 0..n {
        if !by_policy[i] || list[i].kind != BackupKind::Incremental {
            continue;
        }
        // the ancestors up to the nearest kept one, or up to the full backup
        let mut between = Vec::new();
        let mut onto = None;
        let mut whole = false;
        let mut cur = list[i].parent.as_deref();
        while let Some(p) = cur {
            let Some(&j) = index.get(p) else { break };
            if between.len() > n {
                break;
            }
            if by_policy[j] {
                onto = Some(j);
                whole = true;
                break;
            }
            between.push(j);
            if list[j].kind == BackupKind::Full {
                whole = true;
                break;
            }
            cur = list[j].parent.as_deref();
        }
        if between.is_empty() {
            continue;
        }
        if merge && whole {
            merges[i] = Some(PruneMerge {
                onto: onto.map(|j| list[j].id.clone()),
                absorbs: between.iter().map(|&j| list[j].id.clone()).collect(),
            });
            for &j in &between {
                absorbed[j].get_or_insert_with(|| list[i].id.clone());
            }
        } else {
            for &j in &between {
                if keep[j].is_none() {
                    keep[j] = Some(format!(
                        "needed by kept incremental {} (its chain)",
                        list[i].id
                    ));
                }
            }
        }
    }
    let mut sel = Selection {
        kept: Vec::new(),
        removed: Vec::new(),
    };
    for (i, (b, k)) in list.iter().zip(keep).enumerate() {
        let e = |reason: String, merge: Option<PruneMerge>| PruneEntry {
            id: b.id.clone(),
            kind: b.kind,
            start_time: b.start_time,
            reason,
            merge,
        };
        match (k, &absorbed[i]) {
            (Some(r), _) => {
                let m = merges[i].take();
                let r = match &m {
                    Some(PruneMerge {
                        onto: Some(o),
                        absorbs,
                    }) => format!(
                        "{r}; merged onto kept backup {o}, taking in {}",
                        absorbs.join(", ")
                    ),
                    Some(PruneMerge {
                        onto: None,
                        absorbs,
                    }) => format!(
                        "{r}; merged into a full backup, taking in {}",
                        absorbs.join(", ")
                    ),
                    None => r,
                };
                sel.kept.push(e(r, m));
            }
            (None, Some(into)) => sel
                .removed
                .push(e(format!("merged into kept backup {into}"), None)),
            (None, None) => sel
                .removed
                .push(e("not selected by the policy".into(), None)),
        }
    }
    sel
}

/// The backups that depend on `id` (incrementals whose chain contains it), newest first.
pub fn dependants(backups: &[BackupManifest], id: &str) -> Vec<String> {
    let parent: HashMap<&str, Option<&str>> = backups
        .iter()
        .map(|b| (b.id.as_str(), b.parent.as_deref()))
        .collect();
    let mut out: Vec<&BackupManifest> = backups
        .iter()
        .filter(|b| {
            let mut cur = b.parent.as_deref();
            let mut steps = 0;
            while let Some(p) = cur {
                if p == id {
                    return true;
                }
                steps += 1;
                if steps > backups.len() {
                    return false;
                }
                cur = parent.get(p).copied().flatten();
            }
            false
        })
        .collect();
    out.sort_by(|a, b| (b.start_time, &b.id).cmp(&(a.start_time, &a.id)));
    out.into_iter().map(|b| b.id.clone()).collect()
}

pub const DELETING: &str = ".deleting-";

/// Remove one backup directory: rename to `.deleting-<id>` (the backup leaves the listing at
/// once), fsync the VM directory, then remove the renamed directory.
pub fn delete_dir(vm_dir: &Path, id: &str) -> Result<()> {
    let src = vm_dir.join(id);
    let tmp = vm_dir.join(format!("{DELETING}{id}"));
    std::fs::rename(&src, &tmp)
        .map_err(|e| Error::Internal(format!("cannot rename {}: {e}", src.display())))?;
    store::fsync_path(vm_dir)?;
    std::fs::remove_dir_all(&tmp)
        .map_err(|e| Error::Internal(format!("cannot remove {}: {e}", tmp.display())))?;
    Ok(())
}

/// Delete backups in the given order (newest first: incrementals before their parents);
/// `log` after each. Stops at the first failure.
pub fn delete_dirs(vm_dir: &Path, ids: &[String], log: &dyn Fn(&str)) -> Result<()> {
    for id in ids {
        delete_dir(vm_dir, id)?;
        log(id);
    }
    Ok(())
}

/// Finish deletions a crash interrupted (`.deleting-*` directories); returns their ids.
pub fn finish_interrupted(vm_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(vm_dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = n.strip_prefix(DELETING) {
                if std::fs::remove_dir_all(e.path()).is_ok() {
                    out.push(id.to_string());
                }
            }
        }
    }
    out.sort();
    out
}

// ------------------------------------------------------------------ on a node

/// The retention answer for a VM's backups on a target now (no change).
pub fn plan(node: &Node, vmid: u32, target: &str, policy: &KeepPolicy) -> Result<PruneResult> {
    let t = targets::get(node, target)?;
    let all = super::run::manifests(node, &t, vmid)?;
    // a directory's backups are merged; an sftp target's files are never rewritten remotely
    let merge = targets::remote(node, &t)?.is_none();
    let s = select(&all, policy, &local_offset, merge);
    Ok(PruneResult {
        vmid,
        target: target.to_string(),
        dry_run: true,
        kept: s.kept,
        removed: s.removed,
    })
}

/// Check a prune request before anything happens: a policy that keeps something, a target
/// that exists (and is usable unless this is a dry run).
pub fn check(node: &Node, req: &PruneRequest) -> Result<KeepPolicy> {
    let p = req.policy();
    p.validate("")?;
    if req.dry_run {
        targets::get(node, &req.target)?;
    } else {
        targets::usable(node, &req.target)?;
    }
    Ok(p)
}

fn forget_verify(node: &Node, target: &str, vmid: u32, id: &str) -> Result<()> {
    targets::db(node)?.conn().execute(
        "DELETE FROM backup_verify WHERE target=?1 AND vmid=?2 AND id=?3",
        rusqlite::params![target, vmid, id],
    )?;
    Ok(())
}

/// Prune (inside a task): finish interrupted deletions, select again (the backups may have
/// changed since the request), delete the removed ones newest first.
pub fn run(
    node: &Node,
    vmid: u32,
    target: &str,
    policy: &KeepPolicy,
    task: &TaskHandle,
) -> Result<PruneResult> {
    let t = targets::usable(node, target)?;
    if let Some(r) = targets::remote(node, &t)? {
        // the same selection as a directory target's: a kept incremental keeps its parents;
        // removed newest first, so an interruption never leaves a kept backup without its parent
        let mut res = plan(node, vmid, target, policy)?;
        res.dry_run = false;
        task.log(format!(
            "prune of VM {vmid} on {target} ({}): keeping {}, removing {}",
            r.loc,
            res.kept.len(),
            res.removed.len()
        ));
        for k in &res.kept {
            task.log(format!("keep {}: {}", k.id, k.reason));
        }
        let conn = r.connect()?;
        for e in res.removed.iter().rev() {
            remove_remote(&conn, vmid, &e.id)?;
            task.log(format!("removed backup {}", e.id));
            forget_verify(node, target, vmid, &e.id)?;
        }
        return Ok(res);
    }
    let vdir = store::vm_dir(&t.path, vmid);
    for id in finish_interrupted(&vdir) {
        task.log(format!("finished the interrupted deletion of backup {id}"));
    }
    let eng = super::run::engine(node);
    let log = |l: String| task.log(l);
    for id in merge::finish_interrupted(&eng, &t.path, vmid, &log)? {
        task.log(format!("finished the interrupted merge of backup {id}"));
        forget_verify(node, target, vmid, &id)?;
    }
    let mut r = plan(node, vmid, target, policy)?;
    r.dry_run = false;
    task.log(format!(
        "prune of VM {vmid} on {target}: keeping {}, removing {}",
        r.kept.len(),
        r.removed.len()
    ));
    for k in &r.kept {
        task.log(format!("keep {}: {}", k.id, k.reason));
    }
    // merges first, oldest first, each complete before any parent it takes in is removed
    for k in r.kept.iter().rev() {
        let Some(m) = &k.merge else { continue };
        merge::merge(&eng, &t.path, vmid, &k.id, m.onto.as_deref(), &log)?;
        task.log(format!(
            "backup {} merged {}, taking in {}",
            k.id,
            match &m.onto {
                Some(o) => format!("onto {o}"),
                None => "into a full backup".into(),
            },
            m.absorbs.join(", ")
        ));
        // its files changed: checked again by the next verify
        forget_verify(node, target, vmid, &k.id)?;
    }
    let ids: Vec<String> = r.removed.iter().map(|e| e.id.clone()).collect();
    delete_dirs(&vdir, &ids, &|id| {
        task.log(format!("removed backup {id}"));
        if let Err(e) = forget_verify(node, target, vmid, id) {
            task.log(format!(
                "warning: cannot forget the verify state of {id}: {e}"
            ));
        }
    })?;
    Ok(r)
}

/// Remove one backup from an sftp target: renamed out of the listing first (`.deleting-<id>`),
/// then removed, so an interruption never leaves a half-deleted backup listed.
fn remove_remote(conn: &super::sftp::Conn, vmid: u32, id: &str) -> Result<()> {
    let vdir = conn.base.join(vmid.to_string());
    let gone = vdir.join(format!(".deleting-{id}"));
    if conn.sftp.stat(&gone).is_ok() {
        conn.remove_tree(&gone)?;
    }
    conn.sftp
        .rename(&vdir.join(id), &gone, None)
        .map_err(|e| Error::Conflict(format!("cannot remove backup {id}: {}", e.message())))?;
    conn.remove_tree(&gone)
}

/// Check a single deletion: the backup exists, no other backup depends on it (409 naming
/// them). Returns the target's path.
pub fn check_delete(node: &Node, vmid: u32, id: &str, target: &str) -> Result<String> {
    super::run::check_backup_id(id)?;
    let t = targets::usable(node, target)?;
    let all = super::run::manifests(node, &t, vmid)?;
    if !all.iter().any(|b| b.id == id) {
        return Err(Error::NotFound(format!(
            "backup {id} of VM {vmid} does not exist on target {target:?} (`keel backup list {vmid}` shows them)"
        )));
    }
    let deps = dependants(&all, id);
    if !deps.is_empty() {
        return Err(Error::Conflict(format!(
            "backup {id} cannot be deleted: incremental backup(s) {} depend on it; delete those first (newest first) or prune with a policy",
            deps.join(", ")
        )));
    }
    Ok(t.path)
}

/// Delete one backup (inside a task), checked again.
pub fn run_delete(node: &Node, vmid: u32, id: &str, target: &str, task: &TaskHandle) -> Result<()> {
    let path = check_delete(node, vmid, id, target)?;
    if let Some(r) = targets::remote_named(node, target)? {
        remove_remote(&r.connect()?, vmid, id)?;
        task.log(format!("removed backup {id} from {}", r.loc));
        return forget_verify(node, target, vmid, id);
    }
    let vdir = store::vm_dir(&path, vmid);
    for x in finish_interrupted(&vdir) {
        task.log(format!("finished the interrupted deletion of backup {x}"));
    }
    delete_dir(&vdir, id)?;
    forget_verify(node, target, vmid, id)?;
    task.log(format!("removed backup {id} of VM {vmid} from {target}"));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// 2026-12-02 12:00:00 UTC (a Wednesday).
    const T0: i64 = 1_796_212_800;
    const H: i64 = 3600;
    const D: i64 = 86_400;

    fn b(id: &str, t: i64, parent: Option<&str>) -> BackupManifest {
        BackupManifest {
            version: 1,
            id: id.into(),
            vmid: 100,
            node: "n1".into(),
            kind: if parent.is_some() {
                BackupKind::Incremental
            } else {
                BackupKind::Full
            },
            parent: parent.map(str::to_string),
            checkpoint: None,
            live: true,
            start_time: t,
            end_time: t + 10,
            spec: serde_json::json!({}),
            domain_xml: String::new(),
            disks: vec![],
        }
    }

    fn utc(_: i64) -> i64 {
        0
    }

    fn ids(e: &[PruneEntry]) -> Vec<&str> {
        e.iter().map(|x| x.id.as_str()).collect()
    }

    fn pol(f: impl FnOnce(&mut KeepPolicy)) -> KeepPolicy {
        let mut p = KeepPolicy::default();
        f(&mut p);
        p
    }

    #[test]
    fn t0_is_the_documented_time() {
        assert_eq!(keel_api::time::utc(T0, 'T'), "2026-12-02T12:00:00");
    }

    /// Fulls only: each rule alone and combined, over fixed times (table test).
    #[test]
    fn selection_table() {
        // six full backups: today 12:00 and 11:30, yesterday 23:00, 3 days ago,
        // 10 days ago, 40 days ago (previous month), 400 days ago (previous year)
        let all = vec![
            b("a", T0, None),
            b("b", T0 - H / 2, None),
            b("c", T0 - 13 * H, None),
            b("d", T0 - 3 * D, None),
            b("e", T0 - 10 * D, None),
            b("f", T0 - 40 * D, None),
            b("g", T0 - 400 * D, None),
        ];
        type Case = (&'static str, KeepPolicy, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            ("last 2", pol(|p| p.keep_last = Some(2)), vec!["a", "b"]),
            (
                "last 100",
                pol(|p| p.keep_last = Some(100)),
                vec!["a", "b", "c", "d", "e", "f", "g"],
            ),
            // a and b share 12:00/11:00 hours? a=12h, b=11h: two hours
            ("hourly 2", pol(|p| p.keep_hourly = Some(2)), vec!["a", "b"]),
            // days: a (12-02), c (12-01), d (11-29)
            (
                "daily 3",
                pol(|p| p.keep_daily = Some(3)),
                vec!["a", "c", "d"],
            ),
            // weeks (Mon 11-30): a; (Mon 11-23): d (Sun 11-29)... c is Tue 12-01 same week as a
            ("weekly 2", pol(|p| p.keep_weekly = Some(2)), vec!["a", "d"]),
            (
                "monthly 3",
                pol(|p| p.keep_monthly = Some(3)),
                vec!["a", "d", "f"],
            ),
            ("yearly 5", pol(|p| p.keep_yearly = Some(5)), vec!["a", "g"]),
            // last 1 keeps a; daily then skips day 12-02 (covered by a) and takes c, d
            (
                "last 1 + daily 2",
                pol(|p| {
                    p.keep_last = Some(1);
                    p.keep_daily = Some(2)
                }),
                vec!["a", "c", "d"],
            ),
            // last 2 (a, b); monthly 2: 2026-12 covered, takes d (11-29) and f (10-23)
            (
                "last 2 + monthly 2",
                pol(|p| {
                    p.keep_last = Some(2);
                    p.keep_monthly = Some(2)
                }),
                vec!["a", "b", "d", "f"],
            ),
            (
                "daily 1 + yearly 2",
                pol(|p| {
                    p.keep_daily = Some(1);
                    p.keep_yearly = Some(2)
                }),
                vec!["a", "g"],
            ),
        ];
        for (name, p, want) in cases {
            let s = select(&all, &p, &utc, false);
            assert_eq!(ids(&s.kept), want, "{name}: {s:?}");
            assert_eq!(s.kept.len() + s.removed.len(), all.len(), "{name}");
            for r in &s.removed {
                assert_eq!(r.reason, "not selected by the policy", "{name}");
            }
        }
        let s = select(&all, &pol(|p| p.keep_daily = Some(3)), &utc, false);
        assert_eq!(s.kept[1].reason, "keep-daily (2026-12-01)");
        let s = select(&all, &pol(|p| p.keep_weekly = Some(1)), &utc, false);
        assert_eq!(s.kept[0].reason, "keep-weekly (week of 2026-11-30)");
    }

    /// With merging (a directory target), a kept incremental takes in the parents that are not
    /// kept instead of keeping them: onto its nearest kept ancestor, or into a full backup.
    #[test]
    fn merges_instead_of_the_chain_rule() {
        // f1 <- i1 <- i2 <- i3 <- i4 (newest)
        let all = vec![
            b("f1", T0 - 4 * D, None),
            b("i1", T0 - 3 * D, Some("f1")),
            b("i2", T0 - 2 * D, Some("i1")),
            b("i3", T0 - D, Some("i2")),
            b("i4", T0, Some("i3")),
        ];
        let merge = |onto: Option<&str>, absorbs: &[&str]| {
            Some(PruneMerge {
                onto: onto.map(str::to_string),
                absorbs: absorbs.iter().map(|s| s.to_string()).collect(),
            })
        };
        // keep-last 1: i4 becomes a full backup, everything else goes
        let s = select(&all, &pol(|p| p.keep_last = Some(1)), &utc, true);
        assert_eq!(ids(&s.kept), vec!["i4"]);
        assert_eq!(s.kept[0].merge, merge(None, &["i3", "i2", "i1", "f1"]));
        assert_eq!(
            s.kept[0].reason,
            "keep-last; merged into a full backup, taking in i3, i2, i1, f1"
        );
        assert_eq!(ids(&s.removed), vec!["i3", "i2", "i1", "f1"]);
        assert!(s
            .removed
            .iter()
            .all(|r| r.reason == "merged into kept backup i4"));
        // keep-last 1 + keep-monthly 2: i4, and November's newest (i2 on 11-30): i4 merged
        // onto i2 (taking i3 in), i2 into a full backup (taking i1 and f1 in)
        let s = select(
            &all,
            &pol(|p| {
                p.keep_last = Some(1);
                p.keep_monthly = Some(2);
            }),
            &utc,
            true,
        );
        assert_eq!(ids(&s.kept), vec!["i4", "i2"], "{s:?}");
        assert_eq!(s.kept[0].merge, merge(Some("i2"), &["i3"]));
        assert_eq!(
            s.kept[0].reason,
            "keep-last; merged onto kept backup i2, taking in i3"
        );
        assert_eq!(s.kept[1].merge, merge(None, &["i1", "f1"]));
        assert_eq!(ids(&s.removed), vec!["i3", "i1", "f1"]);
        assert_eq!(s.removed[0].reason, "merged into kept backup i4");
        assert_eq!(s.removed[1].reason, "merged into kept backup i2");
        // keep-last 3: i4 on i3 and i3 on i2 unchanged, i2 into a full backup
        let s = select(&all, &pol(|p| p.keep_last = Some(3)), &utc, true);
        assert_eq!(ids(&s.kept), vec!["i4", "i3", "i2"]);
        assert_eq!(s.kept[0].merge, None);
        assert_eq!(s.kept[1].merge, None);
        assert_eq!(s.kept[2].merge, merge(None, &["i1", "f1"]));
        // a kept full backup in the middle: the kept incremental is merged onto it
        let mut two = all.clone();
        two.insert(2, b("f2", T0 - 2 * D - H, None));
        two[3].parent = Some("f2".into());
        two[4].parent = Some("i2".into());
        let s = select(&two, &pol(|p| p.keep_last = Some(1)), &utc, true);
        assert_eq!(s.kept[0].merge, merge(None, &["i3", "i2", "f2"]));
        assert_eq!(ids(&s.removed), vec!["i3", "i2", "f2", "i1", "f1"]);
        assert_eq!(s.removed[3].reason, "not selected by the policy");
        // a broken chain (a parent missing) is never merged: the chain rule keeps what is there
        let broken = vec![
            b("i9", T0, Some("i8")),
            b("i8", T0 - H, Some("gone")),
            b("f0", T0 - D, None),
        ];
        let s = select(&broken, &pol(|p| p.keep_last = Some(1)), &utc, true);
        assert_eq!(ids(&s.kept), vec!["i9", "i8"]);
        assert_eq!(s.kept[0].merge, None);
    }

    /// Input order does not matter; the answer is newest first.
    #[test]
    fn order_independent() {
        let mut all = vec![
            b("x1", T0 - D, None),
            b("x3", T0, None),
            b("x2", T0 - H, None),
        ];
        let s1 = select(&all, &pol(|p| p.keep_last = Some(2)), &utc, false);
        all.reverse();
        let s2 = select(&all, &pol(|p| p.keep_last = Some(2)), &utc, false);
        assert_eq!(s1, s2);
        assert_eq!(ids(&s1.kept), vec!["x3", "x2"]);
        assert_eq!(ids(&s1.removed), vec!["x1"]);
    }

    /// A kept incremental keeps its whole chain; a chain with no kept member goes entirely.
    #[test]
    fn chain_rule() {
        // chain 1: f1 <- i1 <- i2 ; chain 2: f2 <- i3 <- i4 (newest)
        let all = vec![
            b("f1", T0 - 5 * H, None),
            b("i1", T0 - 4 * H, Some("f1")),
            b("i2", T0 - 3 * H, Some("i1")),
            b("f2", T0 - 2 * H, None),
            b("i3", T0 - H, Some("f2")),
            b("i4", T0, Some("i3")),
        ];
        let s = select(&all, &pol(|p| p.keep_last = Some(1)), &utc, false);
        assert_eq!(ids(&s.kept), vec!["i4", "i3", "f2"]);
        assert_eq!(
            s.kept[1].reason,
            "needed by kept incremental i4 (its chain)"
        );
        assert_eq!(
            s.kept[2].reason,
            "needed by kept incremental i4 (its chain)"
        );
        assert_eq!(ids(&s.removed), vec!["i2", "i1", "f1"]);
        // keep-last 4 selects i4 i3 f2 i2 → i1 and f1 are needed by i2
        let s = select(&all, &pol(|p| p.keep_last = Some(4)), &utc, false);
        assert_eq!(ids(&s.kept), vec!["i4", "i3", "f2", "i2", "i1", "f1"]);
        assert!(s.removed.is_empty());
        assert!(s.kept[4].reason.contains("i2"), "{:?}", s.kept[4]);
        // hourly 1 and a daily over days: only the newest of today (i4) and its chain
        let s = select(&all, &pol(|p| p.keep_daily = Some(7)), &utc, false);
        assert_eq!(ids(&s.kept), vec!["i4", "i3", "f2"]);
        // a chain whose parent is gone (broken) does not panic; the missing one is ignored
        let broken = vec![b("i9", T0, Some("gone")), b("f0", T0 - D, None)];
        let s = select(&broken, &pol(|p| p.keep_last = Some(1)), &utc, false);
        assert_eq!(ids(&s.kept), vec!["i9"]);
        assert_eq!(ids(&s.removed), vec!["f0"]);
    }

    /// Local time decides the day: 23:30 UTC is the next day at UTC+2.
    #[test]
    fn periods_in_local_time() {
        // T0 - 12h30 = 2026-12-01 23:30 UTC; T0 - 13h30 = 22:30 UTC
        let all = vec![
            b("late", T0 - 12 * H - H / 2, None),
            b("early", T0 - 13 * H - H / 2, None),
        ];
        let daily2 = pol(|p| p.keep_daily = Some(2));
        // UTC: same day → only "late"
        assert_eq!(ids(&select(&all, &daily2, &utc, false).kept), vec!["late"]);
        // UTC+2: 01:30 on 12-02 and 00:30 on 12-02 → same day again
        assert_eq!(
            ids(&select(&all, &daily2, &|_| 2 * H, false).kept),
            vec!["late"]
        );
        // UTC+1: 00:30 on 12-02 and 23:30 on 12-01 → two days
        assert_eq!(
            ids(&select(&all, &daily2, &|_| H, false).kept),
            vec!["late", "early"]
        );
    }

    #[test]
    fn dependants_are_transitive() {
        let all = vec![
            b("f1", T0 - 3 * H, None),
            b("i1", T0 - 2 * H, Some("f1")),
            b("i2", T0 - H, Some("i1")),
            b("f2", T0, None),
        ];
        assert_eq!(dependants(&all, "f1"), vec!["i2", "i1"]);
        assert_eq!(dependants(&all, "i1"), vec!["i2"]);
        assert!(dependants(&all, "i2").is_empty());
        assert!(dependants(&all, "f2").is_empty());
    }

    #[test]
    fn policy_validation() {
        assert!(KeepPolicy::default().validate("").is_err());
        assert!(pol(|p| p.keep_last = Some(0)).validate("").is_err());
        assert!(pol(|p| p.keep_daily = Some(1)).validate("").is_ok());
        let e = pol(|p| p.keep_weekly = Some(20_000))
            .validate("retention.")
            .unwrap_err();
        assert_eq!(e.field, "retention.keep_weekly");
    }

    /// Deletion renames first: an interrupted delete leaves a `.deleting-` directory the
    /// listing skips and the next prune finishes.
    #[test]
    fn delete_renames_then_removes_and_leftovers_are_finished() {
        let dir = tempfile::tempdir().unwrap();
        let vdir = dir.path().join("100");
        for (id, p) in [("f1", None), ("i1", Some("f1"))] {
            let d = vdir.join(id);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join(store::MANIFEST),
                serde_json::to_vec(&b(id, T0, p)).unwrap(),
            )
            .unwrap();
        }
        let tp = dir.path().display().to_string();
        assert_eq!(store::list(&tp, 100).len(), 2);
        // a crash right after the rename of i1
        std::fs::rename(vdir.join("i1"), vdir.join(".deleting-i1")).unwrap();
        let l = store::list(&tp, 100);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].id, "f1");
        assert_eq!(finish_interrupted(&vdir), vec!["i1"]);
        assert!(!vdir.join(".deleting-i1").exists());
        let logged = std::cell::RefCell::new(Vec::new());
        delete_dirs(&vdir, &["f1".into()], &|id| {
            logged.borrow_mut().push(id.to_string())
        })
        .unwrap();
        assert_eq!(logged.into_inner(), vec!["f1"]);
        assert!(store::list(&tp, 100).is_empty());
        assert_eq!(std::fs::read_dir(&vdir).unwrap().count(), 0);
        assert!(delete_dir(&vdir, "nope").is_err());
    }
}
