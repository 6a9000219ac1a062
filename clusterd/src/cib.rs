//! Pacemaker CIB fragments Keel writes, built as element trees (never pasted strings):
//! the cluster properties, one stonith primitive per fence device, and a `-INFINITY` location
//! constraint that keeps each device off the node it fences.
//!
//! They reach Pacemaker through `cibadmin --modify --allow-create --scope S --xml-pipe` (the XML
//! on stdin, so a BMC password never appears on a command line) — see [`CibUpdate`]. The same
//! fragments assemble into a whole `<cib>` document ([`verification_document`]) that the tests
//! hand to `crm_verify --xml-file`.

use keel_xml::Element;

use crate::fence::FenceDevice;

/// What Pacemaker does in a partition without quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoQuorumPolicy {
    /// Stop every resource in the partition (the safe default with fencing).
    Stop,
    /// Keep what runs, start nothing new.
    Freeze,
    /// Demote promotable clones, stop the rest.
    Demote,
}

impl NoQuorumPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            NoQuorumPolicy::Stop => "stop",
            NoQuorumPolicy::Freeze => "freeze",
            NoQuorumPolicy::Demote => "demote",
        }
    }
}

/// Keel's cluster-wide Pacemaker options. `stonith-enabled` is not a field: it is always true.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterProperties {
    pub cluster_name: String,
    pub no_quorum_policy: NoQuorumPolicy,
    /// `reboot` or `off` — what fencing does by default.
    pub stonith_action: String,
    /// Seconds the fencer may take per action.
    pub stonith_timeout_s: u32,
    /// Two-node only: Pacemaker's own tie-break, delaying fencing of the node that runs the
    /// higher-priority resources (0 = off; the per-device delay is the primary mechanism).
    pub priority_fencing_delay_s: u32,
}

impl ClusterProperties {
    /// The properties Keel sets for a cluster of `nodes` members.
    ///
    /// * 1 node (right after `init`): `stop`; nothing can lose quorum yet.
    /// * 2 nodes: corosync's `two_node` keeps the survivor quorate after the peer is fenced, so
    ///   `stop` only bites while wait_for_all holds; the fence delay decides who survives.
    /// * 3+ nodes: plain majority, `stop`.
    pub fn for_size(cluster_name: &str, nodes: usize) -> Self {
        ClusterProperties {
            cluster_name: cluster_name.to_string(),
            no_quorum_policy: NoQuorumPolicy::Stop,
            stonith_action: "reboot".into(),
            stonith_timeout_s: 60,
            priority_fencing_delay_s: if nodes == 2 { 10 } else { 0 },
        }
    }
}

fn nvpair(set_id: &str, name: &str, value: &str) -> Element {
    Element::new("nvpair")
        .attr("id", format!("{set_id}-{name}"))
        .attr("name", name)
        .attr("value", value)
}

/// `<crm_config>` with Keel's values in `cib-bootstrap-options` (the set Pacemaker's own tools
/// use, so `pcs property` and `crm_attribute` see the same values).
pub fn crm_config(p: &ClusterProperties) -> Element {
    let set = "cib-bootstrap-options";
    Element::new("crm_config").child(
        Element::new("cluster_property_set")
            .attr("id", set)
            .child(nvpair(set, "stonith-enabled", "true"))
            .child(nvpair(set, "stonith-action", &p.stonith_action))
            .child(nvpair(
                set,
                "stonith-timeout",
                &format!("{}s", p.stonith_timeout_s),
            ))
            .child(nvpair(set, "no-quorum-policy", p.no_quorum_policy.as_str()))
            .child(nvpair(
                set,
                "priority-fencing-delay",
                &format!("{}s", p.priority_fencing_delay_s),
            ))
            .child(nvpair(set, "cluster-name", &p.cluster_name)),
    )
}

