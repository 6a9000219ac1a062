//! HTTP-level behaviour of the API on a real hostd + libvirtd: authentication, CSRF, tokens,
//! validation errors with their field, conflicts, 404s, storage, networks, the OpenAPI
//! document, and task persistence across a crash of hostd.

mod common;

use common::{live_dir, virsh, Hostd, PASSWORD};
use keel_api::task::TaskState;
use serde_json::{json, Value};

fn err_of(r: reqwest::blocking::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

#[test]
fn auth_csrf_and_tokens() {
    let h = Hostd::start();
    let anon = &h.client;
    // No credentials → 401 with a JSON error; health and login need none.
    let (s, b) = err_of(
        anon.get(h.node_url("/vms"))
            .send()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(s, 401);
    assert_eq!(b["error"]["code"], "unauthorized");
    assert_eq!(
        anon.get(h.url("/api/v1/health"))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0),
        200
    );
    let (s, _) = err_of(
        anon.get(h.url("/api/v1/openapi.json"))
            .send()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(s, 401);

    // Wrong password → 401.
    let r = anon
        .post(h.url("/api/v1/access/ticket"))
        .json(&json!({"username": "root", "password": "nope"}))
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 401);

    // Ticket: reads work without CSRF; writes need the right CSRF token.
    let (c, ticket, csrf) = h.login();
    let cookie = format!("KeelAuthCookie={ticket}");
    let r = c
        .get(h.node_url("/vms"))
        .header("Cookie", &cookie)
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    let body = json!({"name": "csrf.qcow2", "size_mib": 1});
    let path = h.node_url(&format!("/storage/{}/content", h.pool));
    let (s, b) = err_of(
        c.post(&path)
            .header("Cookie", &cookie)
            .json(&body)
            .send()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!((s, b["error"]["code"].clone()), (403, json!("forbidden")));
    let (s, _) = err_of(
        c.post(&path)
            .header("Cookie", &cookie)
            .header("CSRFPreventionToken", "bad")
            .json(&body)
            .send()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    assert_eq!(s, 403);
    let r = c
        .post(&path)
        .header("Cookie", &cookie)
        .header("CSRFPreventionToken", &csrf)
        .json(&body)
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.task(r).state, TaskState::Ok);

    // API token (created by the harness) works without CSRF; a wrong secret does not.
    assert_eq!(h.get("/vms").status(), 200);
    let bad = h
        .token
        .rsplit_once('=')
        .map(|(id, _)| format!("{id}=wrong"))
        .unwrap_or_default();
    let r = anon
        .get(h.node_url("/vms"))
        .header("Authorization", format!("KeelAPIToken {bad}"))
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 401);

    // Logout ends the session.
    let r = c
        .delete(h.url("/api/v1/access/ticket"))
        .header("Cookie", &cookie)
        .header("CSRFPreventionToken", &csrf)
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 204);
    let r = c
        .get(h.node_url("/vms"))
        .header("Cookie", &cookie)
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 401);

    // The password printed/stored by setup is the one that works (KEEL_ADMIN_PASSWORD here).
    assert!(!PASSWORD.is_empty());
    // The served certificate is the one whose fingerprint hostd stored.
    let fp = std::fs::read_to_string(h.dir.join("state/hostd.fingerprint")).unwrap_or_default();
    assert_eq!(fp.trim().split(':').count(), 32, "{fp}");
}

