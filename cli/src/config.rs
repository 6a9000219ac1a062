//! Connection settings: command-line flags, then environment (clap handles those two), then the
//! config file, then built-in defaults.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

pub const DEFAULT_URL: &str = "https://127.0.0.1:8006";
pub const DEFAULT_USER: &str = "root";

/// `~/.config/keel/cli.toml`. Every key is optional; unknown keys are an error.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub url: Option<String>,
    pub fingerprint: Option<String>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub node: Option<String>,
}

/// What the flags and environment gave (clap has already applied flag-over-env precedence).
#[derive(Debug, Default, Clone)]
pub struct FlagConfig {
    pub url: Option<String>,
    pub fingerprint: Option<String>,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub node: Option<String>,
}

/// The settings the client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub url: String,
    pub fingerprint: Option<String>,
    pub token: Option<String>,
    pub user: String,
    pub password: Option<String>,
    pub node: Option<String>,
}

/// Parse a config file's text; errors name the file, the line and the offending key.
pub fn parse_config(text: &str, path: &Path) -> Result<FileConfig> {
    toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(l) => anyhow!("{}: line {l}: {}", path.display(), e.message()),
            None => anyhow!("{}: {}", path.display(), e.message()),
        }
    })
}

/// `~/.config/keel/cli.toml`, if `$HOME` is known.
pub fn default_config_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config/keel/cli.toml"))
}

/// Load the config file: an explicit path must exist; the default one may be absent.
pub fn load(explicit: Option<&Path>) -> Result<FileConfig> {
    let (path, required) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match default_config_path() {
            Some(p) => (p, false),
            None => return Ok(FileConfig::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(FileConfig::default())
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read config file {}", path.display()))
        }
    };
    let cfg = parse_config(&text, &path)?;
    warn_if_readable_secrets(&path, &cfg);
    Ok(cfg)
}

fn warn_if_readable_secrets(path: &Path, cfg: &FileConfig) {
    use std::os::unix::fs::PermissionsExt;
    if cfg.password.is_none() && cfg.token.is_none() {
        return;
    }
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "warning: {} holds a password or token but is readable by others; chmod 600 it",
                path.display()
            );
        }
    }
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

/// Flags/env win over the file, the file over the defaults.
pub fn resolve(flags: FlagConfig, file: FileConfig) -> Result<Settings> {
    let pick = |a: Option<String>, b: Option<String>| nonempty(a).or(nonempty(b));
    let url = pick(flags.url, file.url).unwrap_or_else(|| DEFAULT_URL.to_string());
    let s = Settings {
        url: normalise_url(&url)?,
        fingerprint: pick(flags.fingerprint, file.fingerprint),
        token: pick(flags.token, file.token),
        user: pick(flags.user, file.user).unwrap_or_else(|| DEFAULT_USER.to_string()),
        password: pick(flags.password, file.password),
        node: pick(flags.node, file.node),
    };
    Ok(s)
}

/// Accept `host:port` without a scheme; refuse anything but https (a password or token would
/// otherwise cross the network in clear text).
pub fn normalise_url(u: &str) -> Result<String> {
    let u = u.trim();
    let with_scheme = if u.contains("://") {
        u.to_string()
    } else {
        format!("https://{u}")
    };
    let parsed = reqwest::Url::parse(&with_scheme)
        .map_err(|e| anyhow!("invalid URL {u:?}: {e} (expected e.g. https://node1:8006)"))?;
    if parsed.scheme() != "https" {
        bail!("URL {u:?}: only https:// is supported (keel-hostd serves the API over TLS)");
    }
    if parsed.host_str().is_none() {
        bail!("URL {u:?} has no host");
    }
    let mut s = parsed.to_string();
    while s.ends_with('/') {
        s.pop();
    }
    if let Some(stripped) = s.strip_suffix("/api/v1") {
        s = stripped.to_string();
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("/home/u/.config/keel/cli.toml")
    }

    #[test]
    fn full_config_parses() {
        let c = parse_config(
            "url = \"https://n1:8006\"\nfingerprint = \"AA\"\ntoken = \"root!ci=x\"\n\
             user = \"admin\"\npassword = \"pw\"\nnode = \"n1\"\n",
            &p(),
        )
        .expect("valid");
        assert_eq!(c.url.as_deref(), Some("https://n1:8006"));
        assert_eq!(c.node.as_deref(), Some("n1"));
        assert_eq!(c.user.as_deref(), Some("admin"));
    }

    #[test]
    fn empty_config_is_fine() {
        assert_eq!(
            parse_config("", &p()).expect("empty"),
            FileConfig::default()
        );
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_key_and_line() {
        let err = parse_config("url = \"https://x\"\npasword = \"typo\"\n", &p())
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("pasword"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("cli.toml"), "{err}");
    }

    #[test]
    fn wrong_type_is_an_error() {
        let err = parse_config("node = 5\n", &p())
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = load(Some(Path::new("/nonexistent/keel/cli.toml")))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("/nonexistent/keel/cli.toml"), "{err}");
    }

    #[test]
    fn precedence_flags_over_file_over_defaults() {
        let flags = FlagConfig {
            url: Some("https://flag:1".into()),
            node: Some(String::new()), // empty env var counts as unset
            ..Default::default()
        };
        let file = FileConfig {
            url: Some("https://file:2".into()),
            node: Some("n1".into()),
            password: Some("pw".into()),
            ..Default::default()
        };
        let s = resolve(flags, file).expect("resolve");
        assert_eq!(s.url, "https://flag:1");
        assert_eq!(s.node.as_deref(), Some("n1"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.user, DEFAULT_USER);
        let d = resolve(FlagConfig::default(), FileConfig::default()).expect("defaults");
        assert_eq!(d.url, DEFAULT_URL);
    }

    #[test]
    fn urls_are_normalised() {
        assert_eq!(
            normalise_url("10.0.0.5:8006").expect("ok"),
            "https://10.0.0.5:8006"
        );
        assert_eq!(
            normalise_url("https://n1:8006/api/v1/").expect("ok"),
            "https://n1:8006"
        );
        assert!(normalise_url("http://n1:8006").is_err());
        assert!(normalise_url("https://").is_err());
    }
}
