//! The cluster's floating management address: one `ocf:heartbeat:IPaddr2` primitive
//! (`keel-vip`) that Pacemaker keeps on one healthy node, so operators reach the UI and the API
//! of the whole cluster at one address. Every node's hostd listens on all addresses, so the node
//! holding the address answers there.
//!
//! [`Vip::parse`] validates what an operator types; [`put`] and [`delete`] are the `cibadmin`
//! calls; [`from_resources`] reads the address back from `cibadmin --query --scope resources`.

use std::net::IpAddr;

use keel_xml::Element;

use crate::cib::CibUpdate;

/// Id of the primitive in the CIB.
pub const VIP_ID: &str = "keel-vip";
/// Seconds between monitor operations.
const MONITOR_S: u32 = 10;
/// Stickiness: the address stays where it is when a failed node comes back (clients keep their
/// connections; it moves only when its node fails).
const STICKINESS: u32 = 100;

/// An address with its prefix length, e.g. `192.0.2.10/24` or `fd00::10/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vip {
    pub ip: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

impl Vip {
    /// `ADDRESS/PREFIX`, with an operator-facing reason when it cannot be a service address.
    pub fn parse(s: &str) -> Result<Vip, String> {
        let s = s.trim();
        let (a, p) = s.split_once('/').ok_or_else(|| {
            format!("{s:?} has no prefix length: write ADDRESS/PREFIX, e.g. 192.0.2.10/24")
        })?;
        let ip: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 or IPv6 address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| (1..=max).contains(p))
            .ok_or_else(|| format!("prefix {p:?} must be a number from 1 to {max}"))?;
        let bad = match ip {
            IpAddr::V4(v) => {
                if v.is_unspecified() || v.is_broadcast() {
                    Some("the unspecified or broadcast address")
                } else if v.is_loopback() {
                    Some("a loopback address")
                } else if v.is_link_local() {
                    Some("a link-local address")
                } else if v.is_multicast() {
                    Some("a multicast address")
                } else if prefix <= 30 {
                    let mask = u32::MAX << (32 - prefix);
                    let host = u32::from(v) & !mask;
                    (host == 0 || host == !mask)
                        .then_some("the network or broadcast address of its subnet")
                } else {
                    None
                }
            }
            IpAddr::V6(v) => {
                if v.is_unspecified() {
                    Some("the unspecified address")
                } else if v.is_loopback() {
                    Some("a loopback address")
                } else if v.is_multicast() {
                    Some("a multicast address")
                } else if (v.segments()[0] & 0xffc0) == 0xfe80 {
                    Some("a link-local address")
                } else {
                    None
                }
            }
        };
        if let Some(why) = bad {
            return Err(format!(
                "{ip} is {why}: choose a free address on the nodes' management network"
            ));
        }
        Ok(Vip { ip, prefix })
    }
}

fn nvpair(set: &str, name: &str, value: impl ToString) -> Element {
    Element::new("nvpair")
        .attr("id", format!("{set}-{name}"))
        .attr("name", name)
        .attr("value", value)
}

/// The `IPaddr2` primitive for `v`: the address on the interface that already carries its
/// subnet (the resource agent finds it), a monitor, and some stickiness.
pub fn primitive(v: &Vip) -> Element {
    let ia = format!("{VIP_ID}-instance_attributes");
    let ma = format!("{VIP_ID}-meta_attributes");
    Element::new("primitive")
        .attr("id", VIP_ID)
        .attr("class", "ocf")
        .attr("provider", "heartbeat")
        .attr("type", "IPaddr2")
        .child(
            Element::new("instance_attributes")
                .attr("id", &ia)
                .child(nvpair(&ia, "ip", v.ip))
                .child(nvpair(&ia, "cidr_netmask", v.prefix)),
        )
        .child(
            Element::new("meta_attributes")
                .attr("id", &ma)
                .child(nvpair(&ma, "resource-stickiness", STICKINESS)),
        )
        .child(
            Element::new("operations").child(
                Element::new("op")
                    .attr("id", format!("{VIP_ID}-monitor-{MONITOR_S}s"))
                    .attr("name", "monitor")
                    .attr("interval", format!("{MONITOR_S}s"))
                    .attr("timeout", "20s"),
            ),
        )
}

/// The calls that create the address or move it to a new value (one replace: never two
/// addresses at once).
pub fn put(v: &Vip) -> Vec<CibUpdate> {
    vec![CibUpdate::modify(
        "resources",
        &Element::new("resources").child(primitive(v)),
    )]
}

/// The calls that remove the address (Pacemaker stops it first).
pub fn delete() -> Vec<CibUpdate> {
    vec![CibUpdate::delete(
        &Element::new("primitive").attr("id", VIP_ID),
    )]
}

/// The address configured in a `cibadmin --query --scope resources` answer, if any.
pub fn from_resources(xml: &str) -> Result<Option<Vip>, String> {
    let root = Element::parse(xml).map_err(|e| format!("resources XML: {e}"))?;
    let Some(p) = root
        .descendants("primitive")
        .into_iter()
        .find(|p| p.get_attr("id") == Some(VIP_ID))
    else {
        return Ok(None);
    };
    let nv = |name: &str| {
        p.descendants("nvpair")
            .into_iter()
            .find(|n| n.get_attr("name") == Some(name))
            .and_then(|n| n.get_attr("value"))
            .map(str::to_string)
    };
    let (Some(ip), Some(prefix)) = (nv("ip"), nv("cidr_netmask")) else {
        return Err(format!("{VIP_ID} in the CIB has no ip or cidr_netmask"));
    };
    Vip::parse(&format!("{ip}/{prefix}")).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_service_addresses_and_says_why_not() {
        for ok in [
            "192.0.2.10/24",
            " 10.0.0.5/8 ",
            "fd6b:6565:6c00:1::100/64",
            "2001:db8::5/128",
            "10.0.0.1/32",
        ] {
            assert!(Vip::parse(ok).is_ok(), "{ok}");
        }
        let cases = [
            ("192.0.2.10", "no prefix length"),
            ("192.0.2.300/24", "not an IPv4 or IPv6"),
            ("192.0.2.10/33", "from 1 to 32"),
            ("fd00::1/129", "from 1 to 128"),
            ("192.0.2.0/24", "network or broadcast"),
            ("192.0.2.255/24", "network or broadcast"),
            ("127.0.0.5/8", "loopback"),
            ("169.254.1.1/16", "link-local"),
            ("fe80::5/64", "link-local"),
            ("224.0.0.5/4", "multicast"),
            ("::/64", "unspecified"),
        ];
        for (s, why) in cases {
            let e = Vip::parse(s).expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn primitive_round_trips_through_the_cib_query() {
        let v = Vip::parse("fd6b:6565:6c00:1::100/64").expect("valid");
        let doc = Element::new("resources").child(primitive(&v)).render();
        assert_eq!(from_resources(&doc), Ok(Some(v)));
        assert_eq!(from_resources("<resources/>"), Ok(None));
        let calls = put(&v);
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].args,
            [
                "--modify",
                "--allow-create",
                "--scope",
                "resources",
                "--xml-pipe"
            ]
        );
        assert!(
            calls[0].stdin.contains(r#"type="IPaddr2""#),
            "{}",
            calls[0].stdin
        );
        assert_eq!(delete()[0].args, ["--delete", "--xml-pipe"]);
    }
}
