//! A line diff between two rendered file sets, for review before an apply: per file
//! `--- PATH`/`+++ PATH` then lines marked ` `, `-`, `+` (a longest-common-subsequence diff;
//! networkd files are a few dozen lines).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::render::NetFile;

/// How one file changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Modified,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub change: Change,
    /// Unified-style lines: ` ` kept, `-` removed, `+` added.
    pub lines: Vec<String>,
}

fn lcs_lines(a: &[&str], b: &[&str]) -> Vec<String> {
    let (n, m) = (a.len(), b.len());
    let mut t = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i][j] = if a[i] == b[j] {
                t[i + 1][j + 1] + 1
            } else {
                t[i + 1][j].max(t[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(format!(" {}", a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || t[i][j + 1] >= t[i + 1][j]) {
            out.push(format!("+{}", b[j]));
            j += 1;
        } else {
            out.push(format!("-{}", a[i]));
            i += 1;
        }
    }
    out
}

/// The files that differ between `old` and `new`, by path.
pub fn diff(old: &[NetFile], new: &[NetFile]) -> Vec<FileDiff> {
    let o: BTreeMap<&str, &str> = old
        .iter()
        .map(|f| (f.path.as_str(), f.content.as_str()))
        .collect();
    let n: BTreeMap<&str, &str> = new
        .iter()
        .map(|f| (f.path.as_str(), f.content.as_str()))
        .collect();
    let mut paths: Vec<&str> = o.keys().chain(n.keys()).copied().collect();
    paths.sort();
    paths.dedup();
    let mut out = Vec::new();
    for p in paths {
        let (a, b) = (o.get(p), n.get(p));
        if a == b {
            continue;
        }
        let al: Vec<&str> = a.map(|x| x.lines().collect()).unwrap_or_default();
        let bl: Vec<&str> = b.map(|x| x.lines().collect()).unwrap_or_default();
        out.push(FileDiff {
            path: p.to_string(),
            change: match (a, b) {
                (None, _) => Change::Added,
                (_, None) => Change::Removed,
                _ => Change::Modified,
            },
            lines: lcs_lines(&al, &bl),
        });
    }
    out
}

/// The diff as one text (`--- a/PATH`, `+++ b/PATH`, lines).
pub fn to_text(d: &[FileDiff]) -> String {
    let mut s = String::new();
    for f in d {
        let a = if f.change == Change::Added {
            "/dev/null".to_string()
        } else {
            f.path.clone()
        };
        let b = if f.change == Change::Removed {
            "/dev/null".to_string()
        } else {
            f.path.clone()
        };
        s.push_str(&format!("--- {a}\n+++ {b}\n"));
        for l in &f.lines {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}
