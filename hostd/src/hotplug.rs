//! Live attach and detach of disks and NICs (hot-plug) for a running VM whose persistent
//! definition was just changed by an update (vms::update defines first, then calls
//! [`apply`]).
//!
//! The decision is a pure function of two libvirt XML documents, the live domain and the new
//! persistent one ([`plan`]): a disk is identified by its source (file or block device), a NIC
//! by its MAC. What is only in the persistent definition is attached, what is only live is
//! detached, when the device can be hot-plugged; everything else stays pending until the next
//! cold boot, with the reason. Detach is a request to the guest: [`apply`] waits (bounded) until
//! the device left the live definition and fails with a clear message if the guest keeps it.

use std::time::{Duration, Instant};

use crate::domain::KEEL_NS;
use crate::error::{Error, Result};
use crate::tasks::TaskHandle;
use crate::xml::Element;
use crate::Node;

/// How long a detach waits for the guest to release the device.
pub const DETACH_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a detach the guest has not acted on is asked again. A PCIe guest ignores an
/// unplug request (the attention button) that arrives while it is still handling the previous
/// hot-plug event of that slot, and QEMU accepts a repeated request once its 5 s button delay
/// has passed; a slow (TCG, loaded) guest needs the second press.
pub const DETACH_REASK: Duration = Duration::from_secs(10);

/// One device change to make on the running domain.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// For the task log: `disk /var/lib/keel/images/x.qcow2 (vdb)`, `NIC 02:4b:45:…`.
    pub label: String,
    /// The device XML given to libvirt.
    pub xml: Element,
}

/// What an update of a running VM does with its devices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub attach: Vec<Change>,
    pub detach: Vec<Change>,
    /// Device changes that wait for the next cold boot, each with its reason.
    pub pending: Vec<String>,
}

fn devices(dom: &Element) -> Vec<&Element> {
    dom.find("devices")
        .map(|d| d.children.iter().collect())
        .unwrap_or_default()
}

fn is_disk(e: &Element) -> bool {
    e.name == "disk" && e.get_attr("device").unwrap_or("disk") == "disk"
}

fn disk_source(e: &Element) -> Option<String> {
    let s = e.find("source")?;
    s.get_attr("file")
        .or(s.get_attr("dev"))
        .or(s.get_attr("volume"))
        .map(str::to_string)
}

fn nic_mac(e: &Element) -> Option<String> {
    (e.name == "interface")
        .then(|| e.find("mac")?.get_attr("address"))
        .flatten()
        .map(str::to_ascii_lowercase)
}

fn target(e: &Element) -> (String, String) {
    let t = e.find("target");
    (
        t.and_then(|t| t.get_attr("dev")).unwrap_or("").to_string(),
        t.and_then(|t| t.get_attr("bus")).unwrap_or("").to_string(),
    )
}

/// The device without what belongs to one definition only: its PCI address and alias (libvirt
/// picks a free hot-plug slot for the live domain) and its boot order (a boot-order change is
/// pending by itself).
fn portable(e: &Element) -> Element {
    let mut c = e.clone();
    c.children
        .retain(|x| !matches!(x.name.as_str(), "address" | "alias" | "boot"));
    c
}

/// Linux's disk names: 0 → a, 25 → z, 26 → aa.
fn letters(mut n: u32) -> String {
    let mut s = Vec::new();
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    s.iter().rev().collect()
}

