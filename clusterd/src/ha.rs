//! HA VMs as Pacemaker resources: each VM one `ocf:heartbeat:VirtualDomain` primitive
//! (`keel-vm-<vmid>`) whose `config` is the domain XML that hostd materializes on every node
//! from the config store. Pacemaker restarts it on a survivor when its node dies (after
//! fencing), and may live-migrate it (`allow-migrate`).
//!
//! [`primitive`] renders one resource, [`put`]/[`delete`]/[`set_target_role`] are the
//! `cibadmin` calls, [`from_resources`] reads the HA VMs back from
//! `cibadmin --query --scope resources`.

use keel_xml::Element;

use crate::cib::CibUpdate;

/// Prefix of every HA VM's resource id.
pub const PREFIX: &str = "keel-vm-";
/// Seconds between monitor operations: the guest's own death is noticed this fast (a node's
/// death is corosync's token timeout, not this).
pub const MONITOR_S: u32 = 5;
/// Stop timeout: VirtualDomain asks the guest to shut down (ACPI) and destroys it when it is
/// still running shortly before this timeout.
pub const STOP_TIMEOUT_S: u32 = 60;
/// Stickiness: a recovered VM stays on the survivor when its node comes back.
pub const STICKINESS: u32 = 100;

/// One HA VM as Pacemaker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaVm {
    pub vmid: u32,
    /// The domain XML file VirtualDomain starts from (the same path on every node).
    pub config: String,
    /// Pacemaker's resource priority: when not every HA VM can run, higher ones win.
    pub priority: u32,
    /// Failures on one node before the VM is moved away from it (Pacemaker's
    /// `migration-threshold`; 0 = never moved for failures alone).
    pub max_restarts: u32,
    /// `target-role`: the VM should run (`true`) or stay stopped.
    pub started: bool,
    /// libvirt URI of the target of a live migration, `%n` standing for its node name
    /// (`qemu+tls://%n/system…`: the cluster CA's TLS); the memory stream uses QEMU's TLS too.
    /// `None`: the resource cannot be live-migrated (Pacemaker stops and starts it).
    pub remoteuri: Option<String>,
    /// Extra `virsh migrate` options (`--unsafe` where libvirt cannot tell the storage is
    /// shared); `--tls` is always given.
    pub migrate_extra: Option<String>,
}

/// The resource id of VM `vmid`.
pub fn resource_id(vmid: u32) -> String {
    format!("{PREFIX}{vmid}")
}

/// The vmid of a Keel HA resource id.
pub fn vmid_of(id: &str) -> Option<u32> {
    id.strip_prefix(PREFIX)?.parse().ok()
}

fn nvpair(set: &str, name: &str, value: impl ToString) -> Element {
    Element::new("nvpair")
        .attr("id", format!("{set}-{name}"))
        .attr("name", name)
        .attr("value", value)
}

fn op(id: &str, name: &str, interval: &str, timeout: u32) -> Element {
    Element::new("op")
        .attr("id", format!("{id}-{name}-{interval}"))
        .attr("name", name)
        .attr("interval", interval)
        .attr("timeout", format!("{timeout}s"))
}

/// The `target-role` value for `started`.
pub fn target_role(started: bool) -> &'static str {
    if started {
        "Started"
    } else {
        "Stopped"
    }
}