#[test]
fn validation_conflicts_and_not_found() {
    let h = Hostd::start();
    let (x, y, z) = (h.id(0), h.id(1), h.id(2));
    let base = |vmid: u32, name: &str| json!({"vmid": vmid, "name": format!("{}-{name}", h.prefix), "memory_mib": 128});

    let mut bad = base(x, "a");
    bad["memory_mib"] = json!(4);
    let (s, b) = err_of(h.post("/vms", bad));
    assert_eq!(s, 400);
    assert_eq!(b["error"]["field"], "memory_mib", "{b}");
    assert_eq!(b["error"]["code"], "validation");
    assert_eq!(
        b["error"]["message"],
        "memory_mib 4 is out of range: use 16 to 16777216 MiB"
    );

    let mut bad = base(x, "a");
    bad["disks"] = json!([{"pool": "no-such-pool", "size_mib": 8}]);
    let (s, b) = err_of(h.post("/vms", bad));
    assert_eq!(s, 400);
    assert_eq!(b["error"]["field"], "disks[0].pool", "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("does not exist"),
        "{b}"
    );

    let mut bad = base(x, "a");
    bad["disks"] = json!([{"pool": h.pool, "size_mib": 8, "bus": "floppy"}]);
    let (s, b) = err_of(h.post("/vms", bad));
    assert_eq!(s, 400);
    assert_eq!(b["error"]["field"], "disks[0].bus", "{b}");

    let mut bad = base(x, "a");
    bad["nics"] = json!([{"network": "no-such-net"}]);
    let (s, b) = err_of(h.post("/vms", bad));
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (400, json!("nics[0].network")),
        "{b}"
    );

    let r = h.auth_raw_post("/vms", "{not json");
    assert_eq!(r.0, 400, "{}", r.1);

    // Duplicate vmid and name → 409.
    h.ok(h.post("/vms", base(x, "a")));
    let (s, b) = err_of(h.post("/vms", base(x, "b")));
    assert_eq!(s, 409, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("vmid {x} is already used")),
        "{b}"
    );
    let (s, _) = err_of(h.post("/vms", base(y, "a")));
    assert_eq!(s, 409);

    // Not found: VM, task, node, operation, path.
    assert_eq!(h.get("/vms/999").status(), 404);
    assert_eq!(h.get("/tasks/UPID:x:0:0:0:a:b:c:").status(), 404);
    let r = h
        .client
        .get(h.url("/api/v1/nodes/other-node/vms"))
        .header("Authorization", format!("KeelAPIToken {}", h.token))
        .send()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 404);
    assert_eq!(
        h.post_empty(&format!("/vms/{x}/status/explode")).status(),
        404
    );
    assert_eq!(h.get("/nothing-here").status(), 404);
    let (s, b) = err_of(h.get("/vms/not-a-number"));
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (400, json!("bad_request")),
        "{b}"
    );
    let (s, b) = err_of(h.get("/tasks?limit=lots"));
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (400, json!("bad_request")),
        "{b}"
    );

    // Conflicts: stopping a stopped VM, deleting a volume in use.
    let (s, _) = err_of(h.post_empty(&format!("/vms/{x}/status/stop")));
    assert_eq!(s, 409);
    h.upload(&live_dir().join("keel-live.iso"), "keel-live.iso");
    let mut with_cd = base(z, "cd");
    with_cd["cdrom"] = json!({"pool": h.pool, "volume": "keel-live.iso"});
    h.ok(h.post("/vms", with_cd));
    let (s, b) = err_of(h.delete(&format!("/storage/{}/content/keel-live.iso", h.pool)));
    assert_eq!(s, 409, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("VM {z}")),
        "{b}"
    );
    h.ok(h.delete(&format!("/vms/{z}")));
    h.ok(h.delete(&format!("/storage/{}/content/keel-live.iso", h.pool)));

    // Uploads are size-checked and leave nothing behind when short.
    let r = h.auth_raw_upload("short.iso", 100, vec![0u8; 50]);
    assert_eq!(r.0, 400, "{}", r.1);
    let vols = h
        .get_json(&format!("/storage/{}/content", h.pool))
        .to_string();
    assert!(!vols.contains("short.iso"), "{vols}");
    let r = h.auth_raw_upload("../evil.iso", 4, vec![0u8; 4]);
    assert_eq!(r.0, 400, "{}", r.1);
    h.ok(h.delete(&format!("/vms/{x}")));
}

