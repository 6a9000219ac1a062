//! The access pages of the web UI end to end: a real hostd serving ui/dist with two running
//! TCG guests, driven in headless Chromium by ui/e2e/access.mjs (playwright-core) — root makes
//! a group, a user and an ACL entry through the pages; the user then finds what it may not use
//! hidden or disabled with the privilege it needs, and its own VM usable.
//!
//! Needs `ui/dist` (`cd ui && npm ci && npm run build`), node and Debian's chromium.

mod common;

use common::{repo_root, Hostd};
use serde_json::json;

#[test]
fn access_pages_in_headless_chromium() {
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
    let (a, b) = (h.id(1), h.id(2));
    for v in [a, b] {
        h.ok(h.post(
            "/vms?start=true",
            json!({"vmid": v, "name": format!("{}-ui{v}", h.prefix), "memory_mib": 64}),
        ));
    }
    h.run_ui_script(
        "access.mjs",
        &[
            ("KEEL_UI_VMID", a.to_string()),
            ("KEEL_UI_OTHER_VMID", b.to_string()),
        ],
    );
}