/// The VirtualDomain primitive of `v`.
pub fn primitive(v: &HaVm) -> Element {
    let id = resource_id(v.vmid);
    let ia = format!("{id}-instance_attributes");
    let ma = format!("{id}-meta_attributes");
    let mut inst = Element::new("instance_attributes")
        .attr("id", &ia)
        .child(nvpair(&ia, "config", &v.config))
        .child(nvpair(&ia, "hypervisor", "qemu:///system"))
        .child(nvpair(&ia, "force_stop", "false"));
    if let Some(u) = &v.remoteuri {
        inst = inst.child(nvpair(&ia, "remoteuri", u)).child(nvpair(
            &ia,
            "migrate_options",
            match &v.migrate_extra {
                Some(x) => format!("--tls {x}"),
                None => "--tls".to_string(),
            },
        ));
    }
    Element::new("primitive")
        .attr("id", &id)
        .attr("class", "ocf")
        .attr("provider", "heartbeat")
        .attr("type", "VirtualDomain")
        .child(inst)
        .child(
            Element::new("meta_attributes")
                .attr("id", &ma)
                .child(nvpair(&ma, "target-role", target_role(v.started)))
                .child(nvpair(&ma, "allow-migrate", v.remoteuri.is_some()))
                .child(nvpair(&ma, "priority", v.priority))
                .child(nvpair(&ma, "migration-threshold", v.max_restarts))
                .child(nvpair(&ma, "resource-stickiness", STICKINESS)),
        )
        .child(
            Element::new("operations")
                .child(op(&id, "start", "0s", 90))
                .child(op(&id, "stop", "0s", STOP_TIMEOUT_S))
                .child(op(&id, "monitor", &format!("{MONITOR_S}s"), 30))
                .child(op(&id, "migrate_to", "0s", 300))
                .child(op(&id, "migrate_from", "0s", 120)),
        )
}

/// The beginning of the id of every constraint that ties VM `vmid` to its storage.
fn storage_prefix(vmid: u32) -> String {
    format!("{}-storage-", resource_id(vmid))
}

/// The constraints that tie VM `vmid` to the Pacemaker clones its disks need (`clones`: a
/// cluster pool's file system, `fs-POOL-clone`): the VM starts after each clone and only on a
/// node where it runs — after a node's death Pacemaker restarts the VM once the survivor's
/// file system is usable, and never on a node where the pool is not mounted.
pub fn storage_constraints(vmid: u32, clones: &[String]) -> Vec<Element> {
    let rsc = resource_id(vmid);
    let base = storage_prefix(vmid);
    let mut out = vec![];
    for c in clones {
        out.push(
            Element::new("rsc_order")
                .attr("id", format!("{base}after-{c}"))
                .attr("first", c)
                .attr("first-action", "start")
                .attr("then", &rsc)
                .attr("then-action", "start")
                .attr("kind", "Mandatory"),
        );
        out.push(
            Element::new("rsc_colocation")
                .attr("id", format!("{base}with-{c}"))
                .attr("rsc", &rsc)
                .attr("with-rsc", c)
                .attr("score", "INFINITY"),
        );
    }
    out
}

/// The call that creates or replaces `v`'s resource together with its storage constraints
/// ([`storage_constraints`]; one `cibadmin` call, so the VM is never placed without them).
pub fn put(v: &HaVm, clones: &[String]) -> Vec<CibUpdate> {
    let resources = Element::new("resources").child(primitive(v));
    if clones.is_empty() {
        return vec![CibUpdate::modify("resources", &resources)];
    }
    let mut constraints = Element::new("constraints");
    for c in storage_constraints(v.vmid, clones) {
        constraints = constraints.child(c);
    }
    vec![CibUpdate::modify(
        "configuration",
        &Element::new("configuration")
            .child(resources)
            .child(constraints),
    )]
}

/// VM `vmid`'s storage constraints present in a `cibadmin --query --scope constraints` answer
/// (tag and id of each: what [`delete`] needs).
pub fn storage_constraints_in(xml: &str, vmid: u32) -> Result<Vec<Element>, String> {
    let root = Element::parse(xml).map_err(|e| format!("CIB constraints: {e}"))?;
    let base = storage_prefix(vmid);
    Ok(root
        .children
        .iter()
        .filter_map(|c| {
            let id = c.get_attr("id")?;
            id.starts_with(&base)
                .then(|| Element::new(c.name.as_str()).attr("id", id))
        })
        .collect())
}

/// The calls that remove VM `vmid`'s resource, its storage constraints (`constraints`, from
/// [`storage_constraints_in`] or [`storage_constraints`]) first: a constraint naming a
/// resource that does not exist is a configuration error.
pub fn delete(vmid: u32, constraints: &[Element]) -> Vec<CibUpdate> {
    let mut out: Vec<CibUpdate> = constraints
        .iter()
        .map(|c| {
            CibUpdate::delete(
                &Element::new(c.name.as_str()).attr("id", c.get_attr("id").unwrap_or_default()),
            )
        })
        .collect();
    out.push(CibUpdate::delete(
        &Element::new("primitive").attr("id", resource_id(vmid)),
    ));
    out
}

