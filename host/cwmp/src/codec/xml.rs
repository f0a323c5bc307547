//! A small owned element tree, built in one pass with hard limits.
//!
//! Elements live in one `Vec` in document (pre-)order and each records where its subtree
//! ends, so children, descendants and siblings are index arithmetic: walking the tree needs
//! neither recursion nor pointers. Only what CWMP needs is kept: the local name (prefixes
//! are ignored, declared or not), the text of leaf elements, `xsi:type`, and the first cwmp
//! namespace declared anywhere.

use std::borrow::Cow;
use std::collections::HashMap;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::reader::Reader;

use super::{DecodeError, MAX_DEPTH, MAX_ELEMENTS, MAX_MESSAGE_BYTES};
use crate::CwmpVersion;
use crate::value::ValueType;

/// Index of an element in [`Document::elements`].
pub(super) type Id = usize;

struct Element {
    /// Index into [`Document::names`].
    name: u32,
    /// Parent element; the root is its own parent.
    parent: u32,
    /// One past the last descendant: the subtree is `self_index..subtree_end`.
    subtree_end: u32,
    /// Character data of a leaf element; container whitespace is dropped.
    text: String,
    /// The `type` attribute (`xsi:type`, whatever the prefix or none).
    xsi_type: Option<ValueType>,
}

pub(super) struct Document {
    elements: Vec<Element>,
    /// Interned local names: a GPV response repeats three names thousands of times.
    names: Vec<Box<str>>,
    /// The version named by the first cwmp namespace declared in the document.
    pub(super) namespace_version: Option<CwmpVersion>,
}

/// Iterates the children of one element without borrowing the document, so the caller can
/// take text out of children while walking them.
#[derive(Clone, Copy)]
pub(super) struct Children {
    next: usize,
    end: usize,
}

impl Children {
    pub(super) fn next_in(&mut self, doc: &Document) -> Option<Id> {
        if self.next >= self.end {
            return None;
        }
        let current = self.next;
        self.next = doc.elements.get(current).map_or(self.end, |e| e.subtree_end as usize);
        Some(current)
    }
}

impl Document {
    /// Parses `bytes` into a tree, refusing anything unsafe or not XML.
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge { size: bytes.len(), limit: MAX_MESSAGE_BYTES });
        }
        // Invalid UTF-8 is replaced rather than refused: one bad byte in a vendor string
        // must not cost the whole Inform. (`from_utf8` first: the lossy scan is far slower.)
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        };
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
        if text.trim().is_empty() {
            return Err(DecodeError::Empty);
        }
        Builder::new(text.len()).run(text)
    }

    pub(super) fn root(&self) -> Id {
        0
    }

    pub(super) fn name(&self, id: Id) -> &str {
        self.elements.get(id).and_then(|e| self.names.get(e.name as usize)).map_or("", |n| n)
    }

    /// Exact, case-sensitive: SOAP's `faultcode` and CWMP's `FaultCode` differ only in case.
    pub(super) fn is(&self, id: Id, name: &str) -> bool {
        self.name(id) == name
    }

    pub(super) fn text(&self, id: Id) -> &str {
        self.elements.get(id).map_or("", |e| &e.text)
    }

    pub(super) fn take_text(&mut self, id: Id) -> String {
        self.elements.get_mut(id).map(|e| std::mem::take(&mut e.text)).unwrap_or_default()
    }

    pub(super) fn xsi_type(&self, id: Id) -> Option<&ValueType> {
        self.elements.get(id).and_then(|e| e.xsi_type.as_ref())
    }

    pub(super) fn parent(&self, id: Id) -> Id {
        self.elements.get(id).map_or(0, |e| e.parent as usize)
    }

    fn subtree_end(&self, id: Id) -> usize {
        self.elements.get(id).map_or(id, |e| e.subtree_end as usize)
    }

    pub(super) fn children(&self, id: Id) -> Children {
        Children { next: id + 1, end: self.subtree_end(id) }
    }

    /// The first child with this local name.
    pub(super) fn child(&self, id: Id, name: &str) -> Option<Id> {
        let mut children = self.children(id);
        while let Some(child) = children.next_in(self) {
            if self.is(child, name) {
                return Some(child);
            }
        }
        None
    }

    /// The first element child, whatever its name.
    pub(super) fn first_child(&self, id: Id) -> Option<Id> {
        self.children(id).next_in(self)
    }

    /// The first descendant (not `id` itself) with this local name, in document order.
    pub(super) fn descendant(&self, id: Id, name: &str) -> Option<Id> {
        (id + 1..self.subtree_end(id)).find(|&d| self.is(d, name))
    }
}

