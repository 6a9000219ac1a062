//! A small owned XML element tree: the structured model behind every engine XML Keel writes
//! (libvirt domains, pools, volumes, networks; Pacemaker CIB fragments) and reads back. Rendering is deterministic
//! (attributes in insertion order, two-space indentation) so golden files are exact.

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("XML has no root element")]
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: Option<String>,
}

impl Element {
    pub fn new(name: &str) -> Self {
        Element {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// Builder: add an attribute.
    pub fn attr(mut self, k: &str, v: impl ToString) -> Self {
        self.attrs.push((k.to_string(), v.to_string()));
        self
    }

    /// Builder: add an attribute when the value is present.
    pub fn attr_opt(self, k: &str, v: Option<impl ToString>) -> Self {
        match v {
            Some(v) => self.attr(k, v),
            None => self,
        }
    }

    /// Builder: set text content.
    pub fn text(mut self, t: impl ToString) -> Self {
        self.text = Some(t.to_string());
        self
    }

    /// Builder: add a child.
    pub fn child(mut self, c: Element) -> Self {
        self.children.push(c);
        self
    }

    /// Builder: add a child when present.
    pub fn child_opt(mut self, c: Option<Element>) -> Self {
        if let Some(c) = c {
            self.children.push(c);
        }
        self
    }

    pub fn push(&mut self, c: Element) {
        self.children.push(c);
    }

    pub fn get_attr(&self, k: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    }

    /// First child with this name.
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this name.
    pub fn find_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Every element below this one (depth first, document order) with this name.
    pub fn descendants<'a>(&'a self, name: &str) -> Vec<&'a Element> {
        let mut out = Vec::new();
        let mut stack: Vec<&Element> = self.children.iter().rev().collect();
        while let Some(e) = stack.pop() {
            if e.name == name {
                out.push(e);
            }
            stack.extend(e.children.iter().rev());
        }
        out
    }

    /// Descend a `/`-separated path of child names.
    pub fn path(&self, path: &str) -> Option<&Element> {
        path.split('/').try_fold(self, |e, p| e.find(p))
    }

    /// Trimmed text of the element at `path`.
    pub fn path_text(&self, path: &str) -> Option<&str> {
        self.path(path)
            .and_then(|e| e.text.as_deref())
            .map(str::trim)
    }

    pub fn parse(s: &str) -> Result<Element, XmlError> {
        let mut reader = Reader::from_str(s);
        let mut stack: Vec<Element> = Vec::new();
        let mut root: Option<Element> = None;
        loop {
            let ev = reader
                .read_event()
                .map_err(|e| XmlError::Malformed(e.to_string()))?;
            match ev {
                Event::Start(b) => stack.push(start_to_element(&b)?),
                Event::Empty(b) => {
                    let e = start_to_element(&b)?;
                    match stack.last_mut() {
                        Some(p) => p.children.push(e),
                        None => root = Some(e),
                    }
                }
                Event::End(_) => {
                    let e = stack
                        .pop()
                        .ok_or_else(|| XmlError::Malformed("unbalanced end tag".into()))?;
                    match stack.last_mut() {
                        Some(p) => p.children.push(e),
                        None => root = Some(e),
                    }
                }
                Event::Text(t) => {
                    let t = t
                        .unescape()
                        .map_err(|e| XmlError::Malformed(e.to_string()))?;
                    if let Some(cur) = stack.last_mut() {
                        if !t.trim().is_empty() {
                            cur.text.get_or_insert_with(String::new).push_str(&t);
                        }
                    }
                }
                Event::CData(t) => {
                    if let Some(cur) = stack.last_mut() {
                        let t = String::from_utf8_lossy(&t).into_owned();
                        cur.text.get_or_insert_with(String::new).push_str(&t);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if !stack.is_empty() {
            return Err(XmlError::Malformed(format!(
                "unclosed element <{}>",
                stack[stack.len() - 1].name
            )));
        }
        root.ok_or(XmlError::Empty)
    }

    /// Render with two-space indentation and a trailing newline.
    pub fn render(&self) -> String {
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        // Writing into a Vec cannot fail.
        let _ = write_el(&mut w, self);
        let mut s = String::from_utf8_lossy(&w.into_inner()).into_owned();
        s.push('\n');
        s
    }
}

fn start_to_element(b: &BytesStart) -> Result<Element, XmlError> {
    let mut e = Element::new(&String::from_utf8_lossy(b.name().as_ref()));
    for a in b.attributes() {
        let a = a.map_err(|e| XmlError::Malformed(e.to_string()))?;
        let v = a
            .unescape_value()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        e.attrs.push((
            String::from_utf8_lossy(a.key.as_ref()).into_owned(),
            v.into_owned(),
        ));
    }
    Ok(e)
}

fn write_el(w: &mut Writer<Vec<u8>>, e: &Element) -> std::io::Result<()> {
    let mut start = BytesStart::new(e.name.as_str());
    for (k, v) in &e.attrs {
        start.push_attribute((k.as_str(), v.as_str()));
    }
    if e.children.is_empty() && e.text.is_none() {
        return w.write_event(Event::Empty(start));
    }
    w.write_event(Event::Start(start))?;
    if let Some(t) = &e.text {
        w.write_event(Event::Text(BytesText::new(t)))?;
    }
    for c in &e.children {
        write_el(w, c)?;
    }
    w.write_event(Event::End(BytesEnd::new(e.name.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_escaping() {
        let e = Element::new("a")
            .attr("x", "1 & <2>")
            .child(Element::new("b").text("t'\"&"))
            .child(Element::new("c"));
        let s = e.render();
        assert_eq!(
            s,
            "<a x=\"1 &amp; &lt;2&gt;\">\n  <b>t&apos;&quot;&amp;</b>\n  <c/>\n</a>\n"
        );
        assert_eq!(Element::parse(&s).ok(), Some(e));
    }

    #[test]
    fn malformed_is_an_error() {
        assert!(Element::parse("<a><b></a>").is_err());
        assert!(Element::parse("").is_err());
    }
}
