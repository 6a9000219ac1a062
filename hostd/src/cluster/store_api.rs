//! The replicated config store seen through the API (`/cluster/config`, `/cluster/resources`)
//! and copying users and tokens to/from it at init and join.

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

// ------------------------------------------------------------------ config store

pub(super) fn store_err(e: clusterd::store::StoreError) -> Error {
    // Unavailable (daemon down, writes held in a two-node split) is 503 with the store's message
    Error::from(e)
}

pub(super) fn check_key(key: &str) -> Result<()> {
    if !keel_api::cluster::valid_config_key(key) {
        return Err(Error::validation(
            "key",
            format!("{key:?} is not a config key: 1-256 letters, digits, '/', '-', '_', '.', no empty segments"),
        ));
    }
    Ok(())
}

/// API keys are `a/b`; the store's are `/a/b`.
pub(super) fn store_key(k: &str) -> String {
    format!("/{k}")
}

pub(super) fn entry(e: clusterd::store::Entry) -> keel_api::cluster::ConfigEntry {
    keel_api::cluster::ConfigEntry {
        key: e.key.strip_prefix('/').unwrap_or(&e.key).to_string(),
        version: e.version,
        value: e.value,
    }
}

/// Password and token hashes are for root's eyes only.
pub(super) fn may_read(p: &Principal, key: &str) -> bool {
    p.user == "root" || !(key == "access" || key.starts_with("access/"))
}