struct Builder {
    elements: Vec<Element>,
    names: Vec<Box<str>>,
    name_ids: HashMap<Box<str>, u32>,
    /// Open elements, innermost last.
    open: Vec<u32>,
    /// Whitespace seen in the innermost open element while it has no child and no other
    /// text. It is nearly always layout before a first child, so it waits in this reused
    /// buffer instead of costing an allocation per element; it becomes the element's text
    /// only if the element closes without children.
    pending: String,
    namespace_version: Option<CwmpVersion>,
}

impl Builder {
    fn new(input_len: usize) -> Self {
        Self {
            // About one element per 40 bytes in compact CWMP; a guess, not a limit.
            elements: Vec::with_capacity((input_len / 40).clamp(16, 65_536)),
            names: Vec::new(),
            name_ids: HashMap::new(),
            open: Vec::with_capacity(MAX_DEPTH),
            pending: String::new(),
            namespace_version: None,
        }
    }

    fn run(mut self, text: &str) -> Result<Document, DecodeError> {
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.trim_text(false);
        // `a=1&b=2` in an unescaped URL is common; keep the `&` rather than fail.
        config.allow_dangling_amp = true;

        loop {
            let event = reader.read_event().map_err(|error| DecodeError::NotXml {
                position: reader.error_position(),
                reason: error.to_string(),
            })?;
            match event {
                Event::Start(start) => self.open_element(&start, false)?,
                Event::Empty(start) => self.open_element(&start, true)?,
                Event::End(_) => {
                    if let Some(id) = self.open.pop() {
                        self.close(id);
                        if self.open.is_empty() {
                            // Anything after the root (trailing NULs, junk) is ignored.
                            break;
                        }
                    }
                }
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) if !self.wants_text() => {}
                Event::Text(text) => {
                    let decoded = text.decode().map_err(|error| DecodeError::NotXml {
                        position: reader.buffer_position(),
                        reason: error.to_string(),
                    })?;
                    self.push_text(&decoded);
                }
                Event::CData(data) => {
                    let raw = data.into_inner();
                    self.push_text(&String::from_utf8_lossy(&raw));
                }
                Event::GeneralRef(reference) => self.push_reference(&reference),
                Event::DocType(_) => return Err(DecodeError::DoctypeRefused),
                Event::Eof => {
                    if let Some(&innermost) = self.open.last() {
                        let name = self.element_name(innermost as usize).to_owned();
                        return Err(DecodeError::NotXml {
                            position: reader.buffer_position(),
                            reason: format!("document ends inside <{name}>"),
                        });
                    }
                    break;
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            }
        }

        if self.elements.is_empty() {
            return Err(DecodeError::NotXml { position: 0, reason: "no element found".to_owned() });
        }
        Ok(Document { elements: self.elements, names: self.names, namespace_version: self.namespace_version })
    }

    fn open_element(&mut self, start: &BytesStart<'_>, empty: bool) -> Result<(), DecodeError> {
        if self.open.len() >= MAX_DEPTH {
            return Err(DecodeError::TooDeep { limit: MAX_DEPTH });
        }
        if self.elements.len() >= MAX_ELEMENTS {
            return Err(DecodeError::TooManyElements { limit: MAX_ELEMENTS });
        }
        // The root closing ends parsing, so a second root never gets here.
        let parent = match self.open.last() {
            Some(&parent) => {
                // A child makes the parent a container: its text so far is layout.
                self.pending.clear();
                if let Some(p) = self.elements.get_mut(parent as usize) {
                    p.text.clear();
                }
                parent
            }
            None => 0,
        };
        let name = self.intern(start.local_name().into_inner());
        let xsi_type = self.scan_attributes(start);
        // Both bounded by MAX_ELEMENTS, far below u32::MAX.
        let id = self.elements.len() as u32;
        self.elements.push(Element { name, parent, subtree_end: id + 1, text: String::new(), xsi_type });
        if empty {
            self.close(id);
        } else {
            self.open.push(id);
        }
        Ok(())
    }

    fn close(&mut self, id: u32) {
        let end = self.elements.len() as u32;
        let is_leaf = end == id + 1;
        if let Some(element) = self.elements.get_mut(id as usize) {
            element.subtree_end = end;
            if is_leaf && !self.pending.is_empty() {
                element.text = std::mem::take(&mut self.pending);
            }
        }
    }

