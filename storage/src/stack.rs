//! The Pacemaker resources a shared pool runs as, built as CIB element trees.
//!
//! Shared by every cluster pool on a cluster (one each):
//! `dlm` (`ocf:pacemaker:controld`) → `lvmlockd` (`ocf:heartbeat:lvmlockd`), both clones.
//! Per pool:
//! * `drbd-gfs2`: `drbd-POOL` (`ocf:linbit:drbd`, a promotable clone with two promoted
//!   instances); `lvm-POOL` (`ocf:heartbeat:LVM-activate`, shared activation) after both
//!   lvmlockd and a promoted DRBD; `fs-POOL` (`ocf:heartbeat:Filesystem`, gfs2) after the LV.
//! * `iscsi-gfs2`: the same without DRBD (the LUN is logged in on every node by open-iscsi).
//! * `iscsi-lvm`: only the lockspace; each VM disk is activated exclusively when its VM starts.
//!
//! Every link of a chain is an `order` plus a `colocation` (a Filesystem never runs where its
//! LV is not active, an LV never where lvmlockd is not running). Monitors of the lock and file
//! system layers fence on failure (`on-fail=fence`): a node that lost its DLM or its GFS2 mount
//! holds locks others wait for, and only fencing releases them.
//!
//! The clones are `interleave=true` (an instance waits only for the layer below it on its own
//! node) and not `ordered`: every node starts its DLM, lvmlockd, LV and mount at the same
//! time, as RHEL 8/9's GFS2 procedure configures them. DLM and GFS2 serialize what must be
//! serialized (lockspace membership, journal recovery) themselves; `ordered=true`, a habit of
//! older guides, only made a start on several nodes (a pool's creation) go one node at a time.

use keel_xml::Element;

use crate::lvm::Activation;

/// What Pacemaker runs for one pool.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolStack {
    pub pool: String,
    /// The DRBD resource under the VG, for `drbd-gfs2`.
    pub drbd: Option<String>,
    pub vg: String,
    /// The LV carrying the file system and how it is activated; `None` for `iscsi-lvm` (VM
    /// disks are activated one by one).
    pub lv: Option<(String, Activation)>,
    /// Where the file system is mounted, for the gfs2 kinds.
    pub mountpoint: Option<String>,
    /// The pool's nodes: its clones run there and nowhere else (clone-max, and a location
    /// constraint per node with exclusive resource discovery).
    pub nodes: Vec<String>,
}

fn nvpair(set: &str, name: &str, value: &str) -> Element {
    Element::new("nvpair")
        .attr("id", format!("{set}-{name}"))
        .attr("name", name)
        .attr("value", value)
}

fn attrs(id: &str, kind: &str, pairs: &[(&str, &str)]) -> Element {
    let set = format!("{id}-{kind}");
    let mut e = Element::new(kind).attr("id", &set);
    for (k, v) in pairs {
        e.push(nvpair(&set, k, v));
    }
    e
}

struct Op<'a> {
    name: &'a str,
    interval: &'a str,
    timeout: &'a str,
    role: Option<&'a str>,
    on_fail: Option<&'a str>,
}

fn op(rsc: &str, o: Op) -> Element {
    let id = match o.role {
        Some(r) => format!("{rsc}-{}-{}-{}", o.name, o.interval, r.to_lowercase()),
        None => format!("{rsc}-{}-{}", o.name, o.interval),
    };
    Element::new("op")
        .attr("id", id)
        .attr("name", o.name)
        .attr("interval", o.interval)
        .attr("timeout", o.timeout)
        .attr_opt("role", o.role)
        .attr_opt("on-fail", o.on_fail)
}

fn primitive(
    id: &str,
    class: &str,
    provider: &str,
    ty: &str,
    params: &[(&str, &str)],
    ops: Vec<Element>,
) -> Element {
    let mut p = Element::new("primitive")
        .attr("id", id)
        .attr("class", class)
        .attr("provider", provider)
        .attr("type", ty);
    if !params.is_empty() {
        p.push(attrs(id, "instance_attributes", params));
    }
    let mut o = Element::new("operations");
    for x in ops {
        o.push(x);
    }
    p.child(o)
}

fn clone(id: &str, inner: Element, meta: &[(&str, &str)]) -> Element {
    Element::new("clone")
        .attr("id", id)
        .child(attrs(id, "meta_attributes", meta))
        .child(inner)
}

