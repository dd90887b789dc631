//! customizations.xml: connection references, read as a stream (the file
//! can be large; only the `<connectionreferences>` subtree is looked at).

use std::io::BufRead;

use crate::error::SolutionError;
use crate::model::ConnectionReference;
use crate::xml::{Element, Visitor, walk};

#[derive(Default)]
struct Refs {
    out: Vec<ConnectionReference>,
    current: Option<(String, Option<String>, Option<String>)>,
    entry: String,
}

fn in_ref(path: &[String]) -> bool {
    path.len() >= 3 && path[1] == "connectionreferences" && path[2] == "connectionreference"
}

impl Visitor for Refs {
    fn start(&mut self, path: &[String], e: &Element<'_>) -> Result<bool, SolutionError> {
        if !in_ref(path) {
            return Ok(false);
        }
        match path.len() {
            3 => {
                let name = e
                    .attr("connectionreferencelogicalname")?
                    .unwrap_or_default();
                self.current = Some((name.trim().to_owned(), None, None));
                Ok(false)
            }
            4 => Ok(matches!(
                path[3].as_str(),
                "connectionreferencedisplayname" | "connectorid" | "connectionreferencelogicalname"
            )),
            _ => Ok(false),
        }
    }

    fn end(&mut self, path: &[String], text: Option<String>) -> Result<(), SolutionError> {
        if !in_ref(path) {
            return Ok(());
        }
        match (path.len(), self.current.as_mut()) {
            (4, Some(cur)) => {
                let text = text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
                match path[3].as_str() {
                    "connectionreferencedisplayname" => cur.1 = text,
                    "connectorid" => cur.2 = text,
                    // unpacked or hand-edited files may carry the name as a child
                    "connectionreferencelogicalname" if cur.0.is_empty() => {
                        cur.0 = text.unwrap_or_default()
                    }
                    _ => {}
                }
            }
            (3, Some(_)) => {
                if let Some((logical_name, display_name, connector_id)) = self.current.take() {
                    if logical_name.is_empty() {
                        return Err(SolutionError::MissingElement {
                            entry: self.entry.clone(),
                            element: "connectionreferencelogicalname attribute of a <connectionreference>".into(),
                        });
                    }
                    let connector_id =
                        connector_id.ok_or_else(|| SolutionError::MissingElement {
                            entry: self.entry.clone(),
                            element: format!(
                                "<connectorid> of connection reference {logical_name}"
                            ),
                        })?;
                    self.out.push(ConnectionReference {
                        logical_name,
                        display_name,
                        connector_id,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Streams customizations.xml and returns its connection references.
pub(crate) fn read_connection_references<R: BufRead>(
    input: R,
    entry: &str,
    max_depth: usize,
) -> Result<Vec<ConnectionReference>, SolutionError> {
    let mut v = Refs {
        entry: entry.to_owned(),
        ..Refs::default()
    };
    walk(input, entry, max_depth, &mut v)?;
    Ok(v.out)
}
