//! A systemd-style INI file: optional leading comments, then ordered sections of `Key=Value`
//! lines (keys may repeat). Rendered by [`UnitFile::render`], read back by [`UnitFile::parse`].

/// One unit file as an ordered list of sections.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnitFile {
    comments: Vec<String>,
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl UnitFile {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn comment(&mut self, c: impl Into<String>) -> &mut Self {
        self.comments.push(c.into());
        self
    }

    /// Start a section; following `set` calls go into it.
    pub fn section(&mut self, name: &str) -> &mut Self {
        self.sections.push((name.to_string(), Vec::new()));
        self
    }

    pub fn set(&mut self, key: &str, value: impl ToString) -> &mut Self {
        if self.sections.is_empty() {
            self.sections.push((String::new(), Vec::new()));
        }
        if let Some((_, kv)) = self.sections.last_mut() {
            kv.push((key.to_string(), value.to_string()));
        }
        self
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.comments {
            out.push_str(&format!("# {c}\n"));
        }
        for (i, (name, kv)) in self.sections.iter().enumerate() {
            if i > 0 || !self.comments.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[{name}]\n"));
            for (k, v) in kv {
                out.push_str(&format!("{k}={v}\n"));
            }
        }
        out
    }

    /// Read a unit file: `#`/`;` comments (the leading ones kept), `[Section]` headers,
    /// `Key=Value` lines. A line that is none of these is an error naming it.
    pub fn parse(text: &str) -> Result<UnitFile, String> {
        let mut u = UnitFile::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(c) = line.strip_prefix('#').or_else(|| line.strip_prefix(';')) {
                if u.sections.is_empty() {
                    u.comments.push(c.trim().to_string());
                }
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                u.section(name.trim());
                continue;
            }
            match line.split_once('=') {
                Some((k, v)) if !u.sections.is_empty() => {
                    u.set(k.trim(), v.trim());
                }
                _ => return Err(format!("line {}: `{line}` is not `Key=Value`", n + 1)),
            }
        }
        Ok(u)
    }

    pub fn comments(&self) -> &[String] {
        &self.comments
    }

    /// Every value of `key` in every section named `section`, in order.
    pub fn values<'a>(
        &'a self,
        section: &'a str,
        key: &'a str,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.sections
            .iter()
            .filter(move |(s, _)| s == section)
            .flat_map(|(_, kv)| kv.iter())
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The last value of `key` in `section` (systemd's rule for single-valued keys).
    pub fn get<'a>(&'a self, section: &str, key: &str) -> Option<&'a str> {
        self.sections
            .iter()
            .filter(|(s, _)| s == section)
            .flat_map(|(_, kv)| kv.iter())
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .next_back()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unit_file_renders_in_order_and_reads_back() {
        let mut u = UnitFile::new();
        u.comment("hi").section("Match").set("Name", "eth0");
        u.section("Network")
            .set("DNS", "1.1.1.1")
            .set("DNS", "9.9.9.9");
        let text = u.render();
        assert_eq!(
            text,
            "# hi\n\n[Match]\nName=eth0\n\n[Network]\nDNS=1.1.1.1\nDNS=9.9.9.9\n"
        );
        let back = UnitFile::parse(&text).unwrap();
        assert_eq!(back, u);
        assert_eq!(
            back.values("Network", "DNS").collect::<Vec<_>>(),
            ["1.1.1.1", "9.9.9.9"]
        );
        assert_eq!(back.get("Match", "Name"), Some("eth0"));
        assert!(UnitFile::parse("[A]\nnonsense\n")
            .unwrap_err()
            .contains("line 2"));
    }
}
