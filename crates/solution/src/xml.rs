//! A small streaming walker over quick-xml: no DOM, one event at a time.
//! It refuses any DOCTYPE (so no entity is ever declared, let alone
//! resolved), resolves only the five predefined entities and character
//! references, and stops at the configured nesting depth.

use std::io::BufRead;

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use crate::archive::io_to_solution;
use crate::error::SolutionError;

/// Receives elements as the walker meets them. `path` holds the lowercase
/// local names from the root to the current element (inclusive).
pub(crate) trait Visitor {
    /// Called on each start (or empty) tag; return true to receive the
    /// element's text in [`Visitor::end`].
    fn start(&mut self, path: &[String], e: &Element<'_>) -> Result<bool, SolutionError>;
    /// Called when the element closes, with its text if asked for.
    fn end(&mut self, path: &[String], text: Option<String>) -> Result<(), SolutionError>;
}

/// A start tag with access to its attributes.
pub(crate) struct Element<'a> {
    tag: &'a BytesStart<'a>,
    entry: &'a str,
}

impl Element<'_> {
    /// Attribute value by name (case-insensitive), unescaped. An unprefixed
    /// attribute wins; a prefixed one (`ns:type`) counts only when no
    /// unprefixed one exists and its prefix is not `xmlns`/`xsi` (so
    /// `xsi:type` never passes for `type`).
    pub(crate) fn attr(&self, name: &str) -> Result<Option<String>, SolutionError> {
        let mut prefixed = None;
        for a in self.tag.attributes() {
            let a = a.map_err(|e| xml_err(self.entry, e))?;
            let full = a.key.as_ref().eq_ignore_ascii_case(name);
            let local = a.key.local_name().as_ref().eq_ignore_ascii_case(name);
            let foreign = a.key.prefix().is_some_and(|p| {
                let p = p.as_ref();
                p.eq_ignore_ascii_case("xmlns") || p.eq_ignore_ascii_case("xsi")
            });
            if full || (local && !foreign && prefixed.is_none()) {
                let v = a
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| xml_err(self.entry, e))?
                    .into_owned();
                if full {
                    return Ok(Some(v));
                }
                prefixed = Some(v);
            }
        }
        Ok(prefixed)
    }

    /// Every attribute whose name starts with `prefix` (case-insensitive), as
    /// (name without the prefix, value), in document order.
    pub(crate) fn attrs_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, SolutionError> {
        let mut out = Vec::new();
        for a in self.tag.attributes() {
            let a = a.map_err(|e| xml_err(self.entry, e))?;
            let key: &str = a.key.as_ref();
            if key.len() > prefix.len()
                && key.is_char_boundary(prefix.len())
                && key[..prefix.len()].eq_ignore_ascii_case(prefix)
            {
                let v = a
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| xml_err(self.entry, e))?;
                out.push((key[prefix.len()..].to_owned(), v.into_owned()));
            }
        }
        Ok(out)
    }
}

fn xml_err(entry: &str, e: impl std::fmt::Display) -> SolutionError {
    SolutionError::Xml {
        entry: entry.to_owned(),
        message: e.to_string(),
    }
}

/// The lowercase local name, written into a recycled string.
fn lower_local(tag: &BytesStart<'_>, spare: &mut Vec<String>) -> String {
    let mut s = spare.pop().unwrap_or_default();
    s.clear();
    s.push_str(tag.local_name().as_ref());
    s.make_ascii_lowercase();
    s
}

fn push_ref(text: &mut String, r: &BytesRef<'_>, entry: &str) -> Result<(), SolutionError> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| xml_err(entry, e))? {
        text.push(c);
        return Ok(());
    }
    let name = r.xml10_content();
    match quick_xml::escape::resolve_predefined_entity(&name) {
        Some(v) => {
            text.push_str(v);
            Ok(())
        }
        None => Err(xml_err(
            entry,
            format!("undefined entity &{name}; (entities are never resolved)"),
        )),
    }
}

/// Walks a whole XML document, calling `v` for each element.
pub(crate) fn walk<R: BufRead>(
    mut input: R,
    entry: &str,
    max_depth: usize,
    v: &mut impl Visitor,
) -> Result<(), SolutionError> {
    let head = input.fill_buf().map_err(|e| io_to_solution(e, entry))?;
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        return Err(SolutionError::Encoding {
            entry: entry.to_owned(),
            message: "it starts with a UTF-16 byte-order mark; re-save it as UTF-8".into(),
        });
    }
    let mut reader = Reader::from_reader(input);
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut path: Vec<String> = Vec::new();
    let mut spare: Vec<String> = Vec::new();
    // (depth, text) of the element whose text is being collected
    let mut capture: Option<(usize, String)> = None;
    let mut saw_root = false;
    loop {
        buf.clear();
        let ev = reader.read_event_into(&mut buf).map_err(|e| match e {
            quick_xml::Error::Io(io) => {
                let io = std::sync::Arc::try_unwrap(io)
                    .unwrap_or_else(|a| std::io::Error::new(a.kind(), a.to_string()));
                io_to_solution(io, entry)
            }
            quick_xml::Error::Encoding(e) => SolutionError::Encoding {
                entry: entry.to_owned(),
                message: e.to_string(),
            },
            e => SolutionError::Xml {
                entry: entry.to_owned(),
                message: format!("{e} at byte {}", reader.error_position()),
            },
        })?;
        match ev {
            Event::DocType(_) => {
                return Err(xml_err(
                    entry,
                    "a DOCTYPE is not allowed (entities and DTDs are refused)",
                ));
            }
            Event::Start(ref tag) | Event::Empty(ref tag) => {
                let is_empty = matches!(ev, Event::Empty(_));
                if path.is_empty() {
                    if saw_root {
                        return Err(xml_err(entry, "more than one root element"));
                    }
                    saw_root = true;
                }
                if path.len() >= max_depth {
                    return Err(SolutionError::LimitExceeded {
                        entry: entry.to_owned(),
                        what: format!("xml nesting deeper than {max_depth}"),
                        limit: max_depth as u64,
                    });
                }
                path.push(lower_local(tag, &mut spare));
                let wants = v.start(&path, &Element { tag, entry })?;
                if wants && capture.is_none() {
                    capture = Some((path.len(), String::new()));
                }
                if is_empty {
                    close(&mut path, &mut spare, &mut capture, v)?;
                }
            }
            Event::End(_) => close(&mut path, &mut spare, &mut capture, v)?,
            Event::Text(t) => {
                if let Some((_, s)) = capture.as_mut() {
                    s.push_str(&t.xml10_content());
                } else if path.is_empty() && !t.xml10_content().trim().is_empty() {
                    return Err(xml_err(entry, "text outside the root element"));
                }
            }
            Event::CData(t) => {
                if let Some((_, s)) = capture.as_mut() {
                    s.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let mut sink = String::new();
                let target = match capture.as_mut() {
                    Some((_, s)) => s,
                    None => &mut sink,
                };
                push_ref(target, &r, entry)?;
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    if !path.is_empty() {
        return Err(xml_err(
            entry,
            format!("document ends inside <{}>", path.join("/")),
        ));
    }
    if !saw_root {
        return Err(xml_err(entry, "no root element"));
    }
    Ok(())
}

fn close(
    path: &mut Vec<String>,
    spare: &mut Vec<String>,
    capture: &mut Option<(usize, String)>,
    v: &mut impl Visitor,
) -> Result<(), SolutionError> {
    let text = match capture {
        Some((d, _)) if *d == path.len() => capture.take().map(|(_, s)| s),
        _ => None,
    };
    v.end(path, text)?;
    spare.extend(path.pop());
    Ok(())
}
