//! Unit-test support: a clustered node on the fake hypervisor whose cluster files live in a
//! temporary directory and whose corosync/Pacemaker commands go to a `keel_runner::Fake`.

use std::sync::Arc;

use clusterd::ca::{ClusterCa, NodeIdentity};
use clusterd::corosync_conf::{ConfNode, CorosyncConf, LatencyClass};
use clusterd::form::{self, ClusterRecord, MemberRecord, Paths};
use keel_runner::Fake;

use crate::error::{Error, Result};
use crate::hv::fake::FakeHv;
use crate::Node;

/// This node's name in [`crate::tests_support::fake_node`].
pub(super) const SELF: &str = "n1";

pub(super) struct Lab {
    pub node: Arc<Node>,
    pub fake: Arc<Fake>,
    pub paths: Paths,
    _state: tempfile::TempDir,
    _files: tempfile::TempDir,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}

/// `members`: (name, corosync address, API address), this node ([`SELF`]) first. The cluster
/// `c1` is formed on disk: CA, this node's certificate, authkeys, corosync.conf, the record,
/// root's migration key; nothing runs.
pub(super) fn clustered(members: &[(&str, &str, &str)], fake: Fake) -> Result<Lab> {
    let fake = Arc::new(fake);
    let (node, paths, state, files) = clustered_on(members, fake.clone())?;
    Ok(Lab {
        node,
        fake,
        paths,
        _state: state,
        _files: files,
    })
}

/// A lone member whose cluster stack runs under systemd (what sbd needs); its engine commands
/// go to `fake`.
pub(super) fn systemd_single(fake: Fake) -> Result<Lab> {
    let fake = Arc::new(fake);
    let (node, paths, state, files) =
        clustered_on(&[(SELF, "192.0.2.1", "127.0.0.1:1")], fake.clone())?;
    let mut node = Arc::try_unwrap(node).map_err(|_| err("the lab's node is shared"))?;
    node.cluster.svc = Arc::new(clusterd::service::Systemd);
    Ok(Lab {
        node: Arc::new(node),
        fake,
        paths,
        _state: state,
        _files: files,
    })
}

/// [`clustered`], with any runner for the engine commands.
pub(super) fn clustered_on(
    members: &[(&str, &str, &str)],
    runner: Arc<dyn keel_runner::Runner>,
) -> Result<(Arc<Node>, Paths, tempfile::TempDir, tempfile::TempDir)> {
    let (mut node, state) = crate::tests_support::fake_node(Arc::new(FakeHv::new()))?;
    let files = tempfile::tempdir()?;
    let d = files.path();
    let paths = Paths {
        corosync_dir: d.join("corosync"),
        pacemaker_dir: d.join("pacemaker"),
        pacemaker_cib_dir: d.join("cib"),
        cluster_dir: d.join("cluster"),
        ssh_dir: d.join("ssh"),
        known_hosts: d.join("ssh/ssh_known_hosts"),
        root_ssh_dir: d.join("root-ssh"),
        sbd_defaults: d.join("sbd"),
    };
    let ca = ClusterCa::generate("c1").map_err(err)?;
    ca.save(&paths.cluster_dir).map_err(err)?;
    let (cert, key) = ca
        .issue(&NodeIdentity {
            name: SELF.into(),
            dns: vec!["localhost".into()],
            addrs: vec![std::net::IpAddr::from([127, 0, 0, 1])],
        })
        .map_err(err)?;
    let w = |p: std::path::PathBuf, b: &[u8], mode| {
        clusterd::ca::write_file_mode(&p, b, mode).map_err(err)
    };
    w(paths.node_cert(), cert.as_bytes(), 0o644)?;
    w(paths.node_key(), key.as_bytes(), 0o600)?;
    w(paths.corosync_authkey(), &[7u8; 128], 0o400)?;
    w(paths.pacemaker_authkey(), &[8u8; 256], 0o600)?;
    w(
        paths.root_ssh_dir.join("id_ed25519.pub"),
        b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== keel-migration\n",
        0o644,
    )?;
    let mut conf = None::<CorosyncConf>;
    let mut recs = vec![];
    for (i, (name, addr, api)) in members.iter().enumerate() {
        let n = ConfNode {
            nodeid: i as u32 + 1,
            name: name.to_string(),
            addrs: vec![addr.to_string()],
        };
        match conf.as_mut() {
            None => conf = Some(CorosyncConf::new("c1", n, LatencyClass::Local)),
            Some(c) => c.add_node(n).map_err(err)?,
        }
        recs.push(MemberRecord {
            name: name.to_string(),
            nodeid: i as u32 + 1,
            api: api.to_string(),
        });
    }
    let conf = conf.ok_or_else(|| err("no members"))?;
    form::write_corosync_conf(&paths, &conf)?;
    ClusterRecord {
        name: "c1".into(),
        node: SELF.into(),
        nodeid: 1,
        members: recs,
        removed: vec![],
    }
    .save(&paths)?;
    node.cluster.paths = paths.clone();
    node.cluster.runner = runner;
    Ok((Arc::new(node), paths, state, files))
}

/// `cibadmin --modify … --scope crm_config` with Keel's properties for `nodes` members.
pub(super) fn properties_call(nodes: usize) -> (Vec<String>, Vec<u8>) {
    let u = clusterd::cib::set_properties(&clusterd::cib::ClusterProperties::for_size("c1", nodes))
        .remove(0);
    let mut argv = vec!["cibadmin".to_string()];
    argv.extend(u.args);
    (argv, u.stdin.into_bytes())
}

/// The first quorate `corosync-quorumtool -s` sample.
pub(super) const QUORATE: &str =
    include_str!("../../../clusterd/tests/samples/quorumtool-3-nodes.txt");