/// One stonith primitive. Secrets are included: this element goes to Pacemaker on stdin only.
pub fn stonith_primitive(d: &FenceDevice) -> Element {
    let ia = format!("{}-instance_attributes", d.id);
    let mut attrs = Element::new("instance_attributes").attr("id", &ia);
    attrs.push(nvpair(&ia, "pcmk_host_list", &d.node));
    let secret = d.agent.secret_params();
    for (k, v) in d.agent.params() {
        // secrets stay in the CIB-secrets files (`form::write_cib_secrets`), never in the CIB
        let v = if secret.contains(&k) {
            crate::fence::CIB_SECRET.to_string()
        } else {
            v
        };
        attrs.push(nvpair(&ia, k, &v));
    }
    if let Some(delay) = d.delay_s {
        attrs.push(nvpair(&ia, "pcmk_delay_base", &format!("{delay}s")));
    }
    // `off`: a node fenced by this device stays down until someone looks at it.
    if d.action.as_deref() == Some("off") {
        attrs.push(nvpair(&ia, "pcmk_reboot_action", "off"));
    }
    Element::new("primitive")
        .attr("id", &d.id)
        .attr("class", "stonith")
        .attr("type", d.agent.program())
        .child(attrs)
        .child(
            Element::new("operations").child(
                Element::new("op")
                    .attr("id", format!("{}-monitor-interval-60s", d.id))
                    .attr("name", "monitor")
                    .attr("interval", "60s")
                    .attr("timeout", "30s"),
            ),
        )
}

/// The id of the constraint keeping a device off its own target.
pub fn avoid_self_id(d: &FenceDevice) -> String {
    format!("location-{}-avoids-{}", d.id, d.node)
}

/// `rsc_location` with score -INFINITY: the device never runs on the node it fences.
pub fn avoid_self(d: &FenceDevice) -> Element {
    Element::new("rsc_location")
        .attr("id", avoid_self_id(d))
        .attr("rsc", &d.id)
        .attr("node", &d.node)
        .attr("score", "-INFINITY")
}

/// One `cibadmin` call. The XML travels on stdin (`--xml-pipe`), never in argv.
#[derive(Clone, PartialEq, Eq)]
pub struct CibUpdate {
    pub args: Vec<String>,
    pub stdin: String,
}

impl std::fmt::Debug for CibUpdate {
    /// Shows the arguments only: the XML may hold a BMC password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cibadmin {} (<{} bytes on stdin>)",
            self.args.join(" "),
            self.stdin.len()
        )
    }
}

impl CibUpdate {
    pub(crate) fn modify(scope: &str, el: &Element) -> Self {
        CibUpdate {
            args: ["--modify", "--allow-create", "--scope", scope, "--xml-pipe"]
                .map(String::from)
                .to_vec(),
            stdin: el.render(),
        }
    }
    /// Replace the object with `el`'s tag and id under `scope` wholesale (it must exist).
    pub(crate) fn replace(scope: &str, el: &Element) -> Self {
        CibUpdate {
            args: ["--replace", "--scope", scope, "--xml-pipe"]
                .map(String::from)
                .to_vec(),
            stdin: el.render(),
        }
    }
    pub(crate) fn delete(el: &Element) -> Self {
        CibUpdate {
            args: ["--delete", "--xml-pipe"].map(String::from).to_vec(),
            stdin: el.render(),
        }
    }
}

/// The calls that bring the live CIB to `props` (merged by id: nothing else is touched).
pub fn set_properties(props: &ClusterProperties) -> Vec<CibUpdate> {
    vec![CibUpdate::modify("crm_config", &crm_config(props))]
}

/// The calls that create or update one fence device and its constraint.
pub fn put_fence_device(d: &FenceDevice) -> Vec<CibUpdate> {
    vec![
        CibUpdate::modify(
            "resources",
            &Element::new("resources").child(stonith_primitive(d)),
        ),
        CibUpdate::modify(
            "constraints",
            &Element::new("constraints").child(avoid_self(d)),
        ),
    ]
}

/// Meta attribute of a stonith primitive naming its configuration generation: Keel writes a
/// new value with every change of the device, and a fence test records the value it went
/// through, so a test proves only the configuration it tested.
pub const GENERATION_META: &str = "keel-generation";

