//! OpenSSH public keys as Keel accepts them: in an installer answer file (the node's
//! authorized keys) and in a VM's cloud-init settings.

use base64::Engine as _;

pub const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Check an OpenSSH public key line `TYPE BASE64 [COMMENT]`: known type, valid base64 whose
/// blob begins with the same type name.
pub fn check_public_key(line: &str) -> Result<(), String> {
    let mut it = line.split_whitespace();
    let (Some(kind), Some(b64)) = (it.next(), it.next()) else {
        return Err("not an OpenSSH public key; expected `TYPE BASE64 [COMMENT]`".into());
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(format!(
            "unknown key type `{kind}`; valid: {}",
            SSH_KEY_TYPES.join(", ")
        ));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "the key data is not valid base64".to_string())?;
    if blob.len() < 4 {
        return Err("the key data is truncated".into());
    }
    let n = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
    if blob.get(4..4 + n) != Some(kind.as_bytes()) {
        return Err(format!(
            "the key data does not hold a `{kind}` key (type and data disagree)"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys() {
        let ok = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK8toH6YsoysZfExEwWMwB4O2QJqBH3GVuh9YzRmZDBF admin@lab";
        assert_eq!(check_public_key(ok), Ok(()));
        assert!(check_public_key("ssh-dss AAAA")
            .unwrap_err()
            .contains("unknown key type"));
        assert!(check_public_key("ssh-ed25519 not-base64!")
            .unwrap_err()
            .contains("base64"));
        assert!(check_public_key("ssh-ed25519 AAAA")
            .unwrap_err()
            .contains("truncated"));
        assert!(check_public_key(
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIK8toH6YsoysZfExEwWMwB4O2QJqBH3GVuh9YzRmZDBF"
        )
        .unwrap_err()
        .contains("disagree"));
    }
}
