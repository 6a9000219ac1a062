//! cloud-init settings of a VM: what Keel writes into its NoCloud seed (a small ISO labelled
//! `cidata`, regenerated whenever these settings change; docs/cloud-init.md).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;

pub const MAX_SSH_KEYS: usize = 32;
pub const MAX_USER_DATA: usize = 64 * 1024;
pub const MAX_DNS: usize = 3;
pub const MAX_SEARCH: usize = 6;

/// cloud-init settings. Everything is optional: an empty object gives the guest its host name
/// (the VM's name) and DHCP on its first NIC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudInitSpec {
    /// Host name; default: the VM's name. Letters, digits and `-` per label, labels joined by `.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 253)]
    pub hostname: Option<String>,
    /// Account cloud-init creates (with sudo); absent: the image's default user (`debian` on
    /// Debian's cloud images) gets the keys and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[a-z_][a-z0-9_-]{0,31}$")]
    pub user: Option<String>,
    /// The account's password as a crypt(3) hash (`mkpasswd -m sha-512`, `openssl passwd -6`);
    /// Keel never takes or stores a clear-text password. Absent: password login stays locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// OpenSSH public keys (one `type base64 [comment]` line each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 32)]
    pub ssh_keys: Vec<String>,
    /// Address of each NIC, in the VM's NIC order (`ipconfig[0]` is `nics[0]`); NICs without an
    /// entry use DHCP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 16)]
    pub ipconfig: Vec<IpConfig>,
    /// DNS servers (at most 3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>, max_items = 3)]
    pub dns: Vec<IpAddr>,
    /// DNS search domains (at most 6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 6)]
    pub search: Vec<String>,
    /// Your own user-data, used instead of the one Keel generates from `user`, `password_hash`
    /// and `ssh_keys` (which must then be absent). It must start with `#cloud-config`, `#!`,
    /// `#include`, `#cloud-boothook` or `Content-Type:` (a MIME multi-part). At most 64 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// Directory pool the seed ISO is stored in; default: the pool of the VM's first disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// One NIC's address: DHCP, or a static address with its prefix length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum IpConfig {
    Dhcp {},
    Static {
        /// `192.0.2.10/24` or `2001:db8::10/64`.
        address: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        gateway: Option<IpAddr>,
    },
}

/// `GET …/vms/{vmid}/cloud-init`: the NoCloud seed Keel writes for the VM's saved settings,
/// file by file, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CloudInitSeed {
    /// cloud-init re-runs its per-instance steps when this changes.
    pub instance_id: String,
    pub meta_data: String,
    pub user_data: String,
    pub network_config: String,
    /// Pool and volume of the seed ISO.
    pub pool: String,
    pub volume: String,
}

/// A parsed `ADDRESS/PREFIX`.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let prefix: u8 = p.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max && !p.starts_with('+')).then_some((addr, prefix))
}