/// Decide the live device changes between the running domain (`live`) and its new persistent
/// definition (`new`).
pub fn plan(live: &str, new: &str) -> Result<Plan> {
    let live = Element::parse(live).map_err(|e| Error::Internal(format!("live XML: {e}")))?;
    let new = Element::parse(new).map_err(|e| Error::Internal(format!("new XML: {e}")))?;
    let (ld, nd) = (devices(&live), devices(&new));
    let mut p = Plan::default();
    let mut taken: Vec<String> = ld
        .iter()
        .filter(|e| e.name == "disk")
        .map(|e| target(e).0)
        .collect();
    // The boot disk: the live disk with the lowest boot order (or the first disk).
    let boot_disk = ld
        .iter()
        .filter(|e| is_disk(e))
        .filter_map(|e| {
            let o: u32 = e.path("boot")?.get_attr("order")?.parse().ok()?;
            Some((o, disk_source(e)))
        })
        .min_by_key(|(o, _)| *o)
        .map(|(_, s)| s)
        .unwrap_or_else(|| ld.iter().find(|e| is_disk(e)).and_then(|e| disk_source(e)));

    let live_disks: Vec<&Element> = ld.iter().copied().filter(|e| is_disk(e)).collect();
    let new_disks: Vec<&Element> = nd.iter().copied().filter(|e| is_disk(e)).collect();
    for d in &new_disks {
        let Some(src) = disk_source(d) else { continue };
        let live_twin = live_disks
            .iter()
            .find(|l| disk_source(l).as_deref() == Some(&src));
        let (dev, bus) = target(d);
        match live_twin {
            Some(l) => {
                let (_, lbus) = target(l);
                if lbus != bus {
                    p.pending.push(format!(
                        "disk {src}: bus {lbus} → {bus} (a device cannot change bus while the guest runs)"
                    ));
                }
            }
            None if bus == "virtio" => {
                let mut xml = portable(d);
                let mut dev = dev;
                if dev.is_empty() || taken.contains(&dev) {
                    dev = (0..)
                        .map(|n| format!("vd{}", letters(n)))
                        .find(|c| !taken.contains(c))
                        .unwrap_or_default();
                }
                taken.push(dev.clone());
                if let Some(t) = xml.children.iter_mut().find(|c| c.name == "target") {
                    t.attrs.retain(|(k, _)| k != "dev");
                    t.attrs.insert(0, ("dev".into(), dev.clone()));
                }
                p.attach.push(Change {
                    label: format!("disk {src} ({dev}, virtio)"),
                    xml,
                });
            }
            None => p.pending.push(format!(
                "new disk {src}: the {bus} bus has no hot-plug here (only virtio disks are attached live)"
            )),
        }
    }
    for l in &live_disks {
        let Some(src) = disk_source(l) else { continue };
        if new_disks
            .iter()
            .any(|d| disk_source(d).as_deref() == Some(&src))
        {
            continue;
        }
        let (dev, bus) = target(l);
        if boot_disk.as_deref() == Some(src.as_str()) {
            p.pending.push(format!(
                "removed disk {src} ({dev}): it is the boot disk, which stays attached while the guest runs"
            ));
        } else if bus != "virtio" {
            p.pending.push(format!(
                "removed disk {src} ({dev}): the {bus} bus has no hot-unplug here (only virtio disks are detached live)"
            ));
        } else {
            p.detach.push(Change {
                label: format!("disk {src} ({dev})"),
                xml: (*l).clone(),
            });
        }
    }

    let live_nics: Vec<&Element> = ld
        .iter()
        .copied()
        .filter(|e| e.name == "interface")
        .collect();
    let new_nics: Vec<&Element> = nd
        .iter()
        .copied()
        .filter(|e| e.name == "interface")
        .collect();
    for n in &new_nics {
        let Some(mac) = nic_mac(n) else { continue };
        match live_nics
            .iter()
            .find(|l| nic_mac(l).as_deref() == Some(&mac))
        {
            None => p.attach.push(Change {
                label: format!("NIC {mac}"),
                xml: portable(n),
            }),
            Some(l) => {
                let src = |e: &Element| e.find("source").map(|s| s.attrs.clone());
                let model = |e: &Element| {
                    e.find("model")
                        .and_then(|m| m.get_attr("type").map(str::to_string))
                };
                if l.get_attr("type") != n.get_attr("type")
                    || src(l) != src(n)
                    || model(l) != model(n)
                {
                    p.pending.push(format!(
                        "NIC {mac}: changed network, bridge or model (applied at the next cold boot; or remove the NIC and add a new one)"
                    ));
                }
            }
        }
    }
    for l in &live_nics {
        let Some(mac) = nic_mac(l) else { continue };
        if !new_nics.iter().any(|n| nic_mac(n).as_deref() == Some(&mac)) {
            p.detach.push(Change {
                label: format!("NIC {mac}"),
                xml: (*l).clone(),
            });
        }
    }
    Ok(p)
}

