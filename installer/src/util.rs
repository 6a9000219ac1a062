//! Small pure helpers: name globs, CIDR parsing, numbered hostname patterns, SSH public keys,
//! fingerprints, MAC addresses and interface names.

/// Shell-style glob: `*` any run, `?` one character, `[abc]` / `[a-z]` / `[!a]` a class.
/// Matches the whole string, case-sensitively.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t)
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|i| glob_at(&p[1..], &t[i..])),
        Some('?') => !t.is_empty() && glob_at(&p[1..], &t[1..]),
        Some('[') => {
            let Some(c) = t.first() else { return false };
            match class_match(&p[1..], *c) {
                Some((ok, rest)) => ok && glob_at(rest, &t[1..]),
                // An unclosed `[` is a literal.
                None => *c == '[' && glob_at(&p[1..], &t[1..]),
            }
        }
        Some(c) => t.first() == Some(c) && glob_at(&p[1..], &t[1..]),
    }
}

/// `p` starts after `[`; returns (matched, pattern after `]`).
fn class_match(p: &[char], c: char) -> Option<(bool, &[char])> {
    let (negate, mut i) = match p.first() {
        Some('!') | Some('^') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, &p[i + 1..]));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

pub use netcfg::Cidr;

/// Expand a hostname pattern: `{NN}` → the node index zero-padded to the number of `N`s.
/// A name without braces is returned as is.
pub fn expand_hostname(pattern: &str, index: Option<u32>) -> Result<String, String> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err(format!("`{pattern}` has a `}}` without `{{`"));
        }
        return Ok(pattern.to_string());
    };
    let Some(close_rel) = pattern[open..].find('}') else {
        return Err(format!(
            "`{pattern}` has an unclosed `{{`; a pattern looks like node{{NN}}"
        ));
    };
    let close = open + close_rel;
    let inner = &pattern[open + 1..close];
    let rest = &pattern[close + 1..];
    if inner.is_empty() || !inner.chars().all(|c| c == 'N') || rest.contains('{') {
        return Err(format!(
            "`{pattern}` is not a valid pattern; use one placeholder made of N's, e.g. node{{NN}} (2 digits)"
        ));
    }
    let Some(index) = index else {
        return Err(format!(
            "`{pattern}` is a numbered pattern and needs a node index (--node-index)"
        ));
    };
    let width = inner.len();
    let digits = index.to_string();
    if digits.len() > width {
        return Err(format!(
            "node index {index} does not fit the {width}-digit placeholder in `{pattern}`"
        ));
    }
    Ok(format!(
        "{}{:0width$}{}",
        &pattern[..open],
        index,
        rest,
        width = width
    ))
}

pub fn is_hostname_pattern(s: &str) -> bool {
    s.contains('{')
}

/// One DNS label per RFC 1123: 1–63 of a–z, 0–9, `-`, not starting or ending with `-`.
pub fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS name: dot-separated valid labels, ≤ 253 characters.
pub fn valid_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(valid_label)
}

/// `aa:bb:cc:dd:ee:ff`, either case.
pub fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A Linux interface name: 1–15 characters, no `/`, `:`, whitespace, not `.` or `..`.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// SHA-256 fingerprint: 32 bytes as colon-separated hex pairs.
pub fn valid_sha256_fingerprint(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 32
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

pub use keel_api::sshkey::{check_public_key as check_ssh_public_key, SSH_KEY_TYPES};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn glob_matching() {
        assert!(glob_match("en*", "enp1s0"));
        assert!(glob_match("enp?s0", "enp1s0"));
        assert!(!glob_match("enp?s0", "enp10s0"));
        assert!(glob_match("eth[0-1]", "eth1"));
        assert!(!glob_match("eth[0-1]", "eth2"));
        assert!(glob_match("eth[!0]", "eth2"));
        assert!(!glob_match("eth[!0]", "eth0"));
        assert!(glob_match("*", ""));
        assert!(glob_match("/dev/sd*", "/dev/sda"));
        assert!(!glob_match("/dev/sd*", "/dev/nvme0n1"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("x[", "x["));
        assert!(!glob_match("eno1", "eno10"));
    }

    #[test]
    fn hostname_patterns() {
        assert_eq!(expand_hostname("node{NN}", Some(3)).unwrap(), "node03");
        assert_eq!(expand_hostname("node{N}", Some(7)).unwrap(), "node7");
        assert_eq!(expand_hostname("n{NNN}-x", Some(7)).unwrap(), "n007-x");
        assert_eq!(expand_hostname("pve1", None).unwrap(), "pve1");
        assert!(expand_hostname("node{NN}", Some(100))
            .unwrap_err()
            .contains("does not fit"));
        assert!(expand_hostname("node{NN}", None)
            .unwrap_err()
            .contains("needs a node index"));
        assert!(expand_hostname("node{XX}", Some(1)).is_err());
        assert!(expand_hostname("node{NN", Some(1)).is_err());
    }

    #[test]
    fn cidr_parsing() {
        let c = Cidr::parse("192.0.2.10/24").unwrap();
        assert_eq!(c.prefix, 24);
        assert_eq!(c.netmask_v4(), "255.255.255.0");
        assert_eq!(c.network().to_string(), "192.0.2.0/24");
        assert!(c.contains("192.0.2.1".parse().unwrap()));
        assert!(!c.contains("192.0.3.1".parse().unwrap()));
        assert!(!c.contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("192.0.2.10/33")
            .unwrap_err()
            .contains("0 to 32"));
        assert!(Cidr::parse("2001:db8::1/129")
            .unwrap_err()
            .contains("0 to 128"));
        assert!(Cidr::parse("192.0.2.10").is_err());
        assert!(Cidr::parse("300.0.2.10/24").is_err());
        let v6 = Cidr::parse("2001:db8::10/64").unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert_eq!(v6.network().to_string(), "2001:db8::/64");
        assert_eq!(
            Cidr::parse("192.0.2.0/24").unwrap().reserved_host(),
            Some("the network address")
        );
        assert_eq!(
            Cidr::parse("192.0.2.255/24").unwrap().reserved_host(),
            Some("the broadcast address")
        );
        assert_eq!(
            Cidr::parse("10.0.0.1/32").unwrap().netmask_v4(),
            "255.255.255.255"
        );
        assert_eq!(Cidr::parse("10.0.0.1/0").unwrap().netmask_v4(), "0.0.0.0");
        assert!(Cidr::parse("10.0.0.1/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("::/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert!(Cidr::parse("2001:db8::1/128")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn names() {
        assert!(valid_mac("52:54:00:AB:cd:01"));
        assert!(!valid_mac("52:54:00:ab:cd"));
        assert!(valid_ifname("bond0.100"));
        assert!(!valid_ifname("averyveryverylongname"));
        assert!(valid_dns_name("node03.lab.example"));
        assert!(!valid_dns_name("Node_03"));
        assert!(valid_sha256_fingerprint(&vec!["ab"; 32].join(":")));
        assert!(!valid_sha256_fingerprint(&vec!["ab"; 31].join(":")));
    }
}