fn start_stop(rsc: &str, start: &str, stop: &str) -> Vec<Element> {
    vec![
        op(
            rsc,
            Op {
                name: "start",
                interval: "0s",
                timeout: start,
                role: None,
                on_fail: None,
            },
        ),
        op(
            rsc,
            Op {
                name: "stop",
                interval: "0s",
                timeout: stop,
                role: None,
                on_fail: None,
            },
        ),
    ]
}

fn monitor_fence(rsc: &str, interval: &str, timeout: &str) -> Element {
    op(
        rsc,
        Op {
            name: "monitor",
            interval,
            timeout,
            role: None,
            on_fail: Some("fence"),
        },
    )
}

/// The id of the shared DLM clone.
pub const DLM_CLONE: &str = "dlm-clone";
/// The id of the shared lvmlockd clone.
pub const LVMLOCKD_CLONE: &str = "lvmlockd-clone";

/// `dlm` and `lvmlockd`, cloned on every node, lvmlockd after and with DLM.
pub fn lock_layer() -> (Vec<Element>, Vec<Element>) {
    let mut dlm_ops = start_stop("dlm", "90s", "100s");
    dlm_ops.push(monitor_fence("dlm", "30s", "60s"));
    let dlm = primitive("dlm", "ocf", "pacemaker", "controld", &[], dlm_ops);
    let mut l_ops = start_stop("lvmlockd", "90s", "90s");
    l_ops.push(monitor_fence("lvmlockd", "30s", "90s"));
    let lvmlockd = primitive("lvmlockd", "ocf", "heartbeat", "lvmlockd", &[], l_ops);
    let cmeta = [("interleave", "true")];
    (
        vec![
            clone(DLM_CLONE, dlm, &cmeta),
            clone(LVMLOCKD_CLONE, lvmlockd, &cmeta),
        ],
        chain(DLM_CLONE, LVMLOCKD_CLONE, None),
    )
}

/// `then` starts after `first` (promoted, when `first_role` says so) and only where it runs.
fn chain(first: &str, then: &str, first_role: Option<&str>) -> Vec<Element> {
    let action = if first_role.is_some() {
        "promote"
    } else {
        "start"
    };
    vec![
        Element::new("rsc_order")
            .attr("id", format!("order-{first}-then-{then}"))
            .attr("first", first)
            .attr("first-action", action)
            .attr("then", then)
            .attr("then-action", "start")
            .attr("kind", "Mandatory"),
        Element::new("rsc_colocation")
            .attr("id", format!("colocation-{then}-with-{first}"))
            .attr("rsc", then)
            .attr("with-rsc", first)
            .attr_opt("with-rsc-role", first_role)
            .attr("score", "INFINITY"),
    ]
}

impl PoolStack {
    pub fn drbd_clone_id(&self) -> String {
        format!("drbd-{}-clone", self.pool)
    }
    pub fn lvm_clone_id(&self) -> String {
        format!("lvm-{}-clone", self.pool)
    }
    pub fn fs_clone_id(&self) -> String {
        format!("fs-{}-clone", self.pool)
    }