/// Keel's metadata for the live domain after its devices changed: the new persistent
/// metadata with each `disk` entry re-indexed to the position of its disk in the live
/// definition (libvirt orders live disks by bus and target, not by Keel's spec order).
pub fn live_metadata(live: &str, new: &str) -> Result<Option<Element>> {
    let live = Element::parse(live).map_err(|e| Error::Internal(format!("live XML: {e}")))?;
    let new = Element::parse(new).map_err(|e| Error::Internal(format!("new XML: {e}")))?;
    let Some(meta) = new.find("metadata").and_then(|m| {
        m.children.iter().find(|c| {
            c.name.ends_with(":vm")
                && c.attrs
                    .iter()
                    .any(|(k, v)| k.starts_with("xmlns") && v == KEEL_NS)
        })
    }) else {
        return Ok(None);
    };
    let prefix = meta.name.trim_end_matches("vm");
    let disk_name = format!("{prefix}disk");
    let new_srcs: Vec<Option<String>> = devices(&new)
        .into_iter()
        .filter(|e| is_disk(e))
        .map(disk_source)
        .collect();
    let live_srcs: Vec<Option<String>> = devices(&live)
        .into_iter()
        .filter(|e| is_disk(e))
        .map(disk_source)
        .collect();
    let mut out = meta.clone();
    out.children.retain(|c| c.name != disk_name);
    for d in meta.children.iter().filter(|c| c.name == disk_name) {
        let Some(i) = d.get_attr("index").and_then(|i| i.parse::<usize>().ok()) else {
            continue;
        };
        let Some(src) = new_srcs.get(i).cloned().flatten() else {
            continue;
        };
        if let Some(li) = live_srcs.iter().position(|s| s.as_deref() == Some(&src)) {
            let mut e = d.clone();
            for (k, v) in e.attrs.iter_mut() {
                if k == "index" {
                    *v = li.to_string();
                }
            }
            out.push(e);
        }
    }
    Ok(Some(out))
}

/// The element with its namespace prefixes and declarations removed: libvirt puts a metadata
/// element it is given into the namespace of the call itself (and refuses one declaring it).
pub fn unprefixed(e: &Element) -> Element {
    Element {
        name: e.name.rsplit(':').next().unwrap_or(&e.name).to_string(),
        attrs: e
            .attrs
            .iter()
            .filter(|(k, _)| k != "xmlns" && !k.starts_with("xmlns:"))
            .cloned()
            .collect(),
        children: e.children.iter().map(unprefixed).collect(),
        text: e.text.clone(),
    }
}

fn still_live(node: &Node, name: &str, c: &Change) -> Result<bool> {
    let live = Element::parse(&node.hv.domain_xml(name, false)?)
        .map_err(|e| Error::Internal(format!("live XML: {e}")))?;
    let want_src = if c.xml.name == "disk" {
        disk_source(&c.xml)
    } else {
        None
    };
    let want_mac = nic_mac(&c.xml);
    Ok(devices(&live).into_iter().any(|e| {
        e.name == c.xml.name
            && ((want_src.is_some() && disk_source(e) == want_src)
                || (want_mac.is_some() && nic_mac(e) == want_mac))
    }))
}

/// Apply the live device changes of a running domain whose persistent definition was just
/// replaced. Logs every attach, detach and pending change in the task. A device the guest does
/// not release within [`DETACH_TIMEOUT`] ends the task with an error (the persistent definition
/// already has it removed: it goes at the next cold boot).
pub fn apply(node: &Node, name: &str, task: &TaskHandle) -> Result<()> {
    apply_within(node, name, task, DETACH_TIMEOUT, DETACH_REASK)
}

