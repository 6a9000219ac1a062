//! Placement rules of HA VMs (docs/ha.md): node affinity, together, apart. Stored in the config
//! store (`/ha/rules/<id>`) and rendered as Pacemaker constraints ([`clusterd::ha::put_rule`]).
//! A rule that conflicts with another, or that could not hold after the loss of a node, is
//! refused when it is added, not discovered at failover.

use std::collections::{BTreeMap, BTreeSet};

use clusterd::form;
use clusterd::ha as cha;
use keel_api::ha::{HaRule, HaRuleKind};

use super::{members, records, store};
use crate::db::Store;
use crate::error::{Error, Result};
use crate::Node;

fn rule_key(id: &str) -> String {
    format!("/ha/rules/{id}")
}

pub(super) fn all(st: &Store) -> Result<Vec<HaRule>> {
    st.list("/ha/rules")?
        .iter()
        .map(|e| super::decode(&e.key, &e.value))
        .collect()
}

/// The nodes each VM may run on under the hard node-affinity rules (absent: any member).
fn allowed(rules: &[&HaRule], members: &BTreeSet<String>) -> BTreeMap<u32, BTreeSet<String>> {
    let mut out: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for r in rules
        .iter()
        .filter(|r| r.hard && r.kind == HaRuleKind::NodeAffinity)
    {
        let nodes: BTreeSet<String> = r.nodes.iter().map(|n| n.node.clone()).collect();
        for vm in &r.vms {
            let cur = out.entry(*vm).or_insert_with(|| members.clone());
            *cur = cur.intersection(&nodes).cloned().collect();
        }
    }
    out
}

/// Is `new` valid on its own and together with `existing`? `ha`: the HA VMs' ids.
pub fn check(
    new: &HaRule,
    existing: &[HaRule],
    ha: &BTreeSet<u32>,
    members: &[String],
) -> std::result::Result<(), String> {
    let id_ok = !new.id.is_empty()
        && new.id.len() <= 40
        && new
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !id_ok {
        return Err(format!(
            "rule id {:?}: use 1-40 letters, digits, '-' and '_'",
            new.id
        ));
    }
    if existing.iter().any(|r| r.id == new.id) {
        return Err(format!("a rule {:?} exists already", new.id));
    }
    let mut vms = new.vms.clone();
    vms.sort();
    vms.dedup();
    if vms.len() != new.vms.len() {
        return Err("a VM is listed twice".into());
    }
    let min = if new.kind == HaRuleKind::NodeAffinity {
        1
    } else {
        2
    };
    if vms.len() < min {
        let a = if new.kind == HaRuleKind::Apart {
            "an"
        } else {
            "a"
        };
        return Err(format!(
            "{a} {} rule needs at least {min} VM(s)",
            new.kind.as_str()
        ));
    }
    if let Some(v) = vms.iter().find(|v| !ha.contains(v)) {
        return Err(format!(
            "VM {v} is not highly available: turn HA on for it first (keel vm ha {v} on)"
        ));
    }
    let mset: BTreeSet<String> = members.iter().cloned().collect();
    match new.kind {
        HaRuleKind::NodeAffinity => {
            if new.nodes.is_empty() {
                return Err("a node-affinity rule needs at least one node".into());
            }
            let mut seen = BTreeSet::new();
            for n in &new.nodes {
                if !mset.contains(&n.node) {
                    return Err(format!("{:?} is not a member", n.node));
                }
                if !seen.insert(n.node.clone()) {
                    return Err(format!("node {:?} is listed twice", n.node));
                }
                if n.priority > 1_000_000 {
                    return Err("a node's priority is at most 1000000".into());
                }
            }
        }
        _ if !new.nodes.is_empty() => {
            return Err(format!(
                "{} rules name VMs only, no nodes",
                new.kind.as_str()
            ))
        }
        _ => {}
    }
    let all: Vec<&HaRule> = existing.iter().chain(std::iter::once(new)).collect();
    let allow = allowed(&all, &mset);
    if let Some((vm, _)) = allow.iter().find(|(_, s)| s.is_empty()) {
        return Err(format!(
            "the hard node-affinity rules of VM {vm} leave it no node to run on"
        ));
    }
    let can = |vm: &u32| allow.get(vm).cloned().unwrap_or_else(|| mset.clone());
    let pairs = |r: &HaRule| -> Vec<(u32, u32)> {
        let mut p = vec![];
        for (i, a) in r.vms.iter().enumerate() {
            for b in r.vms.iter().skip(i + 1) {
                p.push(((*a).min(*b), (*a).max(*b)));
            }
        }
        p
    };
    let hard = |k: HaRuleKind| {
        all.iter()
            .filter(move |r| r.hard && r.kind == k)
            .copied()
            .collect::<Vec<_>>()
    };
    for t in hard(HaRuleKind::Together) {
        for a in hard(HaRuleKind::Apart) {
            if let Some((x, y)) = pairs(t).into_iter().find(|p| pairs(a).contains(p)) {
                return Err(format!(
                    "VMs {x} and {y} would have to run together (rule {}) and apart (rule {})",
                    t.id, a.id
                ));
            }
        }
        let common = t
            .vms
            .iter()
            .map(can)
            .reduce(|x, y| x.intersection(&y).cloned().collect())
            .unwrap_or_default();
        if common.is_empty() {
            return Err(format!(
                "the VMs of rule {} must run together, but their hard node-affinity rules share no node",
                t.id
            ));
        }
    }
    for a in hard(HaRuleKind::Apart) {
        let nodes: BTreeSet<String> = a.vms.iter().flat_map(can).collect();
        // after the loss of one node, every VM of the rule still needs a node of its own
        if a.vms.len() + 1 > nodes.len() {
            return Err(format!(
                "rule {}: {} VMs kept apart on {} node(s) cannot all run after a node fails; make it soft, or add nodes",
                a.id,
                a.vms.len(),
                nodes.len()
            ));
        }
    }
    Ok(())
}

