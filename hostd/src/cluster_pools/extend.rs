//! An iSCSI pool reaches a node that joined the cluster after the pool was made
//! (docs/storage.md, "A node joins later"): `keel storage pool extend NAME [NODE...]`,
//! `POST /api/v1/cluster/storage-pools/{name}/extend`.
//!
//! Run on a node of the pool. Before any task: the pool is an iSCSI one and ready, the nodes
//! named are members it does not reach, fencing is proven on every member (the new ones
//! included: they are about to hold DLM locks), and each new node logs in to the LUN with the
//! CHAP secret this node's open-iscsi record holds (handed over the signed peer call only) and
//! sees the same LUN; a refusal logs them out again. The task is
//! [`keel_storage::iscsi_gfs2::extend`]; the record takes the new nodes once it succeeded. A
//! task that failed part-way is completed by running the extension again.

use super::*;

/// A pool checked for its extension task (the LUN's CHAP secret filled in).
pub struct Extension {
    pool: IscsiPool,
    new: Vec<String>,
    rec: PoolRecord,
}

/// The members to add: those named, or every member the pool lacks.
fn nodes_to_add(
    name: &str,
    pool_nodes: &[String],
    members: &[String],
    asked: &[String],
) -> Result<Vec<String>> {
    let missing: Vec<String> = members
        .iter()
        .filter(|m| !pool_nodes.contains(m))
        .cloned()
        .collect();
    if asked.is_empty() {
        if missing.is_empty() {
            return Err(Error::Conflict(format!(
                "cluster pool {name} already reaches every member ({})",
                pool_nodes.join(", ")
            )));
        }
        return Ok(missing);
    }
    let mut out = Vec::new();
    for n in asked {
        if !members.contains(n) {
            return Err(Error::validation(
                "nodes",
                format!(
                    "{n:?} is not a member of the cluster (members: {}): `keel join` it first",
                    members.join(", ")
                ),
            ));
        }
        if pool_nodes.contains(n) {
            return Err(Error::validation(
                "nodes",
                format!("cluster pool {name} already reaches {n}"),
            ));
        }
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    Ok(out)
}

/// Everything the API refuses before a task exists; the new nodes are logged in on success.
pub fn check_extend(node: &Node, name: &str, req: &ClusterPoolExtend) -> Result<Extension> {
    let (cluster, st) = clustered_store(node)?;
    let e = st
        .get(&pool_key(name))?
        .ok_or_else(|| Error::NotFound(format!("no cluster pool named {name:?}")))?;
    let rec: PoolRecord =
        serde_json::from_value(e.value).map_err(|x| Error::Internal(x.to_string()))?;
    let mut pool = match rec.def()? {
        Def::Iscsi(i) => i.clone(),
        Def::Drbd(d) => {
            return Err(Error::Conflict(format!(
                "{name} is a drbd-gfs2 pool: DRBD replicates it between exactly two nodes ({}), \
                 so it cannot reach a third. For storage every node shares, create an \
                 iscsi-gfs2 or iscsi-lvm pool on an iSCSI LUN and move the VM disks there \
                 (keel vm migrate, or a backup restored into the new pool)",
                d.drbd
                    .peers
                    .iter()
                    .map(|p| p.node.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )))
        }
    };
    if rec.state != "ready" {
        return Err(Error::Conflict(format!(
            "cluster pool {name} is {}: only a ready pool is extended",
            rec.state
        )));
    }
    let me = node.cfg.node.as_str();
    if !pool.nodes.iter().any(|n| n == me) {
        return Err(Error::Conflict(format!(
            "cluster pool {name} is not on {me}: run the extension on one of its nodes ({})",
            pool.nodes.join(", ")
        )));
    }
    let members: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let new = nodes_to_add(name, &pool.nodes, &members, &req.nodes)?;
    crate::cluster::require_fence_tested(node)?;
    let r = node.cluster.runner.as_ref();
    let shown = r
        .run(&pool.lun.show_record())
        .map_err(|e| storage_err(e.into()))?;
    pool.lun.chap_secret =
        keel_storage::iscsi::parse_record_secret(&shown.stdout).ok_or_else(|| {
            Error::Conflict(format!(
                "{me} has no CHAP secret in its open-iscsi record of {} at {} (iscsiadm -m node \
                 -T {} -p {} -o show): is it still logged in? `keel storage status` shows the \
                 pool's sessions",
                pool.lun.target,
                pool.lun.addr(),
                pool.lun.target,
                pool.lun.addr()
            ))
        })?;
    let remotes = new
        .iter()
        .map(|n| Remote::new(node, n))
        .collect::<Result<Vec<_>>>()?;
    let peers: Vec<&dyn IscsiPeer> = remotes.iter().map(|r| r as &dyn IscsiPeer).collect();
    iscsi_gfs2::attach_new(r, me, &peers, &pool).map_err(storage_err)?;
    Ok(Extension { pool, new, rec })
}

/// The task: [`iscsi_gfs2::extend`], then the record with the new nodes and, for
/// `iscsi-gfs2`, the libvirt pool on them.
pub fn extend_task(node: &Node, x: Extension, t: &TaskHandle) -> Result<()> {
    let Extension { pool, new, mut rec } = x;
    t.log(format!(
        "{} logged in to {} LUN {} at {}",
        new.join(", "),
        pool.lun.target,
        pool.lun.lun,
        pool.lun.addr()
    ));
    let remotes = new
        .iter()
        .map(|n| Remote::new(node, n))
        .collect::<Result<Vec<_>>>()?;
    let peers: Vec<&dyn IscsiPeer> = remotes.iter().map(|r| r as &dyn IscsiPeer).collect();
    let done = iscsi_gfs2::extend(
        node.cluster.runner.as_ref(),
        &peers,
        &pool,
        &Waits::default(),
        &TaskSink(t),
    )
    .map_err(|e| {
        Error::Conflict(format!(
            "{}; the steps done so far stay: run the extension again once the cause is fixed, \
             it completes them",
            storage_err(e)
        ))
    })?;
    let mut stored = done.clone();
    stored.lun.chap_secret = String::new();
    rec.iscsi = Some(stored);
    Store::local().put(&pool_key(&pool.pool), &to_value(&rec)?)?;
    t.log(format!(
        "cluster pool {} now on {}",
        pool.pool,
        done.nodes.join(", ")
    ));
    if pool.layout == IscsiLayout::Gfs2 {
        wait_libvirt_pools(node, &pool.pool, t)?;
    }
    t.progress(1.0);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn which_nodes_are_added() {
        let pool = v(&["node1", "node2"]);
        let members = v(&["node1", "node2", "node3", "node4"]);
        assert_eq!(
            nodes_to_add("shared", &pool, &members, &[]).unwrap(),
            ["node3", "node4"]
        );
        assert_eq!(
            nodes_to_add("shared", &pool, &members, &v(&["node4", "node4"])).unwrap(),
            ["node4"]
        );
        let e = nodes_to_add("shared", &pool, &members, &v(&["node9"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"node9\" is not a member") && e.contains("keel join"),
            "{e}"
        );
        let e = nodes_to_add("shared", &pool, &members, &v(&["node2"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("already reaches node2"), "{e}");
        let e = nodes_to_add("shared", &pool, &pool, &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("already reaches every member"), "{e}");
    }
}
