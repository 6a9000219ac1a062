//! cloud-init NoCloud seeds: the VM spec's `cloud_init` rendered to `meta-data`, `user-data`
//! and `network-config`, written by `xorriso` into a small ISO labelled `cidata` that the
//! domain carries as a second CD-ROM (docs/cloud-init.md).
//!
//! The seed is a volume `vm-VMID-cloudinit.iso` in a directory pool (the pool of the VM's first
//! disk unless `cloud_init.pool` names one), so a VM on a shared file pool finds it on every
//! node. It is rewritten each time the domain is defined (create, update, clone, restore):
//! written beside the old one and renamed over it, so a running guest keeps reading the seed it
//! booted with. Its `instance-id` is derived from the VM's UUID and the rendered settings, so
//! cloud-init applies changed settings at the next boot, and a clone (new UUID) is a new
//! instance.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use keel_api::cloudinit::{CloudInitSeed, CloudInitSpec, IpConfig};
use keel_api::storage::PoolInfo;
use keel_api::vm::VmSpec;
use keel_api::ErrorBody;
use keel_runner::Cmd;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::http::{blocking, check_node, ApiResult, Path as UrlPath};
use crate::tasks::TaskHandle;
use crate::{vms, Node};

/// The seed volume's name in its pool.
pub fn volume_name(vmid: u32) -> String {
    format!("vm-{vmid}-cloudinit.iso")
}

/// The pool the seed of `spec` goes to, if it can be named.
pub fn seed_pool(spec: &VmSpec) -> Option<String> {
    let ci = spec.cloud_init.as_ref()?;
    ci.pool
        .clone()
        .or_else(|| spec.disks.first().and_then(|d| d.pool.clone()))
}

/// Pool types whose volumes are files in a directory Keel can write into.
fn file_pool(p: &PoolInfo) -> bool {
    matches!(p.kind.as_str(), "dir" | "fs" | "netfs") && p.path.is_some()
}

