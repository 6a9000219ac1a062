//! The cluster's floating management address (`keel cluster vip`): an `IPaddr2` resource that
//! Pacemaker keeps on one healthy node (see [`clusterd::vip`]). Every node's hostd listens on
//! all addresses, so the UI and the API of the whole cluster answer at that one address, from
//! whichever node holds it.

use std::net::IpAddr;

use clusterd::commands;
use clusterd::form;
use clusterd::vip::{self, Vip};
use keel_api::cluster::VipStatus;
use keel_runner::{Cmd, Runner};

use super::run_err;
use crate::error::{Error, Result};
use crate::Node;

fn not_clustered() -> Error {
    Error::Conflict(
        "this node is not in a cluster: a floating address needs one (keel cluster init)".into(),
    )
}

/// The configured address (from the CIB) and where Pacemaker runs it (from `crm_mon`).
pub(super) fn get(node: &Node) -> Result<VipStatus> {
    let cs = &node.cluster;
    if cs.record()?.is_none() {
        return Ok(VipStatus {
            address: None,
            running_on: None,
            failed: false,
            url: None,
        });
    }
    let r = cs.runner.as_ref();
    let xml = r
        .run_ok(&commands::cib_query("resources"))
        .map_err(run_err)?;
    let v = vip::from_resources(&xml).map_err(Error::Internal)?;
    let crm = v.and_then(|_| form::crm_status(r));
    let res = crm.as_ref().and_then(|c| c.resource(vip::VIP_ID));
    let port = node
        .cfg
        .listen
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_else(|| "8006".into());
    Ok(VipStatus {
        url: v.map(|v| match v.ip {
            IpAddr::V4(a) => format!("https://{a}:{port}/"),
            IpAddr::V6(a) => format!("https://[{a}]:{port}/"),
        }),
        address: v.map(|v| v.to_string()),
        running_on: res
            .filter(|r| r.active)
            .and_then(|r| r.nodes.first().cloned()),
        failed: res.is_some_and(|r| r.failed),
    })
}

/// The local addresses with their prefixes (`ip -o addr show`).
fn local_addrs(r: &dyn Runner) -> Result<Vec<(IpAddr, u8)>> {
    let out = r
        .run_ok(
            &Cmd::argv(&["ip", "-o", "addr", "show"]).timeout(std::time::Duration::from_secs(10)),
        )
        .map_err(run_err)?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|w| *w == "inet" || *w == "inet6")?;
            let (a, p) = f.get(i + 1)?.split_once('/')?;
            Some((a.parse().ok()?, p.parse().ok()?))
        })
        .collect())
}

