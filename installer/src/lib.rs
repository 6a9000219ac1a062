//! Keel's installer, pure logic: the answer file (strict TOML), its validation, the provisioning
//! plan derived from a valid answer plus the discovered hardware, and the renderers that turn the
//! plan into files for Debian (systemd-networkd, chrony, hosts, ssh) and RHEL-family nodes
//! (a kickstart).
//!
//! The pure part (answer, validate, hw, plan, render, prompt) never touches the machine. On top
//! of it: the ISO build ([`iso`]), the answer sources ([`source`], [`fetch`]), the install
//! program ([`program`], [`install`], [`system`]) and the first-boot agent ([`firstboot`]).

pub mod answer;
pub mod fetch;
pub mod firstboot;
pub mod hw;
pub mod install;
pub mod iso;
pub mod plan;
pub mod program;
pub mod prompt;
pub mod render;
pub mod source;
pub mod system;
pub mod util;
pub mod validate;

use serde::Serialize;

/// One finding about an answer file: the key path it concerns (`network.bonds[0].slaves`) and
/// what is wrong and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

impl Issue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All findings, one per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issues(pub Vec<Issue>);

impl std::fmt::Display for Issues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for i in &self.0 {
            writeln!(f, "{i}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The answer file (or the answer against this hardware) is not acceptable.
    #[error("the answer file is not valid:\n{0}")]
    Invalid(Issues),
}

/// Parse an answer file strictly (unknown keys are errors). Only the shape is checked here;
/// [`validate::validate`] checks the meaning.
pub fn parse_answer(text: &str) -> Result<answer::Answer, Error> {
    let value: toml::Value = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', "; ");
        let at = e
            .span()
            .map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            })
            .unwrap_or_default();
        Error::Invalid(Issues(vec![Issue::new(
            "",
            format!("not valid TOML: {msg}{at}"),
        )]))
    })?;
    serde_path_to_error::deserialize::<_, answer::Answer>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let msg = e.inner().to_string();
        // toml appends "in `KEY`"; the path already says where.
        let msg = msg
            .split("\nin `")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        Error::Invalid(Issues(vec![Issue::new(path, msg)]))
    })
}

/// Parse and validate: the answer, or every problem found.
pub fn load_answer(text: &str) -> Result<answer::Answer, Error> {
    let a = parse_answer(text)?;
    let issues = validate::validate(&a);
    if issues.is_empty() {
        Ok(a)
    } else {
        Err(Error::Invalid(Issues(issues)))
    }
}