/// [`put_fence_device`] with the device's configuration generation in the same update as the
/// primitive (the device never changes without its generation). `--modify` creates the
/// primitive or merges into it; the `--replace` after it then drops what the merge kept of an
/// earlier configuration (another agent's parameters, a removed `--param`, a secret's stale
/// `lrm://` that Pacemaker would look for and refuse to fence without).
pub fn put_fence_device_generation(d: &FenceDevice, generation: &str) -> Vec<CibUpdate> {
    let ma = format!("{}-meta_attributes", d.id);
    let mut p = stonith_primitive(d);
    p.push(
        Element::new("meta_attributes")
            .attr("id", &ma)
            .child(nvpair(&ma, GENERATION_META, generation)),
    );
    vec![
        CibUpdate::modify("resources", &Element::new("resources").child(p.clone())),
        CibUpdate::replace("resources", &p),
        CibUpdate::modify(
            "constraints",
            &Element::new("constraints").child(avoid_self(d)),
        ),
    ]
}

/// The calls that remove one fence device and its constraint (constraint first).
pub fn delete_fence_device(d: &FenceDevice) -> Vec<CibUpdate> {
    vec![
        CibUpdate::delete(&Element::new("rsc_location").attr("id", avoid_self_id(d))),
        CibUpdate::delete(&Element::new("primitive").attr("id", &d.id)),
    ]
}

/// Pacemaker's watchdog fence device (diskless SBD) must have this id: pacemaker-fenced
/// ignores a `fence_watchdog` device named otherwise (2.1.5 then even aborts on the CIB
/// update), so the cluster has one, listing every node fenced through its own watchdog.
pub const WATCHDOG_DEVICE_ID: &str = "watchdog";

/// The meta attribute holding one node's configuration generation on the shared watchdog
/// device (each node listed keeps its own: adding a node must not void the others' tests).
pub fn watchdog_generation_meta(node: &str) -> String {
    format!("{GENERATION_META}-{node}")
}

/// The watchdog device for `nodes` (name, generation), replacing whatever it was: a
/// `fence_watchdog` stand-in (Pacemaker fences through the target's own watchdog, waiting
/// `stonith-watchdog-timeout`), `pcmk_host_list` the nodes, no constraint (it never runs an
/// agent against anything).
pub fn put_watchdog_device(nodes: &[(String, String)]) -> Vec<CibUpdate> {
    let id = WATCHDOG_DEVICE_ID;
    let ia = format!("{id}-instance_attributes");
    let ma = format!("{id}-meta_attributes");
    let hosts: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
    let mut meta = Element::new("meta_attributes").attr("id", &ma);
    for (n, g) in nodes {
        meta.push(nvpair(&ma, &watchdog_generation_meta(n), g));
    }
    let p = Element::new("primitive")
        .attr("id", id)
        .attr("class", "stonith")
        .attr("type", "fence_watchdog")
        .child(
            Element::new("instance_attributes")
                .attr("id", &ia)
                .child(nvpair(&ia, "pcmk_host_list", &hosts.join(" "))),
        )
        .child(meta)
        .child(
            Element::new("operations").child(
                Element::new("op")
                    .attr("id", format!("{id}-monitor-interval-60s"))
                    .attr("name", "monitor")
                    .attr("interval", "60s")
                    .attr("timeout", "30s"),
            ),
        );
    vec![
        CibUpdate::modify("resources", &Element::new("resources").child(p.clone())),
        CibUpdate::replace("resources", &p),
    ]
}

/// Remove the watchdog device (no node is fenced through its watchdog any more).
pub fn delete_watchdog_device() -> Vec<CibUpdate> {
    vec![CibUpdate::delete(
        &Element::new("primitive").attr("id", WATCHDOG_DEVICE_ID),
    )]
}

