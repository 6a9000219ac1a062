//! Names Keel gives storage objects (pools, DRBD resources, volume groups, GFS2 file systems):
//! one rule that every engine accepts.

/// A name that is not acceptable to every engine a pool touches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {name:?}: {why}")]
pub struct NameError {
    pub what: String,
    pub name: String,
    pub why: String,
}

/// Lower-case letters, digits and `-`, starting with a letter, at most `max` characters: valid
/// as a DRBD resource, an LVM VG/LV, a GFS2 lock table part, a libvirt pool and a file name.
pub fn check_name(what: &str, name: &str, max: usize) -> Result<(), NameError> {
    let err = |why: String| NameError {
        what: what.to_string(),
        name: name.to_string(),
        why,
    };
    if name.is_empty() || name.len() > max {
        return Err(err(format!("must be 1 to {max} characters")));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(err("must start with a lower-case letter".into()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(err(format!("{c:?} is not allowed (use a-z, 0-9 and '-')")));
    }
    if name.ends_with('-') {
        return Err(err("must not end with '-'".into()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("pool", "vmstore", 30).is_ok());
        assert!(check_name("pool", "vm-store-2", 30).is_ok());
        for bad in ["", "2pool", "Pool", "vm_store", "vm store", "pool-", "a/b"] {
            let e = check_name("pool", bad, 30).unwrap_err();
            assert!(e.to_string().starts_with("pool "), "{e}");
        }
        assert!(check_name("pool", &"a".repeat(31), 30).is_err());
    }
}
