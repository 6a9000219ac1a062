//! The product image (what the ISO installs) carries every engine the VM lab's node image
//! proves things with: the labs pass on the node image, so a package or fence agent only it
//! has is a capability an installed node lacks (it happened: sbd and the fence agents).

use std::collections::BTreeSet;
use std::path::Path;

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn packages(rel: &str) -> BTreeSet<String> {
    read(rel)
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every `/usr/sbin/fence_*` a build script names.
fn fence_agents(rel: &str) -> BTreeSet<String> {
    read(rel)
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == '"')
        .filter_map(|w| w.trim_start_matches('/').strip_prefix("usr/sbin/"))
        .filter(|a| {
            a.starts_with("fence_") && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn the_installed_system_has_every_engine_of_the_lab_node_image() {
    let node = packages("iso/node/packages.txt");
    let product = packages("iso/installer/packages.txt");
    // Only in the lab image, each for a reason that does not apply to an installed node.
    let lab_only = BTreeSet::from([
        // the lab guests' network setup (installed nodes use systemd-networkd)
        "ifupdown".to_string(),
        // named in the lab list for keel-hostd's own link; the product gets it through
        // libvirt-daemon-system's dependencies
        "libvirt0".to_string(),
    ]);
    let missing: Vec<&String> = node
        .difference(&product)
        .filter(|p| !lab_only.contains(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "packages the lab node image proves things with, missing from iso/installer/packages.txt: {missing:?}"
    );
    assert!(
        lab_only.iter().all(|p| node.contains(p)),
        "stale lab-only entry"
    );

    let lab_agents = fence_agents("iso/node/build.sh");
    let product_agents = fence_agents("iso/installer/build.sh");
    assert_eq!(
        lab_agents,
        BTreeSet::from([
            "fence_ipmilan".to_string(),
            "fence_redfish".to_string(),
            "fence_sbd".to_string()
        ]),
        "the agents the lab image carries"
    );
    assert_eq!(
        product_agents, lab_agents,
        "fence agents: iso/installer/build.sh vs iso/node/build.sh"
    );
}
