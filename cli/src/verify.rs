//! `keel cluster verify`: the findings of `GET /api/v1/cluster/verify` as a table (or JSON);
//! an error finding makes the command fail.

use anyhow::{bail, Result};
use keel_api::verify::{Severity, VerifyReport};

use crate::client::{typed, Client};
use crate::output;

pub async fn verify(c: &Client, json: bool) -> Result<()> {
    let v = c.get(&["cluster", "verify"], &[]).await?;
    let r: VerifyReport = typed(v.clone())?;
    if json {
        output::print_json(&v);
    } else {
        print!("{}", table(&r));
    }
    if r.errors > 0 {
        bail!(
            "cluster {}: {} error(s), {} warning(s)",
            r.cluster,
            r.errors,
            r.warnings
        );
    }
    Ok(())
}

/// The human form: one row per finding, its action below it, then a summary line.
pub fn table(r: &VerifyReport) -> String {
    let mut s = String::new();
    if !r.findings.is_empty() {
        s.push_str(&format!(
            "{:<8} {:<15} {:<12} {:<32} MESSAGE\n",
            "SEVERITY", "CODE", "NODE", "OBJECT"
        ));
    }
    for f in &r.findings {
        let sev = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "warning",
        };
        s.push_str(&format!(
            "{:<8} {:<15} {:<12} {:<32} {}\n{:<8} {:<15} {:<12} {:<32} -> {}\n",
            sev,
            f.code,
            f.node.as_deref().unwrap_or("-"),
            f.object,
            f.message,
            "",
            "",
            "",
            "",
            f.action
        ));
    }
    s.push_str(&format!(
        "cluster {} checked by {} ({} of its members answered: {}): {} error(s), {} warning(s)\n",
        r.cluster,
        r.checked_by,
        r.nodes.len(),
        r.nodes.join(", "),
        r.errors,
        r.warnings
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_api::verify::Finding;

    #[test]
    fn the_table_names_code_node_object_and_action() {
        let r = VerifyReport {
            cluster: "c".into(),
            checked_by: "n1".into(),
            nodes: vec!["n1".into(), "n2".into()],
            findings: vec![Finding {
                code: "EKEYPERM".into(),
                severity: Severity::Error,
                node: Some("n2".into()),
                object: "/etc/corosync/authkey".into(),
                message: "mode 0644".into(),
                action: "chmod it".into(),
            }],
            errors: 1,
            warnings: 0,
        };
        let t = table(&r);
        assert!(t.contains("ERROR    EKEYPERM        n2"), "{t}");
        assert!(t.contains("-> chmod it"), "{t}");
        assert!(t.ends_with("1 error(s), 0 warning(s)\n"), "{t}");
    }
}