pub fn list(node: &Node) -> Result<Vec<HaRule>> {
    all(&store(node)?)
}

/// Check a new rule against the others, then store it and add its constraints.
pub fn add(node: &Node, rule: &HaRule) -> Result<HaRule> {
    let st = store(node)?;
    let ha: BTreeSet<u32> = records(&st)?.iter().map(|r| r.vmid).collect();
    check(rule, &all(&st)?, &ha, &members(node)?)
        .map_err(|m| Error::Conflict(format!("placement rule refused: {m}")))?;
    st.create(
        &rule_key(&rule.id),
        &serde_json::to_value(rule).map_err(|e| Error::Internal(e.to_string()))?,
    )?;
    if let Err(e) = form::apply_cib(node.cluster.runner.as_ref(), &cha::put_rule(rule)) {
        let _ = st.delete(&rule_key(&rule.id));
        return Err(e.into());
    }
    tracing::info!(rule = %rule.id, "placement rule added");
    Ok(rule.clone())
}

pub fn remove(node: &Node, id: &str) -> Result<()> {
    let st = store(node)?;
    let key = rule_key(id);
    let e = st
        .get(&key)?
        .ok_or_else(|| Error::NotFound(format!("no placement rule {id:?}")))?;
    let rule: HaRule = super::decode(&key, &e.value)?;
    form::apply_cib(node.cluster.runner.as_ref(), &cha::delete_rule(&rule))?;
    st.delete(&key)?;
    Ok(())
}

