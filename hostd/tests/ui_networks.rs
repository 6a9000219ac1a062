//! The Networks page end to end: a real hostd serving ui/dist and real libvirt networks, driven
//! in headless Chromium by ui/e2e/networks.mjs (playwright-core). A NAT network carries a
//! running VM (Stop and Delete must be refused, naming it, in the page and by the API); a second
//! network is created, its autostart turned off, stopped, started and deleted through the page,
//! and libvirt's own view is checked after each.
//!
//! Needs `ui/dist` (`cd ui && npm ci && npm run build`), node and Debian's chromium.

mod common;

use common::{repo_root, virsh, Hostd};
use serde_json::json;

#[test]
fn networks_page_in_headless_chromium() {
    let ui = repo_root().join("ui/dist");
    assert!(
        ui.join("index.html").exists(),
        "ui/dist is missing: build the UI first (cd ui && npm ci && npm run build); scripts/test.sh does"
    );
    assert!(
        repo_root().join("ui/node_modules/playwright-core").exists(),
        "ui/node_modules is missing: cd ui && npm ci"
    );
    let h = Hostd::start_with_ui(&ui);
    let pid = std::process::id() % 10000;
    // subnets in 10.254.0.0/16, different per run so two checkouts' tests never collide
    let (used, new) = (format!("{}-nu", h.prefix), format!("{}-nn", h.prefix));
    let (used_cidr, new_cidr) = (
        format!("10.254.{}.1/24", 100 + pid % 70),
        format!("10.254.{}.1/24", 170 + pid % 70),
    );
    h.ok(h.post(
        "/networks",
        json!({"name": used, "kind": "nat", "cidr": used_cidr, "bridge": format!("knu{pid}")}),
    ));
    let vm = h.id(1);
    h.ok(h.post(
        "/vms?start=true",
        json!({"vmid": vm, "name": format!("{}-net{vm}", h.prefix), "memory_mib": 64,
               "nics": [{"network": used}]}),
    ));
    // the API refuses the same things the page disables
    for (method, path) in [
        ("POST", format!("/networks/{used}/stop")),
        ("DELETE", format!("/networks/{used}")),
    ] {
        let r = if method == "POST" {
            h.post_empty(&path)
        } else {
            h.delete(&path)
        };
        let status = r.status().as_u16();
        let body = r.text().unwrap_or_default();
        assert!(
            status == 409 && body.contains(&format!("{vm} ({}-net{vm})", h.prefix)),
            "{method} {path}: {status} {body}"
        );
    }

    h.run_ui_script(
        "networks.mjs",
        &[
            ("KEEL_NET_USED", used.clone()),
            ("KEEL_NET_USED_VMID", vm.to_string()),
            ("KEEL_NET_NEW", new.clone()),
            ("KEEL_NET_CIDR", new_cidr.clone()),
        ],
    );
    assert!(
        !virsh(&["net-info", &new]).0,
        "the network deleted through the page is still defined in libvirt"
    );
    let (_, info) = virsh(&["net-info", &used]);
    assert!(info.contains("Active:         yes"), "{info}");

    h.ok(h.post_empty(&format!("/vms/{vm}/status/stop")));
    h.ok(h.delete(&format!("/vms/{vm}")));
    h.ok(h.delete(&format!("/networks/{used}")));
}