#[test]
fn storage_networks_and_openapi() {
    let h = Hostd::start();
    let pools = h.get_json("/storage");
    assert!(
        pools
            .to_string()
            .contains(&format!("\"name\":\"{}\"", h.pool)),
        "{pools}"
    );
    h.ok(h.post(
        &format!("/storage/{}/content", h.pool),
        json!({"name": "data.raw", "size_mib": 4, "format": "raw"}),
    ));
    let (ok, out) = virsh(&["vol-info", "--pool", &h.pool, "data.raw"]);
    assert!(ok && out.contains("4.00 MiB"), "{out}");
    let (s, _) = err_of(h.post(
        &format!("/storage/{}/content", h.pool),
        json!({"name": "data.raw", "size_mib": 4}),
    ));
    assert_eq!(s, 409);
    h.ok(h.delete(&format!("/storage/{}/content/data.raw", h.pool)));
    // a volume written into the pool's directory behind this libvirt's back (another node of a
    // shared or cluster pool): found by name after the rescan a miss triggers
    let dir = pools
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == h.pool.as_str()))
        .and_then(|p| p["path"].as_str())
        .map(std::path::PathBuf::from)
        .expect("the pool's path");
    std::fs::write(dir.join("behind.raw"), vec![0u8; 65536]).expect("write behind.raw");
    h.ok(h.delete(&format!("/storage/{}/content/behind.raw", h.pool)));
    assert!(!dir.join("behind.raw").exists(), "behind.raw not deleted");
    // hidden files (a shared pool's marker, an upload in progress) are Keel's own: not listed
    // (libvirt's dir pool lists them), and a delete by name is refused with the file kept
    std::fs::write(dir.join(".keel-shared-pool"), "marker\n").expect("write the marker");
    let listed = h.get_json(&format!("/storage/{}/content", h.pool));
    let names: Vec<&str> = listed
        .as_array()
        .expect("volume list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with('.')),
        "a hidden file listed as a volume: {names:?}"
    );
    let (s, b) = err_of(h.delete(&format!("/storage/{}/content/.keel-shared-pool", h.pool)));
    assert_eq!(
        (s, b["error"]["field"].as_str()),
        (400, Some("volume")),
        "{b}"
    );
    assert!(
        dir.join(".keel-shared-pool").exists(),
        "the marker was deleted"
    );
    std::fs::remove_file(dir.join(".keel-shared-pool")).expect("remove the marker");

    // Node-local pools (docs/local-pools.md): refusals before any task, on their field or with
    // their reason; a dir pool on an existing directory made and forgotten as tasks (the
    // directory and its files stay). lvm-thin needs device-mapper, which this host lacks: here
    // only its refusal of a VG the host does not have.
    let pdir = h.dir.join("pool-dir");
    std::fs::create_dir_all(&pdir).expect("pool dir");
    let pname = format!("{}-dir", h.prefix);
    let pdir_s = pdir.display().to_string();
    let sub = dir.join("sub"); // inside the default pool's directory
    std::fs::create_dir_all(&sub).expect("sub");
    for (body, status, field, words) in [
        (
            json!({"name": "Bad", "type": "dir", "path": &pdir_s}),
            400,
            Some("name"),
            "not a pool name",
        ),
        (
            json!({"name": &pname, "type": "dir", "path": "/etc/keel-pool"}),
            400,
            Some("path"),
            "belongs to the system",
        ),
        (
            json!({"name": &pname, "type": "dir", "path": format!("{pdir_s}/missing")}),
            400,
            Some("path"),
            "does not exist on this node",
        ),
        (
            json!({"name": &pname, "type": "dir", "path": sub.display().to_string()}),
            409,
            None,
            "overlaps pool",
        ),
        (
            json!({"name": &h.pool, "type": "dir", "path": &pdir_s}),
            409,
            None,
            "already exists",
        ),
        (
            json!({"name": &pname, "type": "lvm-thin", "vg": "keel-no-such-vg"}),
            400,
            None,
            "volume group \"keel-no-such-vg\" does not exist on this node",
        ),
        (
            json!({"name": &pname, "type": "lvm-thin", "vg": "x", "path": "/srv"}),
            400,
            Some("path"),
            "path is for dir pools",
        ),
    ] {
        let (s, b) = err_of(h.post("/storage", body.clone()));
        assert_eq!(s, status, "{body}: {b}");
        assert_eq!(b["error"]["field"].as_str(), field, "{body}: {b}");
        let msg = b["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(words), "{body}: {b}");
    }
    std::fs::remove_dir(&sub).expect("rm sub");
    h.ok(h.post(
        "/storage",
        json!({"name": &pname, "type": "dir", "path": &pdir_s}),
    ));
    let (ok, out) = virsh(&["pool-dumpxml", &pname]);
    assert!(
        ok && out.contains(&format!("<path>{pdir_s}</path>")),
        "{out}"
    );
    let (s, b) = err_of(h.post(
        "/storage",
        json!({"name": format!("{}-in", h.prefix), "type": "dir", "path": &pdir_s}),
    ));
    assert!(s == 409 && b.to_string().contains("overlaps pool"), "{b}");
    h.ok(h.post(
        &format!("/storage/{pname}/content"),
        json!({"name": "keep.raw", "size_mib": 1, "format": "raw"}),
    ));
    let (s, b) = err_of(h.delete(&format!("/storage/{pname}")));
    assert!(s == 409 && b.to_string().contains("keep.raw"), "{b}");
    h.ok(h.delete(&format!("/storage/{pname}/content/keep.raw")));
    std::fs::write(pdir.join("notes.txt"), "left alone\n").expect("a file of the operator's");
    let (s, _) = err_of(h.delete(&format!("/storage/{pname}")));
    assert_eq!(s, 409, "a file in the directory counts as a volume");
    std::fs::remove_file(pdir.join("notes.txt")).expect("rm notes");
    h.ok(h.delete(&format!("/storage/{pname}")));
    let (ok, _) = virsh(&["pool-info", &pname]);
    assert!(!ok, "the pool is still defined");
    assert!(pdir.is_dir(), "the directory went with the pool");
    let (s, b) = err_of(h.delete(&format!("/storage/{}", h.pool)));
    assert!(s == 400 && b.to_string().contains("default pool"), "{b}");
    let (s, _) = err_of(h.delete("/storage/no-such-pool"));
    assert_eq!(s, 404);

    // A NAT network (no guest on it, so no traffic) and validation of its address.
    let net = format!("{}-nat", h.prefix);
    let (s, b) = err_of(h.post(
        "/networks",
        json!({"name": net, "kind": "nat", "cidr": "10.254.99.0/24"}),
    ));
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (400, json!("cidr")),
        "{b}"
    );
    h.ok(h.post("/networks", json!({"name": net, "kind": "nat", "cidr": "10.254.99.1/24", "bridge": format!("kn{}", std::process::id() % 100000)})));
    let (ok, out) = virsh(&["net-dumpxml", &net]);
    assert!(ok && out.contains("<forward mode='nat'"), "{out}");
    assert!(out.contains("start='10.254.99.128'"), "{out}");
    let nets = h.get_json("/networks").to_string();
    assert!(
        nets.contains(&net) && nets.contains("10.254.99.1/24"),
        "{nets}"
    );
    let (s, _) = err_of(h.post(
        "/networks",
        json!({"name": format!("{net}2"), "kind": "nat", "cidr": "10.254.99.1/25"}),
    ));
    assert_eq!(s, 409, "overlapping subnet");

    // Day 2: a stopped VM with a NIC on it is listed as a user; delete is refused naming it;
    // stop (no running VM on it), autostart off, start again.
    let vm = h.id(0);
    h.ok(h.post(
        "/vms",
        json!({"vmid": vm, "name": format!("{}-netuser", h.prefix), "memory_mib": 64, "nics": [{"network": net}]}),
    ));
    let nets = h.get_json("/networks");
    let entry = nets
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == json!(net)))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        entry["used_by"],
        json!([{"vmid": vm, "name": format!("{}-netuser", h.prefix), "running": false}]),
        "{nets}"
    );
    let (s, b) = err_of(h.delete(&format!("/networks/{net}")));
    assert_eq!(s, 409, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("{vm} ({}-netuser)", h.prefix)),
        "{b}"
    );
    h.ok(h.post_empty(&format!("/networks/{net}/stop")));
    let (_, info) = virsh(&["net-info", &net]);
    assert!(info.contains("Active:         no"), "{info}");
    let (s, b) = err_of(h.post_empty(&format!("/networks/{net}/stop")));
    assert_eq!(s, 409, "stopping an inactive network: {b}");
    let (s, b) = err_of(h.put(&format!("/networks/{net}"), json!({"autostart": "no"})));
    assert_eq!(s, 400, "{b}");
    let r = h.put(&format!("/networks/{net}"), json!({"autostart": false}));
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().unwrap_or_default();
    assert_eq!(
        (v["autostart"].clone(), v["active"].clone()),
        (json!(false), json!(false)),
        "{v}"
    );
    let (_, info) = virsh(&["net-info", &net]);
    assert!(info.contains("Autostart:      no"), "{info}");
    h.ok(h.post_empty(&format!("/networks/{net}/start")));
    let (_, info) = virsh(&["net-info", &net]);
    assert!(info.contains("Active:         yes"), "{info}");
    let (s, _) = err_of(h.post_empty(&format!("/networks/{net}/start")));
    assert_eq!(s, 409, "starting an active network");
    let (s, _) = err_of(h.post_empty("/networks/no-such-net/start"));
    assert_eq!(s, 404);
    h.ok(h.delete(&format!("/vms/{vm}")));
    h.ok(h.delete(&format!("/networks/{net}")));
    assert!(!virsh(&["net-info", &net]).0);

    // A bridged network on an existing host bridge (no address, no uplink: no traffic).
    let br = format!("kb{}", std::process::id() % 100000);
    let _ = std::process::Command::new("ip")
        .args(["link", "add", &br, "type", "bridge"])
        .status();
    let bnet = format!("{}-br", h.prefix);
    let nets = h.get_json("/networks").to_string();
    assert!(
        nets.contains(&format!("\"name\":\"{br}\",\"kind\":\"host_bridge\"")) || nets.contains(&br),
        "host bridge listed: {nets}"
    );
    let (s, b) = err_of(h.post(
        "/networks",
        json!({"name": bnet, "kind": "bridge", "bridge": "no-such-br0"}),
    ));
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (400, json!("bridge")),
        "{b}"
    );
    let (s, b) = err_of(h.post_empty(&format!("/networks/{br}/stop")));
    assert_eq!(s, 409, "a host bridge is not stopped through libvirt: {b}");
    h.ok(h.post(
        "/networks",
        json!({"name": bnet, "kind": "bridge", "bridge": br}),
    ));
    let (ok, out) = virsh(&["net-dumpxml", &bnet]);
    assert!(
        ok && out.contains("<forward mode='bridge'/>") && out.contains(&br),
        "{out}"
    );
    h.ok(h.delete(&format!("/networks/{bnet}")));
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &br])
        .status();

    // OpenAPI document generated from the types.
    let doc = h.get_json_abs("/api/v1/openapi.json");
    assert_eq!(doc["info"]["title"], "Keel API");
    for p in [
        "/api/v1/nodes/{node}/vms",
        "/api/v1/nodes/{node}/vms/{vmid}/status/{op}",
        "/api/v1/nodes/{node}/tasks/{upid}/log",
        "/api/v1/access/ticket",
    ] {
        assert!(doc["paths"].get(p).is_some(), "missing {p}");
    }
    assert!(doc["components"]["schemas"]["VmSpec"]["properties"]["disks"].is_object());
}