    /// The pool's resources and constraints (the lock layer comes from [`lock_layer`]).
    pub fn render(&self) -> (Vec<Element>, Vec<Element>) {
        let mut rs = Vec::new();
        let mut cs = Vec::new();
        let n = self.nodes.len().to_string();
        let cmeta = [("interleave", "true"), ("clone-max", n.as_str())];
        let mut drbd_below = None;
        if let Some(res) = &self.drbd {
            let id = format!("drbd-{}", self.pool);
            let mut ops = start_stop(&id, "240s", "100s");
            for (interval, role) in [("29s", "Promoted"), ("31s", "Unpromoted")] {
                ops.push(op(
                    &id,
                    Op {
                        name: "monitor",
                        interval,
                        timeout: "20s",
                        role: Some(role),
                        on_fail: None,
                    },
                ));
            }
            ops.push(op(
                &id,
                Op {
                    name: "promote",
                    interval: "0s",
                    timeout: "90s",
                    role: None,
                    on_fail: None,
                },
            ));
            ops.push(op(
                &id,
                Op {
                    name: "demote",
                    interval: "0s",
                    timeout: "90s",
                    role: None,
                    on_fail: None,
                },
            ));
            let p = primitive(&id, "ocf", "linbit", "drbd", &[("drbd_resource", res)], ops);
            rs.push(clone(
                &self.drbd_clone_id(),
                p,
                &[
                    ("promotable", "true"),
                    ("promoted-max", "2"),
                    ("promoted-node-max", "1"),
                    ("clone-max", "2"),
                    ("clone-node-max", "1"),
                    ("notify", "true"),
                    ("interleave", "true"),
                ],
            ));
            // The VG on top is activated only where DRBD is promoted (below).
            drbd_below = Some(self.drbd_clone_id());
        }
        if let Some((lv, act)) = &self.lv {
            let id = format!("lvm-{}", self.pool);
            let mode = match act {
                Activation::Shared => "shared",
                Activation::Exclusive | Activation::Off => "exclusive",
            };
            let mut ops = start_stop(&id, "90s", "90s");
            ops.push(monitor_fence(&id, "30s", "90s"));
            let p = primitive(
                &id,
                "ocf",
                "heartbeat",
                "LVM-activate",
                &[
                    ("vgname", &self.vg),
                    ("lvname", lv),
                    ("vg_access_mode", "lvmlockd"),
                    ("activation_mode", mode),
                ],
                ops,
            );
            rs.push(clone(&self.lvm_clone_id(), p, &cmeta));
            // The VG's locks need lvmlockd; its PV (under DRBD) needs a promoted DRBD.
            cs.extend(chain(LVMLOCKD_CLONE, &self.lvm_clone_id(), None));
            if let Some(d) = &drbd_below {
                cs.extend(chain(d, &self.lvm_clone_id(), Some("Promoted")));
            }
            if let Some(dir) = &self.mountpoint {
                let id = format!("fs-{}", self.pool);
                let dev = format!("/dev/{}/{}", self.vg, lv);
                let mut ops = start_stop(&id, "120s", "120s");
                ops.push(monitor_fence(&id, "20s", "40s"));
                let p = primitive(
                    &id,
                    "ocf",
                    "heartbeat",
                    "Filesystem",
                    &[
                        ("device", &dev),
                        ("directory", dir),
                        ("fstype", "gfs2"),
                        ("options", "noatime"),
                    ],
                    ops,
                );
                rs.push(clone(&self.fs_clone_id(), p, &cmeta));
                cs.extend(chain(&self.lvm_clone_id(), &self.fs_clone_id(), None));
            }
        }
        for id in self.clone_ids() {
            cs.extend(self.pinned(&id));
        }
        (rs, cs)
    }

    /// The pool's own clones (not the shared lock layer), bottom first.
    pub fn clone_ids(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.drbd.is_some() {
            v.push(self.drbd_clone_id());
        }
        if self.lv.is_some() {
            v.push(self.lvm_clone_id());
        }
        if self.mountpoint.is_some() {
            v.push(self.fs_clone_id());
        }
        v
    }

    /// `rsc` may run on the pool's nodes only: one location constraint per node with
    /// `resource-discovery=exclusive`, so Pacemaker neither probes nor starts it on a node
    /// that joined the cluster later and has no DRBD resource, LUN or VG for it (a start
    /// there would fail, and the agents' "not configured" answer is fatal for the clone on
    /// every node). Extending an iSCSI pool to a new node adds that node's constraint.
    fn pinned(&self, rsc: &str) -> Vec<Element> {
        self.nodes
            .iter()
            .map(|n| {
                Element::new("rsc_location")
                    .attr("id", format!("location-{rsc}-{n}"))
                    .attr("rsc", rsc)
                    .attr("node", n.as_str())
                    .attr("score", "0")
                    .attr("resource-discovery", "exclusive")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drbd_chain_order() {
        let s = PoolStack {
            pool: "vmstore".into(),
            drbd: Some("vmstore".into()),
            vg: "keel-vmstore".into(),
            lv: Some(("fs".into(), Activation::Shared)),
            mountpoint: Some("/var/lib/keel/pools/vmstore".into()),
            nodes: vec!["node1".into(), "node2".into()],
        };
        let (_, cs) = s.render();
        let orders: Vec<(String, String)> = cs
            .iter()
            .filter(|c| c.name == "rsc_order")
            .map(|c| {
                (
                    c.get_attr("first").unwrap_or_default().to_string(),
                    c.get_attr("then").unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(
            orders,
            [
                (
                    "lvmlockd-clone".to_string(),
                    "lvm-vmstore-clone".to_string()
                ),
                ("drbd-vmstore-clone".into(), "lvm-vmstore-clone".into()),
                ("lvm-vmstore-clone".into(), "fs-vmstore-clone".into()),
            ]
        );
    }
}
