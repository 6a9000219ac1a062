//! The replicated config store seen through the API (`/cluster/config`, `/cluster/resources`)
//! and copying users and tokens to/from it at init and join.

use clusterd::store::client::Client;
use keel_api::cluster::{ClusterResource, ConfigEntry, ConfigPut};

use super::LOCAL_TOKEN_FILE;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::tasks::TaskHandle;
use crate::Node;

/// Retry `f` while the config store is starting, syncing or not yet quorate (up to 60 s).
pub(super) fn store_retry<T>(
    what: &str,
    mut f: impl FnMut() -> std::result::Result<T, clusterd::store::StoreError>,
) -> Result<T> {
    use clusterd::store::StoreError as S;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e @ (S::Unavailable { .. } | S::Syncing | S::NotQuorate))
                if std::time::Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, "{what}: waiting for the config store");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => return Err(Error::from(e)),
        }
    }
}

/// `cluster init`: this node's users and API tokens become the cluster's (in the config store,
/// hashes only). The node-local root token stays local.
pub(super) fn copy_access_to_store(node: &Node, t: &TaskHandle) -> Result<()> {
    let entries = crate::auth::local_access_entries(node.auth.db())?;
    let st = crate::db::Store::local();
    let started = std::time::Instant::now();
    for (k, v) in &entries {
        store_retry("copying users", || st.put(k, v)).map_err(|e| {
            Error::Internal(format!(
                "copying users and tokens into the config store ({k}): {e}; until they are there only the node-local root token ({LOCAL_TOKEN_FILE}) authenticates"
            ))
        })?;
    }
    t.log(format!(
        "users and API tokens are cluster-wide now: {} entries copied into the config store in {} ms",
        entries.len(),
        started.elapsed().as_millis()
    ));
    Ok(())
}

/// `join`: this node's own users and tokens are replaced by the cluster's (as Proxmox does);
/// the local copy is refreshed from the config store once it synced.
pub(super) fn replace_access_from_store(node: &Node, t: &TaskHandle) {
    t.log("this node's users and API tokens are replaced by the cluster's (log in with the cluster's root password from now on)");
    let st = crate::db::Store::local();
    let r = store_retry("reading users", || {
        let u = st.list("/access/users")?;
        if u.is_empty() {
            // not synced with the members yet
            return Err(clusterd::store::StoreError::Syncing);
        }
        Ok(())
    })
    .and_then(|_| crate::auth::replace_local_access(node.auth.db(), &st));
    match r {
        Ok((u, k)) => t.log(format!(
            "local copy of the cluster's accounts: {u} users, {k} API tokens"
        )),
        Err(e) => t.log(format!(
            "warning: the local copy of the cluster's accounts was not refreshed ({e}); authentication uses the config store anyway"
        )),
    }
}

pub(super) fn store_err(e: clusterd::store::StoreError) -> Error {
    // Unavailable (daemon down, writes held in a two-node split) is 503 with the store's message
    Error::from(e)
}

fn check_key(key: &str) -> Result<()> {
    if !keel_api::cluster::valid_config_key(key) {
        return Err(Error::validation(
            "key",
            format!("{key:?} is not a config key: 1-256 letters, digits, '/', '-', '_', '.', no empty segments"),
        ));
    }
    Ok(())
}

/// API keys are `a/b`; the store's are `/a/b`.
fn store_key(k: &str) -> String {
    format!("/{k}")
}

fn entry(e: clusterd::store::Entry) -> ConfigEntry {
    ConfigEntry {
        key: e.key.strip_prefix('/').unwrap_or(&e.key).to_string(),
        version: e.version,
        value: e.value,
    }
}

/// Password and token hashes are for root's eyes only.
fn may_read(p: &Principal, key: &str) -> bool {
    p.user == "root" || !(key == "access" || key.starts_with("access/"))
}

/// VMs of every member, from the config store (this node's replica).
pub(super) async fn resources(node: &Node) -> Result<Vec<ClusterResource>> {
    if node.cluster.record()?.is_none() {
        return Err(Error::Conflict(
            "this node is not in a cluster: its VMs are at /api/v1/nodes/{node}/vms".into(),
        ));
    }
    let c = Client::local();
    let mut out = vec![];
    for e in c.list("/vms").await.map_err(store_err)? {
        let Some(vmid) = e.key.rsplit('/').next().and_then(|v| v.parse::<u32>().ok()) else {
            continue;
        };
        let s = |k: &str| e.value[k].as_str().unwrap_or("").to_string();
        out.push(ClusterResource {
            kind: "vm".into(),
            id: format!("vm/{vmid}"),
            vmid,
            node: s("node"),
            name: s("name"),
            spec: serde_json::from_value(e.value["spec"].clone()).ok(),
        });
    }
    out.sort_by_key(|r| r.vmid);
    Ok(out)
}

/// The config store exists only on a clustered node: a standalone node says so (409) instead of
/// reporting its absent daemon as unavailable (503).
fn require_clustered(node: &Node) -> Result<()> {
    if node.cluster.record()?.is_none() {
        return Err(Error::Conflict(
            "this node is not in a cluster, so it has no cluster config store: run keel cluster init, or keel join a cluster".into(),
        ));
    }
    Ok(())
}

/// The entries under `prefix` that `p` may read.
pub(super) async fn list(node: &Node, p: &Principal, prefix: &str) -> Result<Vec<ConfigEntry>> {
    require_clustered(node)?;
    let c = Client::local();
    let v = c.list(&store_key(prefix)).await.map_err(store_err)?;
    Ok(v.into_iter()
        .map(entry)
        .filter(|e| may_read(p, &e.key))
        .collect())
}

pub(super) async fn get(node: &Node, p: &Principal, key: &str) -> Result<ConfigEntry> {
    check_key(key)?;
    require_clustered(node)?;
    if !may_read(p, key) {
        return Err(Error::Forbidden(
            "access/ (password and token hashes) is readable by root only".into(),
        ));
    }
    let c = Client::local();
    Ok(entry(c.get(&store_key(key)).await.map_err(store_err)?))
}

/// Write `key`: unconditionally, only if absent (`version` 0), or only at `version`.
pub(super) async fn put(node: &Node, key: String, req: ConfigPut) -> Result<ConfigEntry> {
    check_key(&key)?;
    require_clustered(node)?;
    let c = Client::local();
    let version = match req.version {
        None => c.put(&store_key(&key), &req.value).await,
        Some(0) => c.create(&store_key(&key), &req.value).await,
        Some(v) => c.cas(&store_key(&key), &req.value, v).await,
    }
    .map_err(store_err)?;
    Ok(ConfigEntry {
        key,
        version,
        value: req.value,
    })
}

pub(super) async fn delete(node: &Node, key: &str) -> Result<()> {
    check_key(key)?;
    require_clustered(node)?;
    let c = Client::local();
    c.delete(&store_key(key), None).await.map_err(store_err)?;
    Ok(())
}