fn in_subnet(a: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            u32::from(a) & m == u32::from(n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            u128::from(a) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// Check `address` against the members and this node's interfaces, then put the resource.
pub(super) fn set(node: &Node, address: &str) -> Result<VipStatus> {
    let cs = &node.cluster;
    if cs.record()?.is_none() {
        return Err(not_clustered());
    }
    let v = Vip::parse(address).map_err(|m| Error::validation("address", m))?;
    let conf = form::read_corosync_conf(&cs.paths)?;
    if let Some(n) = conf.nodes.iter().find(|n| {
        n.addrs
            .iter()
            .any(|a| a.parse::<IpAddr>().is_ok_and(|a| a == v.ip))
    }) {
        return Err(Error::validation(
            "address",
            format!("{} is {}'s own address: choose a free one", v.ip, n.name),
        ));
    }
    let r = cs.runner.as_ref();
    let local = local_addrs(r)?;
    if local.iter().any(|(a, _)| *a == v.ip) && !is_current(r, &v)? {
        return Err(Error::validation(
            "address",
            format!(
                "{} is already configured on this node: choose a free one",
                v.ip
            ),
        ));
    }
    if !local
        .iter()
        .any(|(a, _)| a != &v.ip && in_subnet(*a, v.ip, v.prefix))
    {
        return Err(Error::validation(
            "address",
            format!(
                "no interface of this node has an address in {}/{}: the floating address must be on a network the nodes are on (IPaddr2 puts it on that interface)",
                v.ip, v.prefix
            ),
        ));
    }
    form::apply_cib(r, &vip::put(&v))?;
    tracing::info!(address = %v, "floating management address set");
    get(node)
}

fn is_current(r: &dyn Runner, v: &Vip) -> Result<bool> {
    let xml = r
        .run_ok(&commands::cib_query("resources"))
        .map_err(run_err)?;
    Ok(vip::from_resources(&xml).map_err(Error::Internal)? == Some(*v))
}

/// Remove the address (404 when none is configured).
pub(super) fn remove(node: &Node) -> Result<()> {
    let cs = &node.cluster;
    if cs.record()?.is_none() {
        return Err(not_clustered());
    }
    let r = cs.runner.as_ref();
    let xml = r
        .run_ok(&commands::cib_query("resources"))
        .map_err(run_err)?;
    if vip::from_resources(&xml)
        .map_err(Error::Internal)?
        .is_none()
    {
        return Err(Error::NotFound(
            "no floating management address is configured".into(),
        ));
    }
    form::apply_cib(r, &vip::delete())?;
    tracing::info!("floating management address removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testlab::{self, SELF};
    use super::*;
    use keel_runner::{Fake, Reply};

    const IP_ADDR: &str = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
        2: e0    inet 192.0.2.1/24 brd 192.0.2.255 scope global e0\\       valid_lft forever\n\
        2: e0    inet6 fd00::1/64 scope global \\       valid_lft forever\n";

    fn lab(fake: Fake) -> Result<testlab::Lab> {
        testlab::clustered(
            &[
                (SELF, "192.0.2.1", "192.0.2.1:8006"),
                ("node2", "192.0.2.2", "192.0.2.2:8006"),
            ],
            fake,
        )
    }

    #[test]
    fn set_checks_members_and_subnets_before_the_one_cib_update() -> Result<()> {
        let ip = ["ip", "-o", "addr", "show"];
        let query = ["cibadmin", "--query", "--scope", "resources"];
        let put = [
            "cibadmin",
            "--modify",
            "--allow-create",
            "--scope",
            "resources",
            "--xml-pipe",
        ];
        let l = lab(Fake::new()
            // a member's address: refused before any command
            // not on any local subnet: refused after reading the interfaces
            .expect(&ip, Reply::ok(IP_ADDR))
            // accepted: interfaces, the update, then the status read back
            .expect(&ip, Reply::ok(IP_ADDR))
            .expect(&put, Reply::ok(""))
            .expect(&query, Reply::ok("<resources/>")))?;
        let e = set(&l.node, "192.0.2.2/24").expect_err("member address");
        assert!(e.to_string().contains("node2's own address"), "{e}");
        let e = set(&l.node, "10.9.9.9/24").expect_err("foreign subnet");
        assert!(e.to_string().contains("no interface of this node"), "{e}");
        let e = set(&l.node, "192.0.2.10").expect_err("no prefix");
        assert!(e.to_string().contains("prefix"), "{e}");
        set(&l.node, "192.0.2.10/24")?;
        let ran = l.fake.ran();
        assert_eq!(ran.len(), 4, "{ran:?}");
        Ok(())
    }

    #[test]
    fn remove_without_an_address_is_404_and_changes_nothing() -> Result<()> {
        let query = ["cibadmin", "--query", "--scope", "resources"];
        let l = lab(Fake::new().expect(&query, Reply::ok("<resources/>")))?;
        assert!(matches!(remove(&l.node), Err(Error::NotFound(_))));
        assert_eq!(l.fake.ran().len(), 1);
        Ok(())
    }

    #[test]
    fn subnet_containment() {
        let a = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(in_subnet(a("192.0.2.1"), a("192.0.2.10"), 24));
        assert!(!in_subnet(a("192.0.3.1"), a("192.0.2.10"), 24));
        assert!(in_subnet(a("fd00::1"), a("fd00::100"), 64));
        assert!(!in_subnet(a("fd01::1"), a("fd00::100"), 64));
        assert!(!in_subnet(a("192.0.2.1"), a("fd00::100"), 0));
    }
}
