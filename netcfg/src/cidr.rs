//! Addresses with a prefix length.

use std::net::IpAddr;

/// An address with its prefix length, e.g. `192.0.2.10/24` or `2001:db8::10/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let Some((a, p)) = s.split_once('/') else {
            return Err(format!(
                "`{s}` has no prefix length; write ADDRESS/PREFIX, e.g. 192.0.2.10/24 or 2001:db8::10/64"
            ));
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{a}` is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let fam = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
        let prefix: u8 = match p.parse::<u32>() {
            Ok(n) if n <= max => n as u8,
            _ => {
                return Err(format!(
                    "prefix length `/{p}` is out of range; an {fam} prefix is 0 to {max}"
                ))
            }
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    fn bits(addr: IpAddr) -> (u128, u32) {
        match addr {
            IpAddr::V4(a) => (u32::from(a) as u128, 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    fn mask(&self) -> u128 {
        let (_, width) = Self::bits(self.addr);
        let host_bits = width - self.prefix as u32;
        let all: u128 = if width == 32 {
            u32::MAX as u128
        } else {
            u128::MAX
        };
        if host_bits >= 128 {
            0
        } else {
            all & !((1u128 << host_bits) - 1)
        }
    }

    /// Whether `ip` lies in this subnet (same family).
    pub fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.is_v4() {
            return false;
        }
        let m = self.mask();
        (Self::bits(ip).0 & m) == (Self::bits(self.addr).0 & m)
    }

    /// The network address of this subnet (`192.0.2.0/24`).
    pub fn network(&self) -> Cidr {
        let v = Self::bits(self.addr).0 & self.mask();
        let addr = if self.is_v4() {
            IpAddr::V4(std::net::Ipv4Addr::from(v as u32))
        } else {
            IpAddr::V6(std::net::Ipv6Addr::from(v))
        };
        Cidr {
            addr,
            prefix: self.prefix,
        }
    }

    /// IPv4 only: the host part is all zeros or all ones (network or broadcast address) on a
    /// subnet where those are reserved (prefix ≤ 30).
    pub fn reserved_host(&self) -> Option<&'static str> {
        if !self.is_v4() || self.prefix > 30 {
            return None;
        }
        let v = Self::bits(self.addr).0;
        let host = v & !self.mask() & (u32::MAX as u128);
        let all = !self.mask() & (u32::MAX as u128);
        if host == 0 {
            Some("the network address")
        } else if host == all {
            Some("the broadcast address")
        } else {
            None
        }
    }

    /// IPv4 dotted netmask (`255.255.255.0`).
    pub fn netmask_v4(&self) -> String {
        std::net::Ipv4Addr::from(self.mask() as u32).to_string()
    }
}