#[test]
fn tasks_survive_a_hostd_crash() {
    let mut h = Hostd::start();
    let done = h.ok(h.post(
        &format!("/storage/{}/content", h.pool),
        json!({"name": "before.qcow2", "size_mib": 1}),
    ));
    // An upload that stalls half way keeps its task running…
    let (tx, body) = stalled_body();
    let url = h.node_url(&format!(
        "/storage/{}/upload?filename=stalled.iso&size=2000000",
        h.pool
    ));
    let client = h.client.clone();
    let token = h.token.clone();
    let sender = std::thread::spawn(move || {
        let _ = client
            .post(url)
            .header("Authorization", format!("KeelAPIToken {token}"))
            .header("Content-Length", "2000000")
            .body(reqwest::blocking::Body::sized(body, 2_000_000))
            .send();
    });
    tx.send(vec![7u8; 1_000_000])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut upid = String::new();
    h.wait_for("the upload task to run", 30, || {
        let v = h.get_json("/tasks?running=true");
        upid = v[0]["upid"].as_str().unwrap_or_default().to_string();
        !upid.is_empty()
    });
    // …until hostd dies. After a restart it ends as error "interrupted"; older tasks are kept.
    h.crash_and_restart();
    drop(tx);
    let _ = sender.join();
    let t = h.get_json(&format!("/tasks/{upid}"));
    assert_eq!(t["state"], "error", "{t}");
    assert_eq!(t["message"], "interrupted", "{t}");
    let log = h.get_json(&format!("/tasks/{upid}/log")).to_string();
    assert!(log.contains("interrupted"), "{log}");
    assert_eq!(h.get_json(&format!("/tasks/{}", done.upid))["state"], "ok");
    // The partial upload did not become a volume.
    let vols = h
        .get_json(&format!("/storage/{}/content", h.pool))
        .to_string();
    assert!(!vols.contains("stalled.iso"), "{vols}");
    assert!(vols.contains("before.qcow2"), "{vols}");
}