/// Whether `program` is an executable in one of `PATH`'s directories.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Before a task exists: `xorriso` is installed; the seed's pool exists, is active and is a
/// directory pool.
pub fn check(node: &Node, spec: &VmSpec, pools: &[PoolInfo]) -> Result<()> {
    if spec.cloud_init.is_none() {
        return Ok(());
    }
    if !on_path("xorriso") {
        return Err(Error::Conflict(format!(
            "node {} cannot write cloud-init seeds: xorriso is not installed (apt-get install xorriso)",
            node.cfg.node
        )));
    }
    let Some(pool) = seed_pool(spec) else {
        return Err(Error::validation(
            "cloud_init.pool",
            "the VM's first disk is not in a pool, so Keel cannot tell where to put the cloud-init seed: set cloud_init.pool to a directory pool",
        ));
    };
    let field = if spec.cloud_init.as_ref().is_some_and(|c| c.pool.is_some()) {
        "cloud_init.pool"
    } else {
        "disks[0].pool"
    };
    match pools.iter().find(|p| p.name == pool) {
        None => Err(Error::validation(
            field,
            format!(
                "storage pool {pool:?} (for the cloud-init seed) does not exist on node {}",
                node.cfg.node
            ),
        )),
        Some(p) if !p.active => Err(Error::validation(
            field,
            format!("storage pool {pool:?} (for the cloud-init seed) is not active"),
        )),
        Some(p) if !file_pool(p) => Err(Error::validation(
            "cloud_init.pool",
            format!(
                "pool {pool:?} is a {} pool; the cloud-init seed is a small ISO file and needs a directory pool: set cloud_init.pool (e.g. \"local\")",
                p.kind
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// The three files of a NoCloud seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFiles {
    pub instance_id: String,
    pub meta_data: String,
    pub user_data: String,
    pub network_config: String,
}

fn hostname(spec: &VmSpec, ci: &CloudInitSpec) -> String {
    ci.hostname.clone().unwrap_or_else(|| spec.name.clone())
}

/// user-data Keel writes (JSON is YAML, and cloud-init reads it as such; no quoting pitfalls).
fn user_data(spec: &VmSpec, ci: &CloudInitSpec) -> String {
    if let Some(u) = &ci.user_data {
        return if u.ends_with('\n') {
            u.clone()
        } else {
            format!("{u}\n")
        };
    }
    let host = hostname(spec, ci);
    let mut doc = json!({
        "hostname": host.split('.').next().unwrap_or(&host),
        "manage_etc_hosts": true,
    });
    if host.contains('.') {
        doc["fqdn"] = json!(host);
    }
    let keys: Vec<&str> = ci.ssh_keys.iter().map(|k| k.trim()).collect();
    match &ci.user {
        Some(user) => {
            let mut u = json!({
                "name": user,
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": ci.password_hash.is_none(),
            });
            if let Some(h) = &ci.password_hash {
                u["passwd"] = json!(h);
            }
            if !keys.is_empty() {
                u["ssh_authorized_keys"] = json!(keys);
            }
            doc["users"] = json!([u]);
            doc["ssh_pwauth"] = json!(ci.password_hash.is_some());
        }
        None => {
            // the image's default user (e.g. debian) gets the keys
            doc["users"] = json!(["default"]);
            if !keys.is_empty() {
                doc["ssh_authorized_keys"] = json!(keys);
            }
        }
    }
    format!(
        "#cloud-config\n{}\n",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
}

/// network-config (version 1): one physical entry per NIC, named ethN and matched by MAC.
fn network_config(spec: &VmSpec, ci: &CloudInitSpec) -> String {
    let mut config: Vec<Value> = Vec::new();
    for (i, nic) in spec.nics.iter().enumerate() {
        let subnet = match ci.ipconfig.get(i) {
            None | Some(IpConfig::Dhcp {}) => json!({"type": "dhcp"}),
            Some(IpConfig::Static { address, gateway }) => {
                let mut s = json!({"type": "static", "address": address});
                if let Some(g) = gateway {
                    s["gateway"] = json!(g.to_string());
                }
                s
            }
        };
        let mut e = json!({"type": "physical", "name": format!("eth{i}"), "subnets": [subnet]});
        if let Some(m) = &nic.mac {
            e["mac_address"] = json!(m.to_ascii_lowercase());
        }
        config.push(e);
    }
    if !ci.dns.is_empty() || !ci.search.is_empty() {
        let dns: Vec<String> = ci.dns.iter().map(|d| d.to_string()).collect();
        config.push(json!({"type": "nameserver", "address": dns, "search": ci.search}));
    }
    let doc = json!({"version": 1, "config": config});
    format!(
        "{}\n",
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    )
}

/// Render the seed of `spec` (which must have `cloud_init`) for the domain with `uuid`.
pub fn seed_files(spec: &VmSpec, uuid: &str) -> Option<SeedFiles> {
    let ci = spec.cloud_init.as_ref()?;
    let user_data = user_data(spec, ci);
    let network_config = network_config(spec, ci);
    let host = hostname(spec, ci);
    let mut h = Sha256::new();
    for part in [host.as_str(), &user_data, &network_config] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let instance_id = format!("keel-{uuid}-{hex}");
    let meta = json!({"instance-id": instance_id, "local-hostname": host});
    Some(SeedFiles {
        meta_data: format!(
            "{}\n",
            serde_json::to_string_pretty(&meta).unwrap_or_default()
        ),
        instance_id,
        user_data,
        network_config,
    })
}

fn pool_dir(node: &Node, pool: &str) -> Result<PathBuf> {
    let p = node.hv.pool(pool)?;
    match (&p.path, file_pool(&p)) {
        (Some(path), true) => Ok(PathBuf::from(path)),
        _ => Err(Error::Conflict(format!(
            "pool {pool:?} is a {} pool: the cloud-init seed needs a directory pool (set cloud_init.pool)",
            p.kind
        ))),
    }
}

/// The `xorriso` call that writes a seed ISO from the directory `src`.
pub fn xorriso(src: &Path, out: &Path) -> Cmd {
    Cmd::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-r", "-o"])
        .arg(out.display().to_string())
        .arg(src.display().to_string())
        .timeout(Duration::from_secs(60))
}

/// Write (or rewrite) the seed ISO of `spec` and return its path.
pub fn write_seed(node: &Node, spec: &VmSpec, uuid: &str) -> Result<Option<String>> {
    let Some(files) = seed_files(spec, uuid) else {
        return Ok(None);
    };
    let Some(pool) = seed_pool(spec) else {
        return Err(Error::validation(
            "cloud_init.pool",
            "no pool for the cloud-init seed: set cloud_init.pool",
        ));
    };
    let dir = pool_dir(node, &pool)?;
    let name = volume_name(spec.vmid);
    let work = dir.join(format!(".{name}.d"));
    let tmp = dir.join(format!(".{name}.tmp"));
    let out = dir.join(&name);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let written = (|| -> Result<()> {
        std::fs::write(work.join("meta-data"), &files.meta_data)?;
        std::fs::write(work.join("user-data"), &files.user_data)?;
        std::fs::write(work.join("network-config"), &files.network_config)?;
        node.cluster
            .runner
            .run_ok(&xorriso(&work, &tmp))
            .map_err(|e| Error::Internal(format!("writing the cloud-init seed ISO: {e}")))?;
        std::fs::rename(&tmp, &out)?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&work);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    node.hv.refresh_pool(&pool)?;
    Ok(Some(out.display().to_string()))
}

/// Remove the seed volume of VM `vmid` from `pool` (gone already is fine).
pub fn remove_seed(node: &Node, pool: &str, vmid: u32, task: &TaskHandle) {
    let name = volume_name(vmid);
    if node.hv.volume(pool, &name).is_err() {
        return;
    }
    match node.hv.delete_volume(pool, &name) {
        Ok(()) => task.log(format!("deleted the cloud-init seed {pool}/{name}")),
        Err(e) => task.log(format!(
            "warning: the cloud-init seed {pool}/{name} stays ({e}); delete it with `keel volume delete {pool} {name}`"
        )),
    }
}

/// The seed of VM `vmid` as Keel renders it from the saved settings (what the ISO holds once
/// the domain was last defined).
pub fn seed_of(node: &Node, vmid: u32) -> Result<CloudInitSeed> {
    let row = vms::find(node, vmid)?;
    let spec = vms::config(node, vmid)?.spec;
    let (Some(files), Some(pool)) = (seed_files(&spec, &row.uuid), seed_pool(&spec)) else {
        return Err(Error::NotFound(format!(
            "VM {vmid} has no cloud-init settings (turn them on with `keel vm cloud-init {vmid} --enable`)"
        )));
    };
    Ok(CloudInitSeed {
        instance_id: files.instance_id,
        meta_data: files.meta_data,
        user_data: files.user_data,
        network_config: files.network_config,
        pool,
        volume: volume_name(vmid),
    })
}

pub fn routes() -> Router<Arc<Node>> {
    Router::new().route(
        "/api/v1/nodes/{node}/vms/{vmid}/cloud-init",
        get(seed_route),
    )
}

/// The VM's cloud-init seed, file by file (`meta-data`, `user-data`, `network-config`), as Keel
/// writes it from the saved settings; 404 when the VM has none.
#[utoipa::path(get, path = "/api/v1/nodes/{node}/vms/{vmid}/cloud-init", tag = "vms",
    params(("node" = String, Path), ("vmid" = u32, Path)),
    responses((status = 200, body = CloudInitSeed),
        (status = 404, description = "No such VM, or it has no cloud-init settings", body = ErrorBody)))]
pub async fn seed_route(
    State(node): State<Arc<Node>>,
    UrlPath((name, vmid)): UrlPath<(String, u32)>,
) -> ApiResult<Json<CloudInitSeed>> {
    check_node(&node, &name)?;
    Ok(Json(blocking(move || seed_of(&node, vmid)).await?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use keel_api::vm::NicSpec;

    fn spec(ci: CloudInitSpec) -> VmSpec {
        let mut s: VmSpec = serde_json::from_value(json!({
            "vmid": 120, "name": "web-1",
            "disks": [{"pool": "local", "volume": "root.qcow2"}],
        }))
        .unwrap();
        s.nics = vec![
            NicSpec {
                network: Some("default".into()),
                bridge: None,
                model: Default::default(),
                mac: Some("02:4B:45:00:00:01".into()),
            },
            NicSpec {
                network: Some("default".into()),
                bridge: None,
                model: Default::default(),
                mac: Some("02:4b:45:00:00:02".into()),
            },
        ];
        s.cloud_init = Some(ci);
        s
    }

    fn golden(name: &str, got: &str) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/cloudinit")
            .join(name);
        if std::env::var_os("KEEL_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, got).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (KEEL_BLESS=1 writes it)", path.display()));
        assert_eq!(got, want, "golden {name} differs");
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8Q4S8mH8d/SamZ93/4x03MLLDGW4l7VdKG+l+whOpS test@keel";

    #[test]
    fn full_settings_render_to_the_golden_seed() {
        let s = spec(CloudInitSpec {
            hostname: Some("web-1.example.org".into()),
            user: Some("ops".into()),
            password_hash: Some("$6$saltsalt$abcdefghijklmnopqrstuv".into()),
            ssh_keys: vec![KEY.into()],
            ipconfig: vec![IpConfig::Static {
                address: "192.0.2.10/24".into(),
                gateway: Some("192.0.2.1".parse().unwrap()),
            }],
            dns: vec!["192.0.2.53".parse().unwrap()],
            search: vec!["example.org".into()],
            user_data: None,
            pool: None,
        });
        let f = seed_files(&s, "6f1c2c36-0000-4000-8000-000000000001").unwrap();
        golden("full.meta-data", &f.meta_data);
        golden("full.user-data", &f.user_data);
        golden("full.network-config", &f.network_config);
    }

    #[test]
    fn defaults_give_the_vm_name_and_dhcp_and_custom_user_data_is_verbatim() {
        let s = spec(CloudInitSpec::default());
        let f = seed_files(&s, "u").unwrap();
        golden("default.user-data", &f.user_data);
        golden("default.network-config", &f.network_config);
        let s = spec(CloudInitSpec {
            user_data: Some("#cloud-config\nruncmd: [touch /x]".into()),
            ..Default::default()
        });
        assert_eq!(
            seed_files(&s, "u").unwrap().user_data,
            "#cloud-config\nruncmd: [touch /x]\n"
        );
    }

    #[test]
    fn instance_id_changes_with_settings_and_uuid_only() {
        let a = spec(CloudInitSpec::default());
        let id = |s: &VmSpec, u: &str| seed_files(s, u).unwrap().instance_id;
        assert_eq!(id(&a, "u1"), id(&a, "u1"));
        assert_ne!(id(&a, "u1"), id(&a, "u2"));
        let mut b = a.clone();
        b.cloud_init.as_mut().unwrap().hostname = Some("other".into());
        assert_ne!(id(&a, "u1"), id(&b, "u1"));
        let mut c = a.clone();
        c.memory_mib = 4096; // not part of the seed
        assert_eq!(id(&a, "u1"), id(&c, "u1"));
    }

    #[test]
    fn xorriso_labels_the_seed_cidata() {
        let c = xorriso(Path::new("/p/.d"), Path::new("/p/.x.tmp"));
        assert_eq!(
            c.to_argv().join(" "),
            "xorriso -as mkisofs -quiet -V cidata -J -r -o /p/.x.tmp /p/.d"
        );
    }
}
