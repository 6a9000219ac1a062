//! The access pages of the web UI end to end: a real hostd serving ui/dist with two running
//! TCG guests, driven in headless Chromium by ui/e2e/access.mjs (playwright-core) — root makes
//! a group, a user and an ACL entry through the pages; the user then finds what it may not use
//! hidden or disabled with the privilege it needs, and its own VM usable.
//!
//! Needs `ui/dist` (`cd ui && npm ci && npm run build`), node and Debian's chromium.

mod common;

use std::process::Command;

use common::{repo_root, Hostd, PASSWORD};
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
    let t0 = std::time::Instant::now();
    let out = Command::new("node")
        .arg(repo_root().join("ui/e2e/access.mjs"))
        .env("KEEL_UI_URL", &h.base)
        .env("KEEL_UI_PASSWORD", PASSWORD)
        .env("KEEL_UI_VMID", a.to_string())
        .env("KEEL_UI_OTHER_VMID", b.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{stdout}{}access.mjs took {:.1}s",
        String::from_utf8_lossy(&out.stderr),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success() && stdout.trim_end().ends_with("passed, 0 failed"),
        "access pages end-to-end run failed (screenshots in ui/e2e/artifacts/): {stdout}"
    );
}