/// A request body fed chunk by chunk from a channel; it blocks when nothing is sent.
fn stalled_body() -> (
    std::sync::mpsc::Sender<Vec<u8>>,
    impl std::io::Read + Send + 'static,
) {
    struct Rd {
        rx: std::sync::mpsc::Receiver<Vec<u8>>,
        buf: Vec<u8>,
    }
    impl std::io::Read for Rd {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.buf.is_empty() {
                match self.rx.recv() {
                    Ok(b) => self.buf = b,
                    Err(_) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::BrokenPipe,
                            "sender gone",
                        ))
                    }
                }
            }
            let n = out.len().min(self.buf.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            Ok(n)
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    (
        tx,
        Rd {
            rx,
            buf: Vec::new(),
        },
    )
}

trait Raw {
    fn auth_raw_post(&self, rest: &str, body: &str) -> (u16, String);
    fn auth_raw_upload(&self, name: &str, size: u64, data: Vec<u8>) -> (u16, String);
    fn get_json_abs(&self, path: &str) -> Value;
}

impl Raw for Hostd {
    fn auth_raw_post(&self, rest: &str, body: &str) -> (u16, String) {
        let r = self
            .client
            .post(self.node_url(rest))
            .header("Authorization", format!("KeelAPIToken {}", self.token))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        (r.status().as_u16(), r.text().unwrap_or_default())
    }

    fn auth_raw_upload(&self, name: &str, size: u64, data: Vec<u8>) -> (u16, String) {
        let r = self
            .client
            .post(self.node_url(&format!(
                "/storage/{}/upload?filename={name}&size={size}",
                self.pool
            )))
            .header("Authorization", format!("KeelAPIToken {}", self.token))
            .body(data)
            .send()
            .unwrap_or_else(|e| panic!("{e}"));
        (r.status().as_u16(), r.text().unwrap_or_default())
    }

    fn get_json_abs(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .header("Authorization", format!("KeelAPIToken {}", self.token))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("{e}"))
    }
}
