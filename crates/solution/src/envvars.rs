//! Environment variable definitions
//! (`environmentvariabledefinitions/<schema>/environmentvariabledefinition.xml`)
//! and their current values (`environmentvariablevalues.json` beside them).

use std::io::BufRead;

use crate::error::SolutionError;
use crate::model::{EnvironmentVariable, EnvironmentVariableType};
use crate::xml::{Element, Visitor, walk};

#[derive(Default)]
struct Def {
    schema_name: Option<String>,
    display_name: Option<String>,
    display_label: Option<String>,
    type_code: Option<String>,
    default_value: Option<String>,
    required: Option<String>,
    api_id: Option<String>,
    parameter_key: Option<String>,
    parent: Option<String>,
}

impl Visitor for Def {
    fn start(&mut self, path: &[String], e: &Element<'_>) -> Result<bool, SolutionError> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        Ok(match p.as_slice() {
            [_] => {
                self.schema_name = e.attr("schemaname")?;
                false
            }
            [_, "displayname"] => {
                self.display_name = e.attr("default")?;
                false
            }
            [_, "displayname", "label"] => {
                if self.display_label.is_none() {
                    self.display_label = e.attr("description")?;
                }
                false
            }
            [
                _,
                "type" | "defaultvalue" | "isrequired" | "apiid" | "parameterkey"
                | "parentdefinitionid",
            ] => true,
            _ => false,
        })
    }

    fn end(&mut self, path: &[String], text: Option<String>) -> Result<(), SolutionError> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let slot = match p.as_slice() {
            [_, "type"] => &mut self.type_code,
            [_, "defaultvalue"] => &mut self.default_value,
            [_, "isrequired"] => &mut self.required,
            [_, "apiid"] => &mut self.api_id,
            [_, "parameterkey"] => &mut self.parameter_key,
            // `<parentdefinitionid><schemaname>x</schemaname></parentdefinitionid>`
            // or the id as text: either way the trimmed text names the parent
            [_, "parentdefinitionid"] => &mut self.parent,
            _ => return Ok(()),
        };
        *slot = text;
        Ok(())
    }
}

fn trimmed(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Streams one definition file. `folder` (the `<schema>` directory name) is
/// the schema name when the element has no `schemaname` attribute.
pub(crate) fn read_definition<R: BufRead>(
    input: R,
    entry: &str,
    folder: &str,
    max_depth: usize,
) -> Result<EnvironmentVariable, SolutionError> {
    let mut d = Def::default();
    walk(input, entry, max_depth, &mut d)?;
    // The column's default is String, so a definition without `<type>` is one.
    let kind = match trimmed(d.type_code) {
        None => EnvironmentVariableType::String,
        Some(code) => {
            EnvironmentVariableType::parse(&code).ok_or_else(|| SolutionError::InvalidValue {
                entry: entry.to_owned(),
                message: format!(
                    "<type> is {code:?}; expected 100000000 (string) to 100000005 (secret)"
                ),
            })?
        }
    };
    Ok(EnvironmentVariable {
        schema_name: trimmed(d.schema_name).unwrap_or_else(|| folder.to_owned()),
        display_name: trimmed(d.display_name).or(trimmed(d.display_label)),
        kind,
        // Default values are kept as written (whitespace can matter in JSON or text).
        default_value: d.default_value,
        current_value: None,
        required: matches!(trimmed(d.required).as_deref(), Some("1" | "true")),
        api_id: trimmed(d.api_id),
        parameter_key: trimmed(d.parameter_key),
        parent: trimmed(d.parent).map(|p| {
            if p.starts_with('{') {
                crate::model::normalize_id(&p)
            } else {
                p
            }
        }),
    })
}

/// Reads `environmentvariablevalues.json` (BOM tolerated); the value is
/// `environmentvariablevalues.environmentvariablevalue.value` (an object, or
/// the first element when it is an array).
pub(crate) fn read_value(bytes: &[u8], entry: &str) -> Result<Option<String>, SolutionError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| SolutionError::Encoding {
            entry: entry.to_owned(),
            message: format!("not valid JSON: {e}"),
        })?;
    let v = &json["environmentvariablevalues"]["environmentvariablevalue"];
    let v = if v.is_array() { &v[0] } else { v };
    Ok(match &v["value"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    })
}
