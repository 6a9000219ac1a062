//! What the DRBD configuration on a node says about its safety, read from the files drbdadm
//! reads (`/etc/drbd.d/*.res` and the `common` section of `global_common.conf`): for each
//! resource, its minor(s), whether it allows two primaries and whether it fences its peer
//! (`fencing resource-and-stonith`). `keel cluster verify` compares that with `/proc/drbd`.
//!
//! A scan, not a parser of DRBD's whole grammar: it tracks braces and statements, which is
//! enough for Keel's own files and for the usual hand-written ones. A resource whose options
//! it cannot see (an `include` of another file, say) is reported as the file says, and the
//! `common` section's `fencing` and `allow-two-primaries` apply to every resource that does
//! not set its own, as in drbdadm.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// One resource as its configuration file states it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceConf {
    pub name: String,
    /// Every `minor N` / `/dev/drbdN` of its `device` statements (one per host section).
    pub minors: Vec<u32>,
    /// `allow-two-primaries yes` in its `net` section (or in `common`'s).
    pub two_primaries: bool,
    /// The `fencing` policy of its `disk` section (or `common`'s): `resource-and-stonith`,
    /// `resource-only`, `dont-care`; `None` when neither sets one (DRBD's default: no fencing).
    pub fencing: Option<String>,
}

impl ResourceConf {
    /// The peer is fenced through the cluster before this side continues alone.
    pub fn fences(&self) -> bool {
        self.fencing.as_deref() == Some("resource-and-stonith")
    }
}

#[derive(Default)]
struct Options {
    two_primaries: Option<bool>,
    fencing: Option<String>,
}

fn words(stmt: &str) -> Vec<&str> {
    stmt.split_whitespace()
        .map(|w| w.trim_matches('"'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The resources in one configuration text with the options they set themselves, and the
/// `common` section's options.
fn scan(text: &str) -> (Vec<(ResourceConf, Options)>, Options) {
    // strip comments
    let clean: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out: Vec<(ResourceConf, Options)> = Vec::new();
    let mut common = Options::default();
    // the section path: "resource", "common", then sub-sections
    let mut stack: Vec<String> = Vec::new();
    let mut stmt = String::new();
    for ch in clean.chars() {
        match ch {
            '{' => {
                let w = words(&stmt);
                let head = w.first().copied().unwrap_or("").to_string();
                if stack.is_empty() && head == "resource" {
                    out.push((
                        ResourceConf {
                            name: w.get(1).copied().unwrap_or("").to_string(),
                            ..Default::default()
                        },
                        Options::default(),
                    ));
                }
                stack.push(head);
                stmt.clear();
            }
            '}' => {
                stack.pop();
                stmt.clear();
            }
            ';' => {
                let taken = std::mem::take(&mut stmt);
                let w = words(&taken);
                let Some(key) = w.first().copied() else {
                    continue;
                };
                let opts = match stack.first().map(String::as_str) {
                    Some("resource") => match out.last_mut() {
                        Some((_, o)) => o,
                        None => continue,
                    },
                    Some("common") => &mut common,
                    _ => continue,
                };
                match key {
                    "allow-two-primaries" => {
                        opts.two_primaries = Some(w.get(1).is_none_or(|v| *v == "yes"));
                    }
                    "fencing" => opts.fencing = w.get(1).map(|v| v.to_string()),
                    "device" => {
                        if let Some((r, _)) = out.last_mut() {
                            if stack.first().map(String::as_str) == Some("resource") {
                                let minor = w
                                    .iter()
                                    .position(|x| *x == "minor")
                                    .and_then(|i| w.get(i + 1))
                                    .and_then(|m| m.parse().ok())
                                    .or_else(|| {
                                        w.get(1)
                                            .and_then(|d| d.strip_prefix("/dev/drbd"))
                                            .and_then(|m| m.parse().ok())
                                    });
                                if let Some(m) = minor {
                                    if !r.minors.contains(&m) {
                                        r.minors.push(m);
                                    }
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            c => stmt.push(c),
        }
    }
    (out, common)
}

/// Every resource of the configuration texts given (the `.res` files and
/// `global_common.conf`), with `common`'s options applied where a resource sets none.
pub fn resources(texts: &[String]) -> Vec<ResourceConf> {
    let mut all = Vec::new();
    let mut common = Options::default();
    for t in texts {
        let (r, c) = scan(t);
        all.extend(r);
        if c.fencing.is_some() {
            common.fencing = c.fencing;
        }
        if c.two_primaries.is_some() {
            common.two_primaries = c.two_primaries;
        }
    }
    all.into_iter()
        .map(|(mut r, o)| {
            r.two_primaries = o.two_primaries.or(common.two_primaries).unwrap_or(false);
            r.fencing = o.fencing.or_else(|| common.fencing.clone());
            r
        })
        .collect()
}

/// Read `dir/*.res` and `dir/global_common.conf` (unreadable files are skipped: verify
/// reports what it can see).
pub fn read_dir(dir: &Path) -> Vec<ResourceConf> {
    let mut texts = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut paths: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "res")
                    || p.file_name().is_some_and(|n| n == "global_common.conf")
            })
            .collect();
        paths.sort();
        for p in paths {
            if let Ok(t) = std::fs::read_to_string(&p) {
                texts.push(t);
            }
        }
    }
    resources(&texts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn keel_res(dual: bool) -> String {
        let mut r = crate::drbd::tests::pair();
        r.minor = 3;
        r.dual_primary = dual;
        r.render()
    }

    #[test]
    fn keels_own_file_fences_and_says_when_it_is_dual_primary() {
        let r = resources(&[keel_res(true)]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "vmstore");
        assert_eq!(r[0].minors, vec![3]);
        assert!(r[0].two_primaries && r[0].fences());
        let r = resources(&[keel_res(false)]);
        assert!(!r[0].two_primaries && r[0].fences());
    }

    #[test]
    fn a_hand_written_resource_without_fencing_and_commons_defaults() {
        let hand = "# by hand\nresource r0 {\n  net { allow-two-primaries; }\n  on a { device /dev/drbd0; disk /dev/sdb; address 10.0.0.1:7788; meta-disk internal; }\n  on b { device /dev/drbd0; disk /dev/sdb; address 10.0.0.2:7788; meta-disk internal; }\n}\n";
        let r = resources(&[hand.to_string()]);
        assert_eq!(r[0].name, "r0");
        assert_eq!(r[0].minors, vec![0]);
        assert!(r[0].two_primaries);
        assert_eq!(r[0].fencing, None);
        assert!(!r[0].fences());
        // common's fencing applies to a resource that sets none…
        let common =
            "global { usage-count no; }\ncommon {\n  disk { fencing resource-and-stonith; }\n}\n";
        let r = resources(&[common.to_string(), hand.to_string()]);
        assert!(r[0].fences(), "{r:?}");
        // …but not over the resource's own
        let own = hand.replace(
            "allow-two-primaries;",
            "allow-two-primaries; } disk { fencing dont-care;",
        );
        let r = resources(&[common.to_string(), own]);
        assert_eq!(r[0].fencing.as_deref(), Some("dont-care"));
        // a comment is not a statement
        let commented = hand.replace("allow-two-primaries;", "# allow-two-primaries;\n");
        assert!(!resources(&[commented])[0].two_primaries);
    }
}
