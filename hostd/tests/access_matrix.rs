//! Permissions on a real hostd + libvirtd: for each built-in role, a user holding it on `/`
//! calls every operation of the OpenAPI document and gets 403 exactly where the role lacks the
//! privilege the document states; privilege-separated tokens (never more than their user,
//! expiry); a VM user's console of its VM and not another's; raw host paths as VM disks
//! refused for a non-root administrator.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Hostd;
use reqwest::blocking::Client;
use serde_json::{json, Value};

const PW: &str = "matrix-password-1";

/// How a request authenticates.
enum Cred {
    Session {
        c: Client,
        cookie: String,
        csrf: String,
    },
    Token(String),
}

fn client() -> Client {
    Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn login(h: &Hostd, user: &str, pw: &str) -> Cred {
    let c = client();
    let r = c
        .post(h.url("/api/v1/access/ticket"))
        .json(&json!({"username": user, "password": pw}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "login of {user}");
    let v: Value = r.json().unwrap();
    Cred::Session {
        c,
        cookie: format!("KeelAuthCookie={}", v["ticket"].as_str().unwrap()),
        csrf: v["csrf_token"].as_str().unwrap().to_string(),
    }
}

/// (status, JSON body or Null)
fn call(h: &Hostd, who: &Cred, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let url = h.url(path);
    let mut rb = match who {
        Cred::Session { c, cookie, csrf } => c
            .request(m, url)
            .header("Cookie", cookie)
            .header("CSRFPreventionToken", csrf),
        Cred::Token(t) => h
            .client
            .request(m, url)
            .header("Authorization", format!("KeelAPIToken {t}")),
    };
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().unwrap();
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

fn root(h: &Hostd) -> Cred {
    Cred::Token(h.token.clone())
}

fn must(h: &Hostd, who: &Cred, method: &str, path: &str, body: Value, want: u16) -> Value {
    let (s, b) = call(h, who, method, path, Some(body));
    assert_eq!(s, want, "{method} {path}: {b}");
    b
}

fn add_user(h: &Hostd, user: &str) {
    must(
        h,
        &root(h),
        "POST",
        "/api/v1/access/users",
        json!({"userid": user, "password": PW}),
        201,
    );
}

fn grant(h: &Hostd, path: &str, role: &str, kind: &str, who: &str) {
    must(
        h,
        &root(h),
        "PUT",
        "/api/v1/access/acl",
        json!({"path": path, "roleid": role, kind: [who]}),
        200,
    );
}

fn token_of(h: &Hostd, who: &Cred, id: &str, extra: Value) -> String {
    let mut body = json!({"tokenid": id});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let v = must(h, who, "POST", "/api/v1/access/tokens", body, 201);
    format!(
        "{}={}",
        v["full_tokenid"].as_str().unwrap(),
        v["secret"].as_str().unwrap()
    )
}

#[test]
fn permission_matrix_tokens_consoles_and_raw_paths() {
    let t0 = std::time::Instant::now();
    let h = Hostd::start();
    let r = root(&h);
    // Objects for the path parameters: two running VMs (a running VM cannot be deleted, so
    // DELETE answers 409 rather than removing it), a task of root's.
    let (a, b) = (h.id(1), h.id(2));
    let mut upid = String::new();
    for v in [a, b] {
        let t = h.ok(h.post(
            "/vms?start=true",
            json!({"vmid": v, "name": format!("{}-m{v}", h.prefix), "memory_mib": 64}),
        ));
        upid = t.upid;
    }
    let params: BTreeMap<&str, String> = [
        ("node", h.node.clone()),
        ("vmid", a.to_string()),
        ("pool", h.pool.clone()),
        ("volume", "matrix-none.qcow2".into()),
        ("upid", upid.clone()),
        ("tokenid", "matrix-none".into()),
        ("name", "matrix-none".into()),
        ("userid", "matrix-nobody".into()),
        ("groupid", "matrix-nogroup".into()),
        ("roleid", "MatrixNoRole".into()),
        ("op", "bogus".into()),
        ("key", "matrix/none".into()),
        ("snapshot", "matrix-none".into()),
        ("disk", "disk9".into()),
        ("target", "matrix-none".into()),
        ("backup", "matrix-none".into()),
        ("job", "matrix-none".into()),
        ("id", "matrix-none".into()),
        ("iface", "matrix-none".into()),
    ]
    .into_iter()
    .collect();

    let (s, doc) = call(&h, &r, "GET", "/api/v1/openapi.json", None);
    assert_eq!(s, 200);
    let (s, roles) = call(&h, &r, "GET", "/api/v1/access/roles", None);
    assert_eq!(s, 200);
    let privs_of = |role: &str| -> Vec<String> {
        roles
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["roleid"] == role)
            .map(|x| {
                x["privs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_else(|| panic!("no role {role}"))
    };

    // every operation with its x-keel-permission; logout last (it ends the session)
    let mut ops: Vec<(String, String, Value)> = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (m, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&m.as_str()) {
                continue;
            }
            let perm = op["x-keel-permission"].clone();
            assert!(
                perm["check"].is_string(),
                "{m} {path}: no x-keel-permission"
            );
            if perm["check"] == "public" {
                continue;
            }
            ops.push((m.to_uppercase(), path.clone(), perm));
        }
    }
    ops.sort_by_key(|(m, p, _)| (p == "/api/v1/access/ticket" && m == "DELETE", p.clone()));
    assert!(ops.len() > 60, "only {} operations", ops.len());

    let mut mismatches = vec![];
    let mut checked = 0;
    for role in [
        "Administrator",
        "VMAdmin",
        "VMUser",
        "StorageAdmin",
        "Auditor",
        "NoAccess",
    ] {
        let user = format!("m-{}", role.to_lowercase());
        add_user(&h, &user);
        grant(&h, "/", role, "users", &user);
        let privs = privs_of(role);
        let who = login(&h, &user, PW);
        for (m, path, perm) in &ops {
            let mut url = path.clone();
            for (k, v) in &params {
                url = url.replace(&format!("{{{k}}}"), v);
            }
            assert!(!url.contains('{'), "unfilled parameter in {url}");
            let body = matches!(m.as_str(), "POST" | "PUT").then(|| json!({}));
            let (s, resp) = call(&h, &who, m, &url, body);
            let allowed = match perm["check"].as_str().unwrap() {
                "authenticated" => true,
                _ => privs.iter().any(|p| perm["privilege"] == p.as_str()),
            };
            checked += 1;
            let refused = s == 403;
            if refused == allowed {
                mismatches.push(format!("{role}: {m} {url} → {s} {resp} (rule {perm})"));
            }
            if refused {
                let msg = resp["error"]["message"].as_str().unwrap_or("");
                assert!(
                    msg.starts_with("permission denied: "),
                    "{role}: {m} {url}: a 403 not from the access table: {resp}"
                );
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {checked} calls disagree with the OpenAPI document's permissions:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    eprintln!("matrix: {checked} calls in {:?}", t0.elapsed());

    // ---- lists are filtered: a VM user sees the VM it was granted, not the other
    add_user(&h, "m-vmuser100");
    grant(&h, &format!("/vms/{a}"), "VMUser", "users", "m-vmuser100");
    let vu = login(&h, "m-vmuser100", PW);
    let (s, list) = call(
        &h,
        &vu,
        "GET",
        &format!("/api/v1/nodes/{}/vms", h.node),
        None,
    );
    assert_eq!(s, 200);
    let ids: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["vmid"].as_u64())
        .collect();
    assert_eq!(ids, vec![u64::from(a)], "{list}");

    // ---- a VM user opens the console of its VM, not another's
    let vu_token = token_of(&h, &vu, "console", json!({}));
    let vnc = |vmid: u32| {
        call(
            &h,
            &Cred::Token(vu_token.clone()),
            "POST",
            &format!("/api/v1/nodes/{}/vms/{vmid}/vncproxy", h.node),
            None,
        )
    };
    let (s, ticket) = vnc(a);
    assert_eq!(s, 200, "{ticket}");
    let (s, e) = vnc(b);
    assert_eq!(s, 403, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("VM.Console on /vms/{b}")),
        "{e}"
    );
    // the WebSocket itself, with the VM user's token
    let banner = console_as(&h, &vu_token, a, ticket["ticket"].as_str().unwrap())
        .unwrap_or_else(|s| panic!("console of VM {a} refused with {s}"));
    assert!(banner.starts_with(b"RFB 003."), "{banner:?}");
    assert_eq!(
        console_as(&h, &vu_token, b, "whatever"),
        Err(403),
        "the console WebSocket of VM {b}"
    );

    // ---- privilege separation: a token has the intersection with its user, never more
    add_user(&h, "m-sep");
    grant(&h, "/", "VMAdmin", "users", "m-sep");
    let sep_user = login(&h, "m-sep", PW);
    let ro = token_of(&h, &sep_user, "ro", json!({"privsep": true}));
    let wide = token_of(&h, &sep_user, "wide", json!({"privsep": true}));
    let full = token_of(&h, &sep_user, "full", json!({}));
    grant(&h, "/", "Auditor", "tokens", "m-sep!ro");
    grant(&h, "/", "Administrator", "tokens", "m-sep!wide");
    let vm_get = format!("/api/v1/nodes/{}/vms/{a}", h.node);
    let vm_op = format!("/api/v1/nodes/{}/vms/{a}/status/bogus", h.node);
    let cluster_status = "/api/v1/cluster/status";
    // the user may use power operations (404 for the bogus op), the Auditor token may not
    assert_eq!(call(&h, &sep_user, "POST", &vm_op, None).0, 404);
    assert_eq!(
        call(&h, &Cred::Token(ro.clone()), "GET", &vm_get, None).0,
        200
    );
    let (s, e) = call(&h, &Cred::Token(ro.clone()), "POST", &vm_op, None);
    assert_eq!(s, 403, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("m-sep!ro"),
        "{e}"
    );
    // Administrator on the token, VMAdmin on the user: Cluster.Audit stays out of reach
    assert_eq!(call(&h, &sep_user, "GET", cluster_status, None).0, 403);
    assert_eq!(
        call(&h, &Cred::Token(wide.clone()), "GET", cluster_status, None).0,
        403
    );
    assert_eq!(
        call(&h, &Cred::Token(wide.clone()), "POST", &vm_op, None).0,
        404
    );
    // without privilege separation: the user's privileges
    assert_eq!(
        call(&h, &Cred::Token(full.clone()), "POST", &vm_op, None).0,
        404
    );
    // a privsep token cannot mint a token without it
    let (s, e) = call(
        &h,
        &Cred::Token(ro.clone()),
        "POST",
        "/api/v1/access/tokens",
        Some(json!({"tokenid": "escape"})),
    );
    assert_eq!(s, 403, "{e}");
    // nor remove its user's other tokens
    let (s, e) = call(
        &h,
        &Cred::Token(ro.clone()),
        "DELETE",
        "/api/v1/access/tokens/full",
        None,
    );
    assert_eq!(s, 403, "{e}");
    // the caller's effective privileges, per path
    let (s, p) = call(
        &h,
        &Cred::Token(ro.clone()),
        "GET",
        "/api/v1/access/permissions",
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(p["token"], "m-sep!ro");
    assert_eq!(
        p["paths"]["/"],
        json!(["Sys.Audit", "VM.Audit", "Datastore.Audit"]),
        "{p}"
    );
    // an expired token is refused (401); expiry in the past is refused at creation (400)
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let (s, _) = call(
        &h,
        &sep_user,
        "POST",
        "/api/v1/access/tokens",
        Some(json!({"tokenid": "past", "expire": 1000})),
    );
    assert_eq!(s, 400);
    let brief = token_of(&h, &sep_user, "brief", json!({"expire": soon}));
    assert_eq!(
        call(&h, &Cred::Token(brief.clone()), "GET", &vm_get, None).0,
        200
    );
    std::thread::sleep(Duration::from_secs(3));
    let (s, e) = call(&h, &Cred::Token(brief), "GET", &vm_get, None);
    assert_eq!(s, 401, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("expired"),
        "{e}"
    );
    // a disabled user's session and tokens are refused
    must(
        &h,
        &r,
        "PUT",
        "/api/v1/access/users/m-sep",
        json!({"enable": false}),
        200,
    );
    assert_eq!(call(&h, &Cred::Token(full), "GET", &vm_get, None).0, 401);
    assert_eq!(call(&h, &sep_user, "GET", &vm_get, None).0, 401);
    let r = client()
        .post(h.url("/api/v1/access/ticket"))
        .json(&json!({"username": "m-sep", "password": PW}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401, "a disabled user logs in");
    let e: Value = r.json().unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("disabled"),
        "{e}"
    );

    // ---- raw host paths as disks or CD-ROMs: refused for a non-root administrator
    let adm = login(&h, "m-administrator", PW);
    for (what, spec) in [
        (
            "disk",
            json!({"vmid": h.id(3), "name": format!("{}-raw", h.prefix), "memory_mib": 64,
            "disks": [{"path": "/etc/shadow"}]}),
        ),
        (
            "cdrom",
            json!({"vmid": h.id(3), "name": format!("{}-raw", h.prefix), "memory_mib": 64,
            "cdrom": {"path": "/etc/shadow"}}),
        ),
    ] {
        let (s, e) = call(
            &h,
            &adm,
            "POST",
            &format!("/api/v1/nodes/{}/vms", h.node),
            Some(spec),
        );
        assert_eq!(s, 403, "{what}: {e}");
        let msg = e["error"]["message"].as_str().unwrap_or("");
        assert!(
            msg.contains("root") && msg.contains("/etc/shadow"),
            "{what}: {e}"
        );
    }
    // and on update of an existing VM
    let (s, cfg) = call(&h, &adm, "GET", &vm_get, None);
    assert_eq!(s, 200);
    let mut spec = cfg["spec"].clone();
    spec["cdrom"] = json!({"path": "/etc/shadow"});
    let (s, e) = call(&h, &adm, "PUT", &vm_get, Some(spec));
    assert_eq!(s, 403, "{e}");
    eprintln!("access matrix test: {:?}", t0.elapsed());
}

/// Open a VM's console WebSocket with `token`; `Ok(first payload)` or `Err(HTTP status)`.
fn console_as(h: &Hostd, token: &str, vmid: u32, ticket: &str) -> Result<Vec<u8>, u16> {
    use tokio::io::AsyncReadExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .http1_only()
            .build()
            .unwrap();
        let r = c
            .get(h.node_url(&format!("/vms/{vmid}/vncwebsocket?vncticket={ticket}")))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Protocol", "binary")
            .header("Authorization", format!("KeelAPIToken {token}"))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() != 101 {
            return Err(r.status().as_u16());
        }
        let mut up = r.upgrade().await.unwrap();
        let mut hdr = [0u8; 2];
        up.read_exact(&mut hdr).await.unwrap();
        let len = (hdr[1] & 0x7f) as usize;
        assert!(
            hdr[0] == 0x82 && len < 126,
            "a short binary frame expected: {hdr:?}"
        );
        let mut payload = vec![0u8; len];
        up.read_exact(&mut payload).await.unwrap();
        Ok(payload)
    })
}