fn apply_within(
    node: &Node,
    name: &str,
    task: &TaskHandle,
    wait: Duration,
    reask: Duration,
) -> Result<()> {
    let live = node.hv.domain_xml(name, false)?;
    let new = node.hv.domain_xml(name, true)?;
    let p = plan(&live, &new)?;
    for r in &p.pending {
        task.log(format!("pending until the next cold boot: {r}"));
    }
    let mut failed = Vec::new();
    for c in &p.detach {
        task.log(format!("detaching {} live", c.label));
        if let Err(e) = node.hv.detach_device_live(name, &c.xml.render()) {
            task.log(format!("could not detach {}: {e}", c.label));
            failed.push(format!("{}: {e}", c.label));
            continue;
        }
        let t0 = Instant::now();
        let mut asked = t0;
        loop {
            if !still_live(node, name, c)? {
                task.log(format!(
                    "{} detached (the guest released it after {:.1}s)",
                    c.label,
                    t0.elapsed().as_secs_f64()
                ));
                break;
            }
            if t0.elapsed() >= wait {
                task.log(format!(
                    "the guest did not release {} within {}s",
                    c.label,
                    wait.as_secs()
                ));
                failed.push(format!(
                    "{}: the guest did not release it within {}s (it may not support hot-unplug, or the device is in use); it is removed at the next cold boot",
                    c.label,
                    wait.as_secs()
                ));
                break;
            }
            if asked.elapsed() >= reask {
                asked = Instant::now();
                task.log(format!(
                    "the guest has not released {} after {:.0}s; asking again",
                    c.label,
                    t0.elapsed().as_secs_f64()
                ));
                if let Err(e) = node.hv.detach_device_live(name, &c.xml.render()) {
                    // QEMU refuses while the guest is mid-way through the earlier request;
                    // the wait goes on.
                    task.log(format!("repeated request not taken: {e}"));
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    for c in &p.attach {
        // an iscsi-lvm disk is active here once QEMU holds it: activated for the attach
        let xml = c.xml.render();
        let held = match node.hv.hold_disks(
            &format!("{} of {name}", c.label),
            &keel_xml::Element::parse(&xml)
                .ok()
                .and_then(|d| d.find("source")?.get_attr("dev").map(str::to_string))
                .into_iter()
                .collect::<Vec<_>>(),
        ) {
            Ok(h) => h,
            Err(e) => {
                task.log(format!("could not attach {} live: {e}", c.label));
                failed.push(format!(
                    "{}: {e}; it is attached at the next cold boot",
                    c.label
                ));
                continue;
            }
        };
        let r = node.hv.attach_device_live(name, &xml);
        node.hv.unhold_disks(&held);
        match r {
            Ok(()) => task.log(format!("attached {} live", c.label)),
            Err(e) => {
                task.log(format!("could not attach {} live: {e}", c.label));
                failed.push(format!(
                    "{}: {e}; it is attached at the next cold boot",
                    c.label
                ));
            }
        }
    }
    if !p.attach.is_empty() || !p.detach.is_empty() {
        let live = node.hv.domain_xml(name, false)?;
        if let Some(meta) = live_metadata(&live, &new)? {
            if let Err(e) = node.hv.set_live_metadata(name, &unprefixed(&meta).render()) {
                task.log(format!(
                    "warning: the live domain's Keel metadata was not updated ({e}); the hot-plugged disks show as pending until the next boot"
                ));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Conflict(format!(
            "hot-plug incomplete (the saved configuration has every change): {}",
            failed.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(devs: &str) -> String {
        format!(
            r#"<domain type="qemu"><name>a</name><metadata><keel:vm xmlns:keel="{KEEL_NS}"><keel:vmid>100</keel:vmid><keel:disk index="0" pool="local" volume="a.qcow2"/><keel:disk index="1" pool="local" volume="b.qcow2"/></keel:vm></metadata><devices>{devs}</devices></domain>"#
        )
    }

    fn disk(src: &str, dev: &str, bus: &str, boot: Option<u32>) -> String {
        format!(
            r#"<disk type="file" device="disk"><driver name="qemu" type="qcow2"/><source file="{src}"/><target dev="{dev}" bus="{bus}"/>{}<address type="pci" bus="0x04"/></disk>"#,
            boot.map(|b| format!(r#"<boot order="{b}"/>"#))
                .unwrap_or_default()
        )
    }

    fn nic(mac: &str, net: &str) -> String {
        format!(
            r#"<interface type="network"><mac address="{mac}"/><source network="{net}"/><model type="virtio"/><alias name="net0"/></interface>"#
        )
    }

    const CD: &str = r#"<disk type="file" device="cdrom"><source file="/i/live.iso"/><target dev="sda" bus="sata"/><boot order="1"/></disk>"#;

    #[test]
    fn added_virtio_disk_and_nic_are_attached_without_address_or_boot() -> Result<()> {
        let live = dom(&format!("{CD}{}", disk("/i/a", "vda", "virtio", Some(2))));
        let new = dom(&format!(
            "{CD}{}{}{}",
            disk("/i/a", "vda", "virtio", Some(2)),
            disk("/i/b", "vdb", "virtio", None),
            nic("02:4b:45:00:00:01", "default")
        ));
        let p = plan(&live, &new)?;
        assert!(p.detach.is_empty() && p.pending.is_empty(), "{p:?}");
        let labels: Vec<&str> = p.attach.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["disk /i/b (vdb, virtio)", "NIC 02:4b:45:00:00:01"]);
        for c in &p.attach {
            let x = c.xml.render();
            assert!(
                !x.contains("<address") && !x.contains("<alias") && !x.contains("<boot"),
                "{x}"
            );
        }
        Ok(())
    }

    #[test]
    fn a_taken_target_name_gets_the_next_free_one() -> Result<()> {
        // live vdb is /i/b; the new definition renumbered /i/c to vdb after removing /i/b
        let live = dom(&format!(
            "{}{}",
            disk("/i/a", "vda", "virtio", Some(1)),
            disk("/i/b", "vdb", "virtio", None)
        ));
        let new = dom(&format!(
            "{}{}",
            disk("/i/a", "vda", "virtio", Some(1)),
            disk("/i/c", "vdb", "virtio", None)
        ));
        let p = plan(&live, &new)?;
        assert_eq!(p.attach.len(), 1);
        assert_eq!(
            p.attach[0]
                .xml
                .find("target")
                .and_then(|t| t.get_attr("dev")),
            Some("vdc")
        );
        assert_eq!(p.detach.len(), 1);
        assert_eq!(p.detach[0].label, "disk /i/b (vdb)");
        Ok(())
    }

    #[test]
    fn sata_boot_disk_and_bus_changes_stay_pending() -> Result<()> {
        let live = dom(&format!(
            "{}{}{}",
            disk("/i/a", "vda", "virtio", Some(1)),
            disk("/i/s", "sda", "sata", None),
            disk("/i/m", "vdb", "virtio", None),
        ));
        let new = dom(&format!(
            "{}{}",
            disk("/i/m", "sda", "sata", None),
            disk("/i/n", "sdb", "sata", None)
        ));
        let p = plan(&live, &new)?;
        assert!(p.attach.is_empty() && p.detach.is_empty(), "{p:?}");
        let all = p.pending.join("\n");
        assert!(all.contains("disk /i/m: bus virtio → sata"), "{all}");
        assert!(all.contains("new disk /i/n: the sata bus"), "{all}");
        assert!(
            all.contains("removed disk /i/a (vda): it is the boot disk"),
            "{all}"
        );
        assert!(
            all.contains("removed disk /i/s (sda): the sata bus"),
            "{all}"
        );
        assert_eq!(p.pending.len(), 4, "{all}");
        Ok(())
    }

    #[test]
    fn removed_nic_is_detached_changed_nic_is_pending() -> Result<()> {
        let live = dom(&format!(
            "{}{}",
            nic("02:4b:45:00:00:01", "default"),
            nic("02:4b:45:00:00:02", "default")
        ));
        let new = dom(&nic("02:4B:45:00:00:01", "other"));
        let p = plan(&live, &new)?;
        assert!(p.attach.is_empty());
        assert_eq!(p.detach.len(), 1);
        assert_eq!(p.detach[0].label, "NIC 02:4b:45:00:00:02");
        // the live element is given as is: libvirt matches it by alias
        assert!(p.detach[0].xml.render().contains("alias"));
        assert_eq!(p.pending.len(), 1);
        assert!(p.pending[0].starts_with("NIC 02:4b:45:00:00:01: changed"));
        Ok(())
    }

    #[test]
    fn unchanged_devices_plan_nothing() -> Result<()> {
        let x = dom(&format!(
            "{CD}{}{}",
            disk("/i/a", "vda", "virtio", Some(2)),
            nic("02:4b:45:00:00:01", "default")
        ));
        assert_eq!(plan(&x, &x)?, Plan::default());
        Ok(())
    }

    /// The workflow on the fake engine: a running domain whose new definition drops a disk and
    /// a NIC and adds a disk. A guest that releases devices: detach, attach, live metadata,
    /// done. A guest that ignores the request: the task fails naming the device, after the
    /// attach was still made.
    #[test]
    fn apply_detaches_attaches_and_reports_a_guest_that_keeps_a_device() -> Result<()> {
        use crate::hv::fake::FakeHv;
        use crate::hv::{Hypervisor, Power};
        use std::sync::Arc;
        let run = |deaf: bool| -> Result<(Vec<String>, Result<()>, String)> {
            let hv = Arc::new(FakeHv::new());
            let (node, _dir) = crate::tests_support::fake_node(hv.clone())?;
            let live = dom(&format!(
                "{}{}{}",
                disk("/i/a", "vda", "virtio", Some(1)),
                disk("/i/b", "vdb", "virtio", None),
                nic("02:4b:45:00:00:01", "default")
            ));
            let new = dom(&format!(
                "{}{}",
                disk("/i/a", "vda", "virtio", Some(1)),
                disk("/i/c", "vdb", "virtio", None)
            ));
            hv.define(&new)?;
            hv.power("a", Power::Start)?;
            hv.set_live_xml("a", &live);
            if deaf {
                hv.ignore_acpi("a");
            }
            let t = node.tasks.begin("vmupdate", "100", "root", true)?;
            let r = apply_within(
                &node,
                "a",
                &t,
                Duration::from_millis(300),
                Duration::from_millis(100),
            );
            let log = node
                .tasks
                .log(&t.upid, 0, 100)?
                .into_iter()
                .map(|l| l.line)
                .collect::<Vec<_>>()
                .join("\n");
            let calls = hv.calls().into_iter().skip(2).collect();
            Ok((calls, r, log))
        };
        let (calls, r, log) = run(false)?;
        r?;
        assert_eq!(
            calls,
            [
                "detach_device_live a disk",
                "detach_device_live a interface",
                "attach_device_live a disk",
                "set_live_metadata a"
            ],
            "{log}"
        );
        assert!(
            log.contains("disk /i/b (vdb) detached (the guest released it")
                && log.contains("attached disk /i/c (vdc, virtio) live"),
            "{log}"
        );
        let (calls, r, log) = run(true)?;
        // a guest that does not act is asked again before the wait ends
        let asked = calls
            .iter()
            .filter(|c| *c == "detach_device_live a disk")
            .count();
        assert!(asked >= 2, "{calls:?}");
        assert!(
            log.contains("the guest has not released disk /i/b (vdb) after"),
            "{log}"
        );
        match r {
            Err(Error::Conflict(m)) => assert!(
                m.contains("disk /i/b (vdb): the guest did not release it")
                    && m.contains("removed at the next cold boot"),
                "{m}"
            ),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(log.contains("attached disk /i/c"), "{log}");
        Ok(())
    }

    #[test]
    fn live_metadata_follows_the_live_disk_order() -> Result<()> {
        // spec order: a, b; live order after the hot-plug: b (vda), a (vdb)
        let new = dom(&format!(
            "{}{}",
            disk("/i/a", "vdb", "virtio", None),
            disk("/i/b", "vda", "virtio", Some(1))
        ));
        let live = dom(&format!(
            "{}{}",
            disk("/i/b", "vda", "virtio", Some(1)),
            disk("/i/a", "vdb", "virtio", None)
        ));
        let m = live_metadata(&live, &new)?
            .map(|m| m.render())
            .unwrap_or_default();
        assert!(
            m.contains(r#"<keel:disk index="1" pool="local" volume="a.qcow2"/>"#)
                && m.contains(r#"<keel:disk index="0" pool="local" volume="b.qcow2"/>"#)
                && m.contains("<keel:vmid>100</keel:vmid>"),
            "{m}"
        );
        let bare = live_metadata(&live, &new)?
            .map(|m| unprefixed(&m).render())
            .unwrap_or_default();
        assert!(
            bare.starts_with("<vm>") && bare.contains("<vmid>100</vmid>") && !bare.contains("keel"),
            "{bare}"
        );
        Ok(())
    }
}