    fn intern(&mut self, name: &[u8]) -> u32 {
        // A CWMP message uses a couple of dozen names: a scan beats hashing. Hostile input
        // with many distinct names falls through to the map, so the cost stays linear.
        const SCANNED: usize = 32;
        if let Some(id) = self.names.iter().take(SCANNED).position(|known| known.as_bytes() == name) {
            return id as u32;
        }
        let name = std::str::from_utf8(name).unwrap_or("");
        if self.names.len() > SCANNED
            && let Some(&id) = self.name_ids.get(name)
        {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        if id as usize >= SCANNED {
            self.name_ids.insert(name.into(), id);
        }
        id
    }

    fn element_name(&self, id: usize) -> &str {
        self.elements.get(id).and_then(|e| self.names.get(e.name as usize)).map_or("", |n| n)
    }

    /// Reads `xsi:type` and notes the first cwmp namespace declaration. Malformed attributes
    /// are skipped: they carry nothing CWMP needs.
    fn scan_attributes(&mut self, start: &BytesStart<'_>) -> Option<ValueType> {
        let mut xsi_type = None;
        for attribute in start.attributes().with_checks(false) {
            let Ok(attribute) = attribute else { break };
            let key = attribute.key;
            if key.local_name().as_ref() == b"type" {
                xsi_type = Some(value_type(&attribute_value(&attribute.value)));
            } else if self.namespace_version.is_none()
                && (key.as_ref() == b"xmlns" || key.as_ref().starts_with(b"xmlns:"))
            {
                self.namespace_version = CwmpVersion::from_namespace(&attribute_value(&attribute.value));
            }
        }
        xsi_type
    }

    /// Whether text now would belong to a leaf: text outside the root, or after a child
    /// element (layout between siblings), is never data and is not even decoded.
    fn wants_text(&self) -> bool {
        self.open.last().is_some_and(|&current| self.elements.len() == current as usize + 1)
    }

    fn push_text(&mut self, text: &str) {
        if !self.wants_text() {
            return;
        }
        let Some(element) = self.open.last().and_then(|&current| self.elements.get_mut(current as usize)) else {
            return;
        };
        if element.text.is_empty() && text.bytes().all(|b| b.is_ascii_whitespace()) {
            self.pending.push_str(text);
            return;
        }
        if !self.pending.is_empty() {
            element.text.push_str(&self.pending);
            self.pending.clear();
        }
        element.text.push_str(text);
    }

    /// Resolves character references and the five predefined entities. Nothing else can be
    /// defined (DOCTYPE is refused), so any other name is kept literally.
    fn push_reference(&mut self, reference: &BytesRef<'_>) {
        let name = reference.decode().unwrap_or(Cow::Borrowed(""));
        let resolved = match name.as_ref() {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ if reference.is_char_ref() => {
                Some(reference.resolve_char_ref().ok().flatten().unwrap_or(char::REPLACEMENT_CHARACTER))
            }
            _ => None,
        };
        match resolved {
            Some(c) => {
                let mut buffer = [0; 4];
                self.push_text(c.encode_utf8(&mut buffer));
            }
            None => self.push_text(&format!("&{name};")),
        }
    }
}

/// `ValueType::parse` without its allocation for the spellings nearly every CPE uses.
fn value_type(raw: &str) -> ValueType {
    match raw {
        "xsd:string" => ValueType::String,
        "xsd:unsignedInt" => ValueType::UnsignedInt,
        "xsd:boolean" => ValueType::Boolean,
        "xsd:int" => ValueType::Int,
        "xsd:dateTime" => ValueType::DateTime,
        _ => ValueType::parse(raw),
    }
}

/// An attribute value with the predefined entities resolved, or as written if it has
/// anything else: namespace URIs and type names never need more.
fn attribute_value(raw: &[u8]) -> Cow<'_, str> {
    let text = match std::str::from_utf8(raw) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(raw),
    };
    if !text.contains('&') {
        return text;
    }
    match quick_xml::escape::unescape(&text) {
        Ok(unescaped) => Cow::Owned(unescaped.into_owned()),
        Err(_) => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<Document, DecodeError> {
        Document::parse(xml.as_bytes())
    }

    #[test]
    fn children_and_descendants_follow_document_order() {
        let doc = parse("<a><b><c>1</c></b><d/><e>2</e></a>").unwrap();
        let mut names = Vec::new();
        let mut children = doc.children(doc.root());
        while let Some(child) = children.next_in(&doc) {
            names.push(doc.name(child).to_owned());
        }
        assert_eq!(names, ["b", "d", "e"]);
        assert!(doc.descendant(doc.root(), "C").is_none(), "names are case-sensitive");
        let c = doc.descendant(doc.root(), "c").unwrap();
        assert_eq!(doc.text(c), "1");
        assert_eq!(doc.name(doc.parent(c)), "b");
        assert_eq!(doc.text(doc.child(doc.root(), "e").unwrap()), "2");
        assert!(doc.child(doc.root(), "c").is_none(), "grandchildren are not children");
    }

    #[test]
    fn prefixes_are_ignored_even_when_undeclared() {
        let doc = parse("<soap:Fault><x:FaultCode>9000</x:FaultCode></soap:Fault>").unwrap();
        assert_eq!(doc.name(doc.root()), "Fault");
        assert_eq!(doc.text(doc.child(doc.root(), "FaultCode").unwrap()), "9000");
    }

    #[test]
    fn references_cdata_and_whitespace_are_text() {
        let doc = parse("<a><v> x &amp; &lt;&#x41;&#66;&quot; <![CDATA[<raw>]]> </v><w>&nbsp;</w></a>").unwrap();
        let v = doc.child(doc.root(), "v").unwrap();
        assert_eq!(doc.text(v), " x & <AB\" <raw> ");
        assert_eq!(doc.text(doc.child(doc.root(), "w").unwrap()), "&nbsp;");
    }

    #[test]
    fn dangling_ampersand_is_kept() {
        let doc = parse("<u>http://h/p?a=1&b=2</u>").unwrap();
        assert_eq!(doc.text(doc.root()), "http://h/p?a=1&b=2");
    }

    #[test]
    fn container_layout_whitespace_is_dropped() {
        let doc = parse("<a>\n  <b>1</b>\n  <c>2</c>\n</a>").unwrap();
        assert_eq!(doc.text(doc.root()), "");
    }

    #[test]
    fn whitespace_only_and_whitespace_edged_leaf_text_is_kept() {
        let doc = parse("<a>\n <b>  </b> <c> </c><d> x\t</d><e>  <![CDATA[ ]]>&#32;</e><f>\n</f></a>").unwrap();
        let text = |name| doc.text(doc.child(doc.root(), name).unwrap()).to_owned();
        assert_eq!(text("b"), "  ");
        assert_eq!(text("c"), " ");
        assert_eq!(text("d"), " x\t");
        assert_eq!(text("e"), "    ");
        assert_eq!(text("f"), "\n");
        assert_eq!(doc.text(doc.root()), "");
    }

    #[test]
    fn xsi_type_and_namespace_are_recorded() {
        let doc =
            parse(r#"<E xmlns:q="urn:dslforum-org:cwmp-1-1"><V xsi:type="xsd:unsignedInt">5</V><W type="x"/></E>"#)
                .unwrap();
        assert_eq!(doc.namespace_version, Some(CwmpVersion::V1_1));
        assert_eq!(doc.xsi_type(doc.child(0, "V").unwrap()), Some(&ValueType::UnsignedInt));
        assert_eq!(
            doc.xsi_type(doc.child(0, "W").unwrap()),
            Some(&ValueType::Other("x".into())),
            "prefix is not required"
        );
    }

    #[test]
    fn doctype_is_refused_before_any_entity_is_seen() {
        let xml = r#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx">]><a>&x;</a>"#;
        assert!(matches!(parse(xml), Err(DecodeError::DoctypeRefused)));
    }

    #[test]
    fn depth_64_is_accepted_and_65_refused() {
        let nest = |depth: usize| "<a>".repeat(depth) + &"</a>".repeat(depth);
        assert!(parse(&nest(MAX_DEPTH)).is_ok());
        assert!(matches!(parse(&nest(MAX_DEPTH + 1)), Err(DecodeError::TooDeep { limit: 64 })));
        let empty_at_65 = "<a>".repeat(MAX_DEPTH) + "<b/>" + &"</a>".repeat(MAX_DEPTH);
        assert!(matches!(parse(&empty_at_65), Err(DecodeError::TooDeep { .. })));
    }

    #[test]
    fn element_count_is_capped() {
        let xml = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS));
        assert!(matches!(parse(&xml), Err(DecodeError::TooManyElements { limit: MAX_ELEMENTS })));
    }

    #[test]
    fn oversized_input_is_refused_without_parsing() {
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(Document::parse(&big), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn garbage_gives_errors_not_panics() {
        for garbage in [&b"hello world"[..], b"<a><b></a>", b"<a>", b"<<<>>>", b"\xff\xfe\x00<\x00a", b"</a>"] {
            let result = Document::parse(garbage);
            assert!(result.is_err(), "{:?} was accepted", String::from_utf8_lossy(garbage));
        }
        assert!(matches!(Document::parse(b"  \n "), Err(DecodeError::Empty)));
    }

    #[test]
    fn bom_declaration_and_invalid_utf8_are_tolerated() {
        let doc = Document::parse(b"\xEF\xBB\xBF  <?xml version=\"1.0\"?>\n<a>caf\xE9</a>").unwrap();
        assert_eq!(doc.text(doc.root()), "caf\u{FFFD}");
    }

    #[test]
    fn trailing_junk_after_the_root_is_ignored() {
        let doc = Document::parse(b"<a>1</a>\0\0 junk <b>").unwrap();
        assert_eq!(doc.text(doc.root()), "1");
    }
}
