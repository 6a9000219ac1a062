//! CIB fragments: golden renderings, accepted by Pacemaker's own `crm_verify --xml-file`, and every
//! parameter Keel emits is one the fence agent declares in its `-o metadata`.
//! `KEEL_BLESS=1` rewrites the golden files.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use clusterd::cib::{self, ClusterProperties};
use clusterd::fence::{FenceAgent, FenceDevice, Secret};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cib-golden")
}

fn check_golden(name: &str, text: &str) {
    let p = golden_dir().join(name);
    if std::env::var_os("KEEL_BLESS").is_some() {
        std::fs::write(&p, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (KEEL_BLESS=1 to create)", p.display()));
    assert_eq!(text, want, "golden {name} differs (KEEL_BLESS=1 to accept)");
}

fn nodes(n: u32) -> Vec<(u32, String)> {
    (1..=n).map(|i| (i, format!("node{i}"))).collect()
}

fn ipmi(node: &str, ip: &str) -> FenceDevice {
    FenceDevice {
        id: format!("fence-{node}"),
        node: node.into(),
        agent: FenceAgent::Ipmilan {
            ip: ip.into(),
            port: Some(623),
            username: "keel".into(),
            password: Secret::new("bmc-secret"),
            lanplus: true,
            privlvl: Some("operator".into()),
        },
        delay_s: None,
        action: None,
    }
}

fn cases() -> Vec<(&'static str, u32, Vec<FenceDevice>)> {
    let redfish = |node: &str, delay| FenceDevice {
        id: format!("fence-{node}"),
        node: node.into(),
        agent: FenceAgent::Redfish {
            ip: format!("bmc-{node}.example"),
            port: None,
            username: "root".into(),
            password: Secret::new("calvin"),
            ssl_insecure: true,
            systems_uri: Some("/redfish/v1/Systems/1".into()),
        },
        delay_s: delay,
        action: Some("off".into()),
    };
    let sbd = |node: &str| FenceDevice {
        id: format!("sbd-{node}"),
        node: node.into(),
        agent: FenceAgent::Sbd {
            devices: vec!["/dev/disk/by-id/scsi-36001405keelsbd0".into()],
        },
        delay_s: None,
        action: None,
    };
    let lab = |node: &str| FenceDevice {
        id: format!("fence-{node}"),
        node: node.into(),
        // the netns lab registers its agent as an ordinary one, by program name
        agent: FenceAgent::Agent {
            program: "fence_keellab".into(),
            params: [("lab_dir".to_string(), "/var/tmp/keel-lab/x-1-0".to_string())].into(),
            secrets: Default::default(),
        },
        delay_s: None,
        action: None,
    };
    let vmlab = |node: &str, delay| FenceDevice {
        id: format!("fence-{node}"),
        node: node.into(),
        agent: FenceAgent::Agent {
            program: "fence_keel_lab".into(),
            params: Default::default(),
            secrets: Default::default(),
        },
        delay_s: delay,
        action: None,
    };
    vec![
        (
            "three-ipmilan",
            3,
            vec![
                ipmi("node1", "10.0.9.1"),
                ipmi("node2", "10.0.9.2"),
                ipmi("node3", "10.0.9.3"),
            ],
        ),
        (
            "two-redfish-delay",
            2,
            vec![redfish("node1", Some(10)), redfish("node2", None)],
        ),
        (
            "three-sbd",
            3,
            vec![sbd("node1"), sbd("node2"), sbd("node3")],
        ),
        (
            "three-netns-lab",
            3,
            vec![lab("node1"), lab("node2"), lab("node3")],
        ),
        (
            "two-vm-lab",
            2,
            vec![vmlab("node1", Some(10)), vmlab("node2", None)],
        ),
        ("one-node-no-devices", 1, vec![]),
    ]
}

fn crm_verify(doc: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cib.xml");
    std::fs::write(&f, doc).unwrap();
    let out = Command::new("crm_verify")
        .arg("--xml-file")
        .arg(&f)
        .arg("-V")
        .output()
        .expect("crm_verify (pacemaker-cli-utils) must be installed");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn golden_and_accepted_by_crm_verify() {
    for (name, n, devs) in cases() {
        let names: Vec<String> = nodes(n).into_iter().map(|(_, s)| s).collect();
        let missing = clusterd::fence::check_set(&devs, &names).expect("valid set");
        assert_eq!(missing.is_empty(), !devs.is_empty(), "{name}");
        let props = ClusterProperties::for_size("keel-lab", n as usize);
        let doc = cib::verification_document(&nodes(n), &props, &devs).render();
        check_golden(&format!("{name}.xml"), &doc);
        let (ok, out) = crm_verify(&doc);
        if devs.is_empty() {
            // stonith-enabled is always true, so Pacemaker itself refuses to start anything
            // until a fence device exists: the state right after `keel cluster init`.
            assert!(
                !ok && out.contains("no STONITH resources"),
                "{name}:\n{out}"
            );
        } else {
            assert!(ok, "crm_verify rejected {name}:\n{out}\n{doc}");
        }
        // The whole set of cibadmin calls, in order, as an operator would read them.
        let mut calls = String::new();
        for u in cib::set_properties(&props)
            .into_iter()
            .chain(devs.iter().flat_map(cib::put_fence_device))
        {
            calls.push_str(&format!("cibadmin {}\n{}", u.args.join(" "), u.stdin));
        }
        check_golden(&format!("{name}.calls"), &calls);
    }
}

#[test]
fn crm_verify_can_fail() {
    // A constraint on a resource that does not exist, and a stonith primitive without a type:
    // proof that the check above is not vacuous.
    let props = ClusterProperties::for_size("c", 3);
    let d = ipmi("node1", "10.0.9.1");
    let mut doc = cib::verification_document(&nodes(3), &props, &[d]);
    let res = doc.children[0]
        .children
        .iter_mut()
        .find(|c| c.name == "resources")
        .unwrap();
    res.children[0].attrs.retain(|(k, _)| k != "type");
    let (ok, out) = crm_verify(&doc.render());
    assert!(
        !ok,
        "crm_verify accepted a primitive without a type:\n{out}"
    );
}

/// Every parameter name Keel emits exists in the agent's own metadata.
#[test]
fn params_exist_in_agent_metadata() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (_, _, devs) in cases() {
        for d in devs {
            let prog = d.agent.program();
            let path = match prog {
                "fence_keellab" => repo.join("tests/netns/fence_keellab"),
                "fence_keel_lab" => repo.join("tests/vmlab/fence_keel_lab"),
                p => PathBuf::from("/usr/sbin").join(p),
            };
            let out = Command::new(&path)
                .args(["-o", "metadata"])
                .output()
                .unwrap_or_else(|e| panic!("{}: {e} (fence-agents installed?)", path.display()));
            let meta = String::from_utf8_lossy(&out.stdout);
            for (k, _) in d.agent.params() {
                assert!(
                    meta.contains(&format!("<parameter name=\"{k}\"")),
                    "{prog} has no parameter {k:?}"
                );
            }
        }
    }
}

/// The device generation Keel writes with every `keel fence add` (a meta attribute of the
/// stonith primitive, in the same update) is accepted by Pacemaker.
#[test]
fn the_device_generation_is_accepted_by_crm_verify() {
    let props = ClusterProperties::for_size("keel-lab", 2);
    let devs = [ipmi("node1", "10.0.9.1"), ipmi("node2", "10.0.9.2")];
    let mut doc = cib::verification_document(&nodes(2), &props, &devs);
    let res = doc.children[0]
        .children
        .iter_mut()
        .find(|c| c.name == "resources")
        .unwrap();
    for (i, d) in devs.iter().enumerate() {
        let update = &cib::put_fence_device_generation(d, &format!("18a{i}"))[0];
        let frag = keel_xml::Element::parse(&update.stdin).unwrap();
        res.children[i] = frag.children[0].clone();
    }
    let text = doc.render();
    let attr = format!(r#"name="{}""#, cib::GENERATION_META);
    assert_eq!(text.matches(&attr).count(), 2, "{text}");
    let (ok, out) = crm_verify(&text);
    assert!(
        ok,
        "crm_verify rejected the device generation:\n{out}\n{text}"
    );
}

#[test]
fn floating_address_accepted_by_crm_verify() {
    // the keel-vip primitive next to a 3-node cluster's fence devices, IPv4 and IPv6
    for addr in ["192.0.2.10/24", "fd6b:6565:6c00:1::100/64"] {
        let v = clusterd::vip::Vip::parse(addr).expect("valid address");
        let props = ClusterProperties::for_size("keel-lab", 3);
        let devs = vec![
            ipmi("node1", "10.0.9.1"),
            ipmi("node2", "10.0.9.2"),
            ipmi("node3", "10.0.9.3"),
        ];
        let mut doc = cib::verification_document(&nodes(3), &props, &devs);
        let res = doc.children[0]
            .children
            .iter_mut()
            .find(|c| c.name == "resources")
            .expect("resources");
        res.push(clusterd::vip::primitive(&v));
        let doc = doc.render();
        let (ok, out) = crm_verify(&doc);
        assert!(
            ok,
            "crm_verify rejected the floating address {addr}:\n{out}\n{doc}"
        );
    }
}

#[test]
fn ha_vm_accepted_by_crm_verify() {
    // two HA VMs (one stopped) next to a 3-node cluster's fence devices
    let props = ClusterProperties::for_size("keel-lab", 3);
    let devs = vec![
        ipmi("node1", "10.0.9.1"),
        ipmi("node2", "10.0.9.2"),
        ipmi("node3", "10.0.9.3"),
    ];
    let mut doc = cib::verification_document(&nodes(3), &props, &devs);
    let res = doc.children[0]
        .children
        .iter_mut()
        .find(|c| c.name == "resources")
        .expect("resources");
    for (vmid, started) in [(100, true), (101, false)] {
        res.push(clusterd::ha::primitive(&clusterd::ha::HaVm {
            vmid,
            config: format!("/var/lib/keel/ha/{vmid}.xml"),
            priority: 1,
            max_restarts: 3,
            started,
            remoteuri: Some("qemu+tls://%n/system".into()),
            migrate_extra: None,
        }));
    }
    let doc = doc.render();
    let (ok, out) = crm_verify(&doc);
    assert!(ok, "crm_verify rejected the HA VMs:\n{out}\n{doc}");
}

#[test]
fn placement_rules_accepted_by_crm_verify() {
    use keel_api::ha::{HaRule, HaRuleKind, HaRuleNode};
    let props = ClusterProperties::for_size("keel-lab", 3);
    let devs = vec![
        ipmi("node1", "10.0.9.1"),
        ipmi("node2", "10.0.9.2"),
        ipmi("node3", "10.0.9.3"),
    ];
    let mut doc = cib::verification_document(&nodes(3), &props, &devs);
    let cfg = &mut doc.children[0];
    let res = cfg
        .children
        .iter_mut()
        .find(|c| c.name == "resources")
        .expect("resources");
    for vmid in [100, 101, 102] {
        res.push(clusterd::ha::primitive(&clusterd::ha::HaVm {
            vmid,
            config: format!("/var/lib/keel/ha/{vmid}.xml"),
            priority: 0,
            max_restarts: 3,
            started: true,
            remoteuri: None,
            migrate_extra: None,
        }));
    }
    let rule = |id: &str, kind, vms: &[u32], nodes: &[&str], hard| HaRule {
        id: id.into(),
        kind,
        vms: vms.to_vec(),
        nodes: nodes
            .iter()
            .map(|n| HaRuleNode {
                node: n.to_string(),
                priority: 50,
            })
            .collect(),
        hard,
    };
    let rules = [
        rule(
            "pin",
            HaRuleKind::NodeAffinity,
            &[100],
            &["node1", "node2"],
            true,
        ),
        rule("pref", HaRuleKind::NodeAffinity, &[101], &["node3"], false),
        rule("pair", HaRuleKind::Together, &[101, 102], &[], false),
        rule("spread", HaRuleKind::Apart, &[100, 101], &[], true),
    ];
    let cons = cfg
        .children
        .iter_mut()
        .find(|c| c.name == "constraints")
        .expect("constraints");
    for r in &rules {
        for c in clusterd::ha::rule_constraints(r) {
            cons.push(c);
        }
    }
    let doc = doc.render();
    let (ok, out) = crm_verify(&doc);
    assert!(ok, "crm_verify rejected the placement rules:\n{out}\n{doc}");
}

/// Run Keel's updates with Pacemaker's own `cibadmin` on a CIB file (`CIB_file`, no cluster).
fn cibadmin_on_file(file: &Path, args: &[String], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("cibadmin")
        .args(args)
        .env("CIB_file", file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cibadmin (pacemaker-cli-utils) must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cibadmin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A device changed to another agent keeps nothing of the old one: `cibadmin --modify` alone
/// merges, so an IPMI device replaced by SBD kept its `password=lrm://` and Pacemaker refused
/// to fence ("CIB secrets unavailable") once the secret files were gone (found in the BMC lab).
#[test]
fn a_changed_device_keeps_no_parameter_of_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("cib.xml");
    let empty = Command::new("cibadmin").arg("--empty").output().unwrap();
    assert!(empty.status.success());
    std::fs::write(&f, &empty.stdout).unwrap();
    let sbd = FenceDevice {
        id: "fence-node2".into(),
        node: "node2".into(),
        agent: FenceAgent::Sbd {
            devices: vec!["/dev/disk/by-id/virtio-keel-sbd".into()],
        },
        delay_s: None,
        action: None,
    };
    for (d, generation) in [(ipmi("node2", "10.0.9.2"), "g1"), (sbd, "g2")] {
        for u in cib::put_fence_device_generation(&d, generation) {
            cibadmin_on_file(&f, &u.args, &u.stdin);
        }
    }
    let res = cibadmin_on_file(
        &f,
        &["--query", "--scope", "resources"].map(String::from),
        "",
    );
    assert!(res.contains(r#"type="fence_sbd""#), "{res}");
    assert!(
        res.contains(r#"value="g2""#) && !res.contains(r#"value="g1""#),
        "{res}"
    );
    for stale in ["password", "\"ip\"", "username", "lanplus", "privlvl"] {
        assert!(
            !res.contains(stale),
            "{stale} survived the change of agent:\n{res}"
        );
    }
    let cons = cibadmin_on_file(
        &f,
        &["--query", "--scope", "constraints"].map(String::from),
        "",
    );
    assert_eq!(cons.matches("<rsc_location").count(), 1, "{cons}");
}

/// Diskless SBD's one `watchdog` device (Pacemaker's required id) covering two nodes, each with
/// its own generation: golden calls, and the device beside a BMC device accepted by
/// `crm_verify` with `stonith-watchdog-timeout` set.
#[test]
fn the_watchdog_device_is_golden_and_accepted_by_crm_verify() {
    let nodes2 = vec![
        ("node2".to_string(), "g2".to_string()),
        ("node3".to_string(), "g3".to_string()),
    ];
    let calls: String = cib::put_watchdog_device(&nodes2)
        .into_iter()
        .chain(cib::delete_watchdog_device())
        .map(|u| format!("cibadmin {}\n{}\n", u.args.join(" "), u.stdin))
        .collect();
    check_golden("watchdog.calls", &calls);
    assert!(calls.contains("id=\"watchdog\"") && calls.contains("value=\"node2 node3\""));
    assert!(calls.contains("name=\"keel-generation-node3\" value=\"g3\""));
    let props = ClusterProperties::for_size("keel-lab", 3);
    let mut doc = cib::verification_document(&nodes(3), &props, &[ipmi("node1", "10.0.9.1")]);
    let Some(cfg) = doc.children.get_mut(0) else {
        panic!("no configuration element")
    };
    let Some(u) = cib::put_watchdog_device(&nodes2).pop() else {
        panic!("no update")
    };
    let p = keel_xml::Element::parse(&u.stdin).unwrap();
    for c in cfg.children.iter_mut() {
        if c.name == "resources" {
            c.children.push(p.clone());
        }
        if c.name == "crm_config" {
            if let Some(set) = c.children.get_mut(0) {
                set.children.push(
                    keel_xml::Element::new("nvpair")
                        .attr("id", "cib-bootstrap-options-stonith-watchdog-timeout")
                        .attr("name", "stonith-watchdog-timeout")
                        .attr("value", "20s"),
                );
            }
        }
    }
    let doc = doc.render();
    let (ok, out) = crm_verify(&doc);
    assert!(ok, "crm_verify rejected the watchdog device:\n{out}\n{doc}");
}