/// The rules naming `vmid` (HA off is refused while there are any).
pub fn naming(st: &Store, vmid: u32) -> Result<Vec<String>> {
    Ok(all(st)?
        .into_iter()
        .filter(|r| r.vms.contains(&vmid))
        .map(|r| r.id)
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use keel_api::ha::HaRuleNode;

    fn rule(id: &str, kind: HaRuleKind, vms: &[u32], nodes: &[&str], hard: bool) -> HaRule {
        HaRule {
            id: id.into(),
            kind,
            vms: vms.to_vec(),
            nodes: nodes
                .iter()
                .map(|n| HaRuleNode {
                    node: n.to_string(),
                    priority: 100,
                })
                .collect(),
            hard,
        }
    }
    fn members(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }
    fn ha(v: &[u32]) -> BTreeSet<u32> {
        v.iter().copied().collect()
    }

    #[test]
    fn a_good_rule_passes() {
        let r = rule("web-apart", HaRuleKind::Apart, &[1, 2], &[], true);
        check(&r, &[], &ha(&[1, 2]), &members(3)).unwrap();
        let p = rule(
            "db-on-n1",
            HaRuleKind::NodeAffinity,
            &[1],
            &["n1", "n2"],
            true,
        );
        check(&p, &[r], &ha(&[1, 2]), &members(3)).unwrap();
    }

    #[test]
    fn shape_errors() {
        let m = members(3);
        let h = ha(&[1, 2, 3]);
        let e = |r: HaRule| check(&r, &[], &h, &m).unwrap_err();
        assert!(e(rule("bad id!", HaRuleKind::Apart, &[1, 2], &[], false)).contains("rule id"));
        assert!(e(rule("a", HaRuleKind::Apart, &[1], &[], false)).contains("at least 2"));
        assert!(e(rule("a", HaRuleKind::Apart, &[1, 1], &[], false)).contains("twice"));
        assert!(e(rule("a", HaRuleKind::Apart, &[1, 9], &[], false))
            .contains("VM 9 is not highly available"));
        assert!(
            e(rule("a", HaRuleKind::NodeAffinity, &[1], &[], false)).contains("at least one node")
        );
        assert!(
            e(rule("a", HaRuleKind::NodeAffinity, &[1], &["n9"], false)).contains("not a member")
        );
        assert!(e(rule("a", HaRuleKind::Together, &[1, 2], &["n1"], false)).contains("no nodes"));
    }

    #[test]
    fn conflicts_are_refused_when_added() {
        let m = members(3);
        let h = ha(&[1, 2, 3]);
        let together = rule("t", HaRuleKind::Together, &[1, 2], &[], true);
        let apart = rule("a", HaRuleKind::Apart, &[2, 1, 3], &[], true);
        let e = check(&apart, std::slice::from_ref(&together), &h, &m).unwrap_err();
        assert!(
            e.contains("VMs 1 and 2 would have to run together (rule t) and apart (rule a)"),
            "{e}"
        );
        // soft rules never conflict
        let soft = rule("s", HaRuleKind::Apart, &[1, 2], &[], false);
        check(&soft, std::slice::from_ref(&together), &h, &m).unwrap();
        // hard node sets that do not meet
        let on1 = rule("on1", HaRuleKind::NodeAffinity, &[1], &["n1"], true);
        let on2 = rule("on2", HaRuleKind::NodeAffinity, &[2], &["n2"], true);
        let e = check(&together, &[on1.clone(), on2], &h, &m).unwrap_err();
        assert!(e.contains("share no node"), "{e}");
        // two hard node-affinity rules of one VM with no common node
        let on3 = rule("on3", HaRuleKind::NodeAffinity, &[1], &["n3"], true);
        let e = check(&on3, &[on1], &h, &m).unwrap_err();
        assert!(e.contains("leave it no node"), "{e}");
    }

    #[test]
    fn apart_must_survive_a_node_loss() {
        let h = ha(&[1, 2, 3]);
        let three = rule("a", HaRuleKind::Apart, &[1, 2, 3], &[], true);
        let e = check(&three, &[], &h, &members(3)).unwrap_err();
        assert!(e.contains("3 VMs kept apart on 3 node(s)"), "{e}");
        check(&three, &[], &h, &members(4)).unwrap();
        let soft = rule("a", HaRuleKind::Apart, &[1, 2, 3], &[], false);
        check(&soft, &[], &h, &members(3)).unwrap();
    }

    #[test]
    fn constraints_rendered() {
        let r = rule("web", HaRuleKind::Apart, &[1, 2, 3], &[], true);
        let c = cha::rule_constraints(&r);
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|e| e.get_attr("score") == Some("-INFINITY")));
        let p = rule("p", HaRuleKind::NodeAffinity, &[1], &["n1", "n2"], true);
        let c = cha::rule_constraints(&p);
        assert_eq!(c.len(), 3, "two scores and the -INFINITY rule");
        let xml = c[2].render();
        assert!(
            xml.contains(r#"operation="ne" value="n1""#) && xml.contains(r#"value="n2""#),
            "{xml}"
        );
    }
}