/// `crm_resource` arguments that set VM `vmid`'s target-role (start or stop it through
/// Pacemaker).
pub fn set_target_role(vmid: u32, started: bool) -> Vec<String> {
    [
        "crm_resource",
        "--resource",
        &resource_id(vmid),
        "--meta",
        "--set-parameter",
        "target-role",
        "--parameter-value",
        target_role(started),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `crm_resource` arguments that move VM `vmid` to `node` (a `cli-prefer` location constraint:
/// clear it with [`clear`] once the VM is there).
pub fn move_to(vmid: u32, node: &str) -> Vec<String> {
    [
        "crm_resource",
        "--move",
        "--resource",
        &resource_id(vmid),
        "--node",
        node,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `crm_resource` arguments that remove the constraint a move left.
pub fn clear(vmid: u32) -> Vec<String> {
    ["crm_resource", "--clear", "--resource", &resource_id(vmid)]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// `crm_resource` arguments that take VM `vmid` out of Pacemaker's hands while it keeps
/// running (`is-managed=false`): the first step of turning HA off.
pub fn unmanage(vmid: u32) -> Vec<String> {
    [
        "crm_resource",
        "--resource",
        &resource_id(vmid),
        "--meta",
        "--set-parameter",
        "is-managed",
        "--parameter-value",
        "false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `crm_attribute` arguments that switch Pacemaker's `stop-orphan-resources` off (around the
/// removal of a running HA VM's resource, so the VM is not stopped as an orphan) or back to its
/// default (on).
pub fn stop_orphans(on: bool) -> Vec<String> {
    let mut v: Vec<String> = [
        "crm_attribute",
        "--type",
        "crm_config",
        "--name",
        "stop-orphan-resources",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if on {
        v.push("--delete".into());
    } else {
        v.extend(["--update".to_string(), "false".to_string()]);
    }
    v
}

/// `crm_resource` arguments that forget VM `vmid`'s failed operations and fail counts on every
/// node (Pacemaker then re-checks where it runs and may start it where it was banned).
pub fn cleanup(vmid: u32) -> Vec<String> {
    [
        "crm_resource",
        "--cleanup",
        "--resource",
        &resource_id(vmid),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `crm_attribute` arguments that put `node` in standby (`on`: Pacemaker moves every resource
/// away and starts none there; the attribute is permanent, so it survives a reboot of the
/// node) or take it out again.
pub fn standby(node: &str, on: bool) -> Vec<String> {
    let mut v: Vec<String> = ["crm_attribute", "--node", node, "--name", "standby"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if on {
        v.extend(["--update".to_string(), "on".to_string()]);
    } else {
        v.push("--delete".into());
    }
    v
}

/// `crm_simulate` on the live CIB with `node` taken offline cleanly (what standby does to its
/// resources): where each HA VM would go. Read-only.
pub fn node_down_cmd(node: &str) -> keel_runner::Cmd {
    keel_runner::Cmd::argv(&[
        "crm_simulate",
        "--live-check",
        "--simulate",
        "--node-down",
        node,
        "--output-as=xml",
    ])
    .timeout(std::time::Duration::from_secs(30))
}

/// Every Keel HA VM in a `cibadmin --query --scope resources` answer.
pub fn from_resources(xml: &str) -> Result<Vec<HaVm>, String> {
    let root = Element::parse(xml).map_err(|e| format!("CIB resources: {e}"))?;
    let mut out = vec![];
    for p in root.children.iter().filter(|c| c.name == "primitive") {
        let Some(vmid) = p.get_attr("id").and_then(vmid_of) else {
            continue;
        };
        let attr = |set: &str, name: &str| -> Option<String> {
            p.children
                .iter()
                .filter(|c| c.name == set)
                .flat_map(|s| s.children.iter())
                .find(|n| n.get_attr("name") == Some(name))
                .and_then(|n| n.get_attr("value"))
                .map(str::to_string)
        };
        out.push(HaVm {
            vmid,
            config: attr("instance_attributes", "config").unwrap_or_default(),
            priority: attr("meta_attributes", "priority")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            max_restarts: attr("meta_attributes", "migration-threshold")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            started: attr("meta_attributes", "target-role").as_deref() != Some("Stopped"),
            remoteuri: attr("instance_attributes", "remoteuri"),
            migrate_extra: attr("instance_attributes", "migrate_options")
                .and_then(|o| o.strip_prefix("--tls").map(|x| x.trim().to_string()))
                .filter(|x| !x.is_empty()),
        });
    }
    out.sort_by_key(|v| v.vmid);
    Ok(out)
}

/// `crm_simulate` on the live CIB with `node` failed: Pacemaker's own scheduler answers
/// "what if this node dies" (read-only: nothing is changed).
pub fn what_if_cmd(node: &str) -> keel_runner::Cmd {
    keel_runner::Cmd::argv(&[
        "crm_simulate",
        "--live-check",
        "--simulate",
        "--node-fail",
        node,
        "--output-as=xml",
    ])
    .timeout(std::time::Duration::from_secs(30))
}

/// One HA VM in a simulation: where it runs now and where it would run after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulated {
    pub vmid: u32,
    pub before: Option<String>,
    pub after: Option<String>,
}

fn running_on(status: Option<&Element>) -> Vec<(u32, Option<String>)> {
    let Some(res) = status.and_then(|s| s.find("resources")) else {
        return vec![];
    };
    res.children
        .iter()
        .filter(|r| r.name == "resource")
        .filter_map(|r| {
            let vmid = vmid_of(r.get_attr("id")?)?;
            let active = r.get_attr("active") == Some("true");
            let node = r
                .find("node")
                .and_then(|n| n.get_attr("name"))
                .map(str::to_string);
            Some((vmid, if active { node } else { None }))
        })
        .collect()
}

/// The HA VMs of a `crm_simulate --output-as=xml` answer: `cluster_status` (now) against
/// `revised_cluster_status` (after the simulated transition).
pub fn parse_simulation(xml: &str) -> Result<Vec<Simulated>, String> {
    let root = Element::parse(xml).map_err(|e| format!("crm_simulate output: {e}"))?;
    if root.find("revised_cluster_status").is_none() {
        return Err("crm_simulate output has no revised cluster status".into());
    }
    let before = running_on(root.find("cluster_status"));
    let after = running_on(root.find("revised_cluster_status"));
    let mut out: Vec<Simulated> = before
        .iter()
        .map(|(vmid, b)| Simulated {
            vmid: *vmid,
            before: b.clone(),
            after: after
                .iter()
                .find(|(v, _)| v == vmid)
                .and_then(|(_, a)| a.clone()),
        })
        .collect();
    out.sort_by_key(|s| s.vmid);
    Ok(out)
}

// ------------------------------------------------------------------ placement rules

/// Prefix of every constraint a placement rule renders.
pub const RULE_PREFIX: &str = "keel-rule-";
/// Score of a soft rule (a preference Pacemaker weighs against stickiness 100).
pub const SOFT_SCORE: i64 = 200;

/// The Pacemaker constraints of a placement rule (ids `keel-rule-<id>-…`):
/// * node-affinity: a location per VM and node with the node's priority as score; hard adds a
///   `-INFINITY` rule on every other node;
/// * together: each VM colocated with the first (`INFINITY` hard, +200 soft);
/// * apart: every pair colocated with `-INFINITY` (hard) or -200 (soft).
pub fn rule_constraints(r: &keel_api::ha::HaRule) -> Vec<Element> {
    use keel_api::ha::HaRuleKind as K;
    let base = format!("{RULE_PREFIX}{}", r.id);
    let mut out = vec![];
    match r.kind {
        K::NodeAffinity => {
            for vm in &r.vms {
                let rsc = resource_id(*vm);
                for n in &r.nodes {
                    out.push(
                        Element::new("rsc_location")
                            .attr("id", format!("{base}-{vm}-{}", n.node))
                            .attr("rsc", &rsc)
                            .attr("node", &n.node)
                            .attr("score", n.priority),
                    );
                }
                if r.hard {
                    let rid = format!("{base}-{vm}-only");
                    let mut rule = Element::new("rule")
                        .attr("id", format!("{rid}-rule"))
                        .attr("score", "-INFINITY")
                        .attr("boolean-op", "and");
                    for (i, n) in r.nodes.iter().enumerate() {
                        rule = rule.child(
                            Element::new("expression")
                                .attr("id", format!("{rid}-rule-expr-{i}"))
                                .attr("attribute", "#uname")
                                .attr("operation", "ne")
                                .attr("value", &n.node),
                        );
                    }
                    out.push(
                        Element::new("rsc_location")
                            .attr("id", &rid)
                            .attr("rsc", &rsc)
                            .child(rule),
                    );
                }
            }
        }
        K::Together => {
            let first = r.vms.first().copied().unwrap_or_default();
            for vm in r.vms.iter().skip(1) {
                out.push(
                    Element::new("rsc_colocation")
                        .attr("id", format!("{base}-{vm}-with-{first}"))
                        .attr("rsc", resource_id(*vm))
                        .attr("with-rsc", resource_id(first))
                        .attr(
                            "score",
                            if r.hard {
                                "INFINITY".to_string()
                            } else {
                                SOFT_SCORE.to_string()
                            },
                        ),
                );
            }
        }
        K::Apart => {
            for (i, a) in r.vms.iter().enumerate() {
                for b in r.vms.iter().skip(i + 1) {
                    out.push(
                        Element::new("rsc_colocation")
                            .attr("id", format!("{base}-{b}-apart-{a}"))
                            .attr("rsc", resource_id(*b))
                            .attr("with-rsc", resource_id(*a))
                            .attr(
                                "score",
                                if r.hard {
                                    "-INFINITY".to_string()
                                } else {
                                    format!("-{SOFT_SCORE}")
                                },
                            ),
                    );
                }
            }
        }
    }
    out
}

/// The call that adds a rule's constraints.
pub fn put_rule(r: &keel_api::ha::HaRule) -> Vec<CibUpdate> {
    let mut c = Element::new("constraints");
    for e in rule_constraints(r) {
        c = c.child(e);
    }
    vec![CibUpdate::modify("constraints", &c)]
}

/// The calls that remove a rule's constraints.
pub fn delete_rule(r: &keel_api::ha::HaRule) -> Vec<CibUpdate> {
    rule_constraints(r)
        .into_iter()
        .map(|e| {
            let id = e.get_attr("id").unwrap_or_default().to_string();
            CibUpdate::delete(&Element::new(e.name.as_str()).attr("id", id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> HaVm {
        HaVm {
            vmid: 100,
            config: "/var/lib/keel/ha/vm100.xml".into(),
            priority: 5,
            max_restarts: 3,
            started: true,
            remoteuri: Some("qemu+tls://%n/system".into()),
            migrate_extra: Some("--unsafe".into()),
        }
    }

    #[test]
    fn renders_and_reads_back() -> Result<(), String> {
        let v = vm();
        let xml = Element::new("resources").child(primitive(&v)).render();
        assert!(xml.contains(r#"type="VirtualDomain""#), "{xml}");
        assert!(
            xml.contains(r#"name="allow-migrate" value="true""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"name="monitor" interval="5s" timeout="30s""#),
            "{xml}"
        );
        assert_eq!(from_resources(&xml)?, vec![v.clone()]);
        let stopped = HaVm {
            started: false,
            ..v
        };
        let xml = Element::new("resources")
            .child(primitive(&stopped))
            .render();
        assert!(xml.contains(r#"value="Stopped""#));
        assert_eq!(from_resources(&xml)?, vec![stopped]);
        Ok(())
    }

    #[test]
    fn storage_constraints_go_in_with_the_resource_and_out_before_it() -> Result<(), String> {
        let v = vm();
        let clones = ["fs-vmstore-clone".to_string()];
        // without storage: the resource alone, as before
        let plain = put(&v, &[]);
        assert_eq!(plain.len(), 1);
        assert!(plain[0].args.contains(&"resources".to_string()));
        // with: one call carrying the primitive and both constraints
        let calls = put(&v, &clones);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(calls[0].args.contains(&"configuration".to_string()));
        let doc = &calls[0].stdin;
        assert!(doc.contains(r#"<primitive id="keel-vm-100""#), "{doc}");
        assert!(
            doc.contains(r#"<rsc_order id="keel-vm-100-storage-after-fs-vmstore-clone" first="fs-vmstore-clone" first-action="start" then="keel-vm-100" then-action="start" kind="Mandatory"/>"#),
            "{doc}"
        );
        assert!(
            doc.contains(r#"<rsc_colocation id="keel-vm-100-storage-with-fs-vmstore-clone" rsc="keel-vm-100" with-rsc="fs-vmstore-clone" score="INFINITY"/>"#),
            "{doc}"
        );
        // read back from a constraints query: VM 100's only (not VM 10's, not a rule's)
        let mut q = Element::new("constraints");
        for c in storage_constraints(100, &clones)
            .into_iter()
            .chain(storage_constraints(10, &clones))
        {
            q = q.child(c);
        }
        q = q.child(
            Element::new("rsc_colocation")
                .attr("id", "keel-rule-apart-101-apart-100")
                .attr("rsc", "keel-vm-101")
                .attr("with-rsc", "keel-vm-100")
                .attr("score", "-INFINITY"),
        );
        let found = storage_constraints_in(&q.render(), 100)?;
        let ids: Vec<&str> = found.iter().filter_map(|e| e.get_attr("id")).collect();
        assert_eq!(
            ids,
            [
                "keel-vm-100-storage-after-fs-vmstore-clone",
                "keel-vm-100-storage-with-fs-vmstore-clone"
            ]
        );
        // removal: the constraints first, then the primitive
        let del = delete(100, &found);
        let order: Vec<&str> = del.iter().map(|c| c.stdin.trim()).collect();
        assert_eq!(
            order,
            [
                r#"<rsc_order id="keel-vm-100-storage-after-fs-vmstore-clone"/>"#,
                r#"<rsc_colocation id="keel-vm-100-storage-with-fs-vmstore-clone"/>"#,
                r#"<primitive id="keel-vm-100"/>"#
            ]
        );
        assert_eq!(delete(100, &[]).len(), 1);
        Ok(())
    }

    #[test]
    fn other_resources_are_not_ha_vms() -> Result<(), String> {
        let xml = r#"<resources><primitive id="keel-vip" class="ocf" provider="heartbeat" type="IPaddr2"/><primitive id="keel-vm-x" class="ocf" provider="heartbeat" type="VirtualDomain"/></resources>"#;
        assert!(from_resources(xml)?.is_empty());
        Ok(())
    }

    #[test]
    fn simulation_of_a_node_failure_captured_in_the_lab() -> Result<(), String> {
        // crm_simulate --live-check --simulate --node-fail node1 --output-as=xml on the
        // netns_ha lab: VM 100 on node1, the fence devices elsewhere
        let xml = include_str!("../tests/samples/crm_simulate-node-fail.xml");
        let sim = parse_simulation(xml)?;
        assert_eq!(
            sim,
            vec![Simulated {
                vmid: 100,
                before: Some("node1".into()),
                after: Some("node2".into()),
            }]
        );
        assert!(parse_simulation("<pacemaker-result/>").is_err());
        Ok(())
    }

    #[test]
    fn target_role_and_unmanage_commands() {
        assert_eq!(
            set_target_role(7, false).join(" "),
            "crm_resource --resource keel-vm-7 --meta --set-parameter target-role --parameter-value Stopped"
        );
        assert!(unmanage(7)
            .join(" ")
            .ends_with("is-managed --parameter-value false"));
    }
}