/// A complete CIB holding Keel's fragments, for `crm_verify --xml-file` (tests, and `keel
/// cluster verify` before a change is applied). `nodes`: (corosync node id, name).
pub fn verification_document(
    nodes: &[(u32, String)],
    props: &ClusterProperties,
    devices: &[FenceDevice],
) -> Element {
    let mut node_list = Element::new("nodes");
    // Every node as a live member, so the scheduler judges the configuration and not an
    // imaginary cluster with nobody in it.
    let mut status = Element::new("status");
    for (id, name) in nodes {
        status.push(
            Element::new("node_state")
                .attr("id", id)
                .attr("uname", name)
                .attr("in_ccm", "true")
                .attr("crmd", "online")
                .attr("crm-debug-origin", "keel")
                .attr("join", "member")
                .attr("expected", "member"),
        );
        node_list.push(
            Element::new("node")
                .attr("id", id)
                .attr("uname", name)
                .attr("type", "member"),
        );
    }
    let mut resources = Element::new("resources");
    let mut constraints = Element::new("constraints");
    for d in devices {
        resources.push(stonith_primitive(d));
        constraints.push(avoid_self(d));
    }
    Element::new("cib")
        .attr("crm_feature_set", "3.17.4")
        .attr("validate-with", "pacemaker-3.9")
        .attr("epoch", "1")
        .attr("num_updates", "0")
        .attr("admin_epoch", "0")
        .attr("have-quorum", "1")
        .attr_opt("dc-uuid", nodes.first().map(|(id, _)| id))
        .child(
            Element::new("configuration")
                .child(crm_config(props))
                .child(node_list)
                .child(resources)
                .child(constraints),
        )
        .child(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::{FenceAgent, Secret};

    fn dev(node: &str, delay: Option<u32>) -> FenceDevice {
        FenceDevice {
            id: format!("fence-{node}"),
            node: node.into(),
            agent: FenceAgent::Ipmilan {
                ip: "bmc-".to_string() + node,
                port: None,
                username: "admin".into(),
                password: Secret::new("s3cret"),
                lanplus: true,
                privlvl: None,
            },
            delay_s: delay,
            action: None,
        }
    }

    #[test]
    fn secret_values_are_the_agent_secrets() {
        let d = dev("node1", None);
        assert_eq!(
            d.agent.secret_values(),
            std::collections::BTreeMap::from([("password".to_string(), "s3cret".to_string())])
        );
    }

    #[test]
    fn debug_of_an_update_hides_the_xml() {
        let u = put_fence_device(&dev("node1", None));
        let s = format!("{u:?}");
        assert!(!s.contains("s3cret"), "{s}");
        // the password is not in the CIB at all: Pacemaker reads it from its secrets file
        assert!(!u[0].stdin.contains("s3cret"), "{}", u[0].stdin);
        assert!(u[0].stdin.contains(r#"name="password" value="lrm://""#));
        assert!(!u[0].args.iter().any(|a| a.contains("s3cret")));
    }

    /// The generation travels in the same update as the primitive, as a meta attribute (not
    /// an instance attribute: those are handed to the agent).
    #[test]
    fn the_generation_is_a_meta_attribute_of_the_same_update() {
        let d = dev("node2", None);
        let u = put_fence_device_generation(&d, "g42");
        assert_eq!(u.len(), 3);
        assert_eq!(u[2], put_fence_device(&d)[1]);
        // the same primitive, merged (created) then replaced wholesale
        assert_eq!(
            u[1].args,
            ["--replace", "--scope", "resources", "--xml-pipe"].map(String::from)
        );
        let merged = Element::parse(&u[0].stdin).expect("xml");
        assert_eq!(merged.descendants("primitive")[0].render(), u[1].stdin);
        let root = Element::parse(&u[0].stdin).expect("xml");
        let ma = root.descendants("meta_attributes");
        assert_eq!(ma.len(), 1, "{}", u[0].stdin);
        let nv = ma[0].descendants("nvpair");
        assert_eq!(nv[0].get_attr("name"), Some(GENERATION_META));
        assert_eq!(nv[0].get_attr("value"), Some("g42"));
        let ia = root.descendants("instance_attributes");
        assert!(ia[0]
            .descendants("nvpair")
            .iter()
            .all(|n| n.get_attr("name") != Some(GENERATION_META)));
    }

    #[test]
    fn the_device_avoids_its_own_node() {
        let c = avoid_self(&dev("node2", None));
        assert_eq!(c.get_attr("node"), Some("node2"));
        assert_eq!(c.get_attr("rsc"), Some("fence-node2"));
        assert_eq!(c.get_attr("score"), Some("-INFINITY"));
    }

    #[test]
    fn two_nodes_get_a_priority_delay() {
        assert_eq!(
            ClusterProperties::for_size("c", 2).priority_fencing_delay_s,
            10
        );
        assert_eq!(
            ClusterProperties::for_size("c", 3).priority_fencing_delay_s,
            0
        );
    }

    #[test]
    fn stonith_is_always_enabled() {
        let x = crm_config(&ClusterProperties::for_size("c", 3)).render();
        assert!(x.contains(r#"name="stonith-enabled" value="true""#), "{x}");
    }
}