fn same_subnet(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & m == u32::from(b) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

/// A host name cloud-init and the guest accept (RFC 1123).
pub fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A crypt(3) hash (`$id$[params$]salt$hash`), never a clear-text password.
pub fn valid_crypt_hash(h: &str) -> bool {
    h.starts_with('$')
        && h.split('$').filter(|p| !p.is_empty()).count() >= 3
        && h.len() <= 512
        && h.chars().all(|c| c.is_ascii_graphic() && c != ':')
}

impl CloudInitSpec {
    /// Check every field. `nics`: how many NICs the VM has.
    pub fn validate(&self, nics: usize) -> Result<(), FieldError> {
        let err = |field: &str, msg: String| Err(FieldError::new(field, msg));
        if let Some(h) = &self.hostname {
            if !valid_hostname(h) {
                return err(
                    "cloud_init.hostname",
                    format!("{h:?} is not a host name: use labels of letters, digits and '-' (not at either end), at most 63 each, joined by '.'"),
                );
            }
        }
        if let Some(u) = &self.user {
            let ok = u.len() <= 32
                && u.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && u.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-')
                });
            if !ok {
                return err(
                    "cloud_init.user",
                    format!("{u:?} is not a user name: use 1-32 lower-case letters, digits, '_' or '-', starting with a letter or '_'"),
                );
            }
            if u == "root" {
                return err(
                    "cloud_init.user",
                    "cloud-init cannot create root: leave user out to configure the image's default user, or name a new account".into(),
                );
            }
        }
        if let Some(h) = &self.password_hash {
            if !valid_crypt_hash(h) {
                return err(
                    "cloud_init.password_hash",
                    "this is not a crypt(3) password hash: give the output of `mkpasswd -m sha-512` or `openssl passwd -6` (Keel never takes a clear-text password)".into(),
                );
            }
        }
        if self.password_hash.is_some() && self.user.is_none() {
            return err(
                "cloud_init.password_hash",
                "name the account the password is for (user): the image's default user is only known inside the image".into(),
            );
        }
        if self.ssh_keys.len() > MAX_SSH_KEYS {
            return err(
                "cloud_init.ssh_keys",
                format!("at most {MAX_SSH_KEYS} keys"),
            );
        }
        for (i, k) in self.ssh_keys.iter().enumerate() {
            let problem = if k.contains(['\n', '\r']) {
                Err("it holds a line break: give one key per entry".to_string())
            } else {
                crate::sshkey::check_public_key(k.trim())
            };
            if let Err(p) = problem {
                return err(
                    &format!("cloud_init.ssh_keys[{i}]"),
                    format!("this SSH public key is refused: {p}"),
                );
            }
        }
        if self.ipconfig.len() > nics {
            return err(
                "cloud_init.ipconfig",
                format!(
                    "{} address entries for {nics} NIC(s): give at most one per NIC, in the order of nics",
                    self.ipconfig.len()
                ),
            );
        }
        for (i, c) in self.ipconfig.iter().enumerate() {
            let f = format!("cloud_init.ipconfig[{i}]");
            if let IpConfig::Static { address, gateway } = c {
                let Some((addr, prefix)) = parse_cidr(address) else {
                    return err(
                        &format!("{f}.address"),
                        format!("{address:?} is not ADDRESS/PREFIX (e.g. 192.0.2.10/24 or 2001:db8::10/64)"),
                    );
                };
                if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
                    return err(
                        &format!("{f}.address"),
                        format!("{addr} cannot be a NIC's address"),
                    );
                }
                if let Some(g) = gateway {
                    if g.is_ipv4() != addr.is_ipv4() {
                        return err(
                            &format!("{f}.gateway"),
                            format!("gateway {g} and address {addr} are not the same IP version"),
                        );
                    }
                    if !same_subnet(addr, *g, prefix) || *g == addr {
                        return err(
                            &format!("{f}.gateway"),
                            format!("gateway {g} is not another address of {address}'s subnet: the guest could not reach it"),
                        );
                    }
                }
            }
        }
        if self.dns.len() > MAX_DNS {
            return err("cloud_init.dns", format!("at most {MAX_DNS} DNS servers"));
        }
        if self.search.len() > MAX_SEARCH {
            return err(
                "cloud_init.search",
                format!("at most {MAX_SEARCH} search domains"),
            );
        }
        for (i, s) in self.search.iter().enumerate() {
            if !valid_hostname(s) {
                return err(
                    &format!("cloud_init.search[{i}]"),
                    format!("{s:?} is not a domain name"),
                );
            }
        }
        if let Some(u) = &self.user_data {
            if u.len() > MAX_USER_DATA {
                return err(
                    "cloud_init.user_data",
                    format!("user_data is {} bytes; at most {MAX_USER_DATA}", u.len()),
                );
            }
            const HEADS: [&str; 5] = [
                "#cloud-config",
                "#!",
                "#include",
                "#cloud-boothook",
                "Content-Type:",
            ];
            if !HEADS.iter().any(|h| u.starts_with(h)) {
                return err(
                    "cloud_init.user_data",
                    "cloud-init would ignore this user-data: it must start with #cloud-config, #! (a script), #include, #cloud-boothook or Content-Type: (MIME multi-part)".into(),
                );
            }
            if self.user.is_some() || self.password_hash.is_some() || !self.ssh_keys.is_empty() {
                return err(
                    "cloud_init.user_data",
                    "your own user_data replaces the one Keel writes from user, password_hash and ssh_keys: put those in your user_data and leave the fields out".into(),
                );
            }
        }
        if let Some(p) = &self.pool {
            if p.is_empty()
                || p.len() > 64
                || !p
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return err("cloud_init.pool", format!("{p:?} is not a pool name"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8Q4S8mH8d/SamZ93/4x03MLLDGW4l7VdKG+l+whOpS test@keel";

    fn field(s: &CloudInitSpec, nics: usize) -> String {
        s.validate(nics).err().map(|e| e.field).unwrap_or_default()
    }

    #[test]
    fn a_full_spec_is_accepted() {
        let s = CloudInitSpec {
            hostname: Some("web-1.example.org".into()),
            user: Some("ops".into()),
            password_hash: Some("$6$saltsalt$abcdefghijklmnopqrstuv".into()),
            ssh_keys: vec![KEY.into()],
            ipconfig: vec![
                IpConfig::Static {
                    address: "192.0.2.10/24".into(),
                    gateway: Some("192.0.2.1".parse().unwrap()),
                },
                IpConfig::Dhcp {},
            ],
            dns: vec!["192.0.2.53".parse().unwrap()],
            search: vec!["example.org".into()],
            user_data: None,
            pool: Some("local".into()),
        };
        assert_eq!(s.validate(2), Ok(()));
        assert_eq!(CloudInitSpec::default().validate(0), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut s = CloudInitSpec {
            hostname: Some("-bad".into()),
            ..Default::default()
        };
        assert_eq!(field(&s, 1), "cloud_init.hostname");
        s.hostname = None;
        s.user = Some("Root".into());
        assert_eq!(field(&s, 1), "cloud_init.user");
        s.user = Some("root".into());
        assert_eq!(field(&s, 1), "cloud_init.user");
        s.user = Some("ops".into());
        s.password_hash = Some("hunter2".into());
        assert_eq!(field(&s, 1), "cloud_init.password_hash");
        s.user = None;
        s.password_hash = Some("$6$salt$hash".into());
        assert_eq!(field(&s, 1), "cloud_init.password_hash");
        s.password_hash = None;
        s.ssh_keys = vec!["ssh-ed25519 AAAAC3NzaC1yc2EAAAADAQAB x".into()];
        assert_eq!(field(&s, 1), "cloud_init.ssh_keys[0]");
        s.ssh_keys = vec![format!("{KEY}\nssh-rsa AAAA")];
        assert_eq!(field(&s, 1), "cloud_init.ssh_keys[0]");
        s.ssh_keys = vec![];
        s.ipconfig = vec![IpConfig::Dhcp {}, IpConfig::Dhcp {}];
        assert_eq!(field(&s, 1), "cloud_init.ipconfig");
        s.ipconfig = vec![IpConfig::Static {
            address: "192.0.2.10".into(),
            gateway: None,
        }];
        assert_eq!(field(&s, 1), "cloud_init.ipconfig[0].address");
        s.ipconfig = vec![IpConfig::Static {
            address: "192.0.2.10/24".into(),
            gateway: Some("198.51.100.1".parse().unwrap()),
        }];
        assert_eq!(field(&s, 1), "cloud_init.ipconfig[0].gateway");
        s.ipconfig = vec![IpConfig::Static {
            address: "2001:db8::10/64".into(),
            gateway: Some("2001:db8::1".parse().unwrap()),
        }];
        assert_eq!(s.validate(1), Ok(()));
        s.user_data = Some("users: []".into());
        assert_eq!(field(&s, 1), "cloud_init.user_data");
        s.user_data = Some("#cloud-config\nusers: []".into());
        assert_eq!(s.validate(1), Ok(()));
        s.ssh_keys = vec![KEY.into()];
        assert_eq!(field(&s, 1), "cloud_init.user_data");
    }

    #[test]
    fn ipconfig_wire_form() {
        let v: Vec<IpConfig> = serde_json::from_str(
            r#"[{"mode":"dhcp"},{"mode":"static","address":"10.0.0.5/8","gateway":"10.0.0.1"}]"#,
        )
        .unwrap();
        assert_eq!(v[0], IpConfig::Dhcp {});
        assert!(serde_json::from_str::<IpConfig>(r#"{"mode":"static"}"#).is_err());
        assert!(serde_json::from_str::<IpConfig>(r#"{"mode":"dhcp","x":1}"#).is_err());
    }
}
