//! A copy of a package with a new version: only the text of
//! `<SolutionManifest>/<Version>` in solution.xml changes; every other entry is
//! copied raw (same compressed bytes, same name, same order).

use std::io::{Cursor, Read, Write};

use quick_xml::Reader;
use quick_xml::events::Event;
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use crate::archive::{Archive, Limits, io_to_solution, zip_error};
use crate::error::SolutionError;
use crate::model::Solution;
use crate::version::Version;

/// Returns `zip_bytes` with the manifest version replaced by `new_version`
/// (written in its canonical four-part form if the caller built it by bumping,
/// else as written). The package is fully validated first.
pub fn reversion(
    zip_bytes: &[u8],
    new_version: &Version,
    limits: &Limits,
) -> Result<Vec<u8>, SolutionError> {
    Solution::from_bytes(zip_bytes, limits)?;
    let mut archive = Archive::new(Cursor::new(zip_bytes), limits)?;
    let manifest_idx = archive
        .find("solution.xml")
        .ok_or_else(|| SolutionError::NotASolution {
            reason: "no solution.xml at the root".into(),
        })?;
    let name = archive.names[manifest_idx].clone();
    let mut manifest = Vec::new();
    archive
        .entry(manifest_idx, false)?
        .read_to_end(&mut manifest)
        .map_err(|e| io_to_solution(e, &name))?;
    let (start, end) = version_span(&manifest, &name)?;
    let mut patched = Vec::with_capacity(manifest.len() + 16);
    patched.extend_from_slice(&manifest[..start]);
    patched.extend_from_slice(new_version.to_string().as_bytes());
    patched.extend_from_slice(&manifest[end..]);

    let zip = archive.zip_mut();
    let mut out = ZipWriter::new(Cursor::new(Vec::with_capacity(zip_bytes.len() + 64)));
    for i in 0..zip.len() {
        if i == manifest_idx {
            let file = zip.by_index_raw(i).map_err(|e| zip_error(Some(&name), e))?;
            let mut options = SimpleFileOptions::default().compression_method(file.compression());
            if let Some(t) = file.last_modified() {
                options = options.last_modified_time(t);
            }
            let raw_name = file
                .name()
                .map_err(|e| zip_error(Some(&name), e))?
                .into_owned();
            drop(file);
            out.start_file(raw_name, options)
                .map_err(|e| zip_error(Some(&name), e))?;
            out.write_all(&patched)
                .map_err(|e| io_to_solution(e, &name))?;
        } else {
            let file = zip.by_index_raw(i).map_err(|e| zip_error(None, e))?;
            out.raw_copy_file(file).map_err(|e| zip_error(None, e))?;
        }
    }
    let cursor = out.finish().map_err(|e| zip_error(None, e))?;
    Ok(cursor.into_inner())
}

/// Byte range of the text of `ImportExportXml/SolutionManifest/Version`.
fn version_span(doc: &[u8], entry: &str) -> Result<(usize, usize), SolutionError> {
    let err = |m: String| SolutionError::Xml {
        entry: entry.to_owned(),
        message: m,
    };
    // quick-xml skips a byte-order mark without counting it in positions
    let bom = if doc.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let xml = &doc[bom..];
    let mut reader = Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let mut text_start: Option<usize> = None;
    loop {
        let before = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        match reader.read_event().map_err(|e| err(e.to_string()))? {
            Event::Start(t) => {
                path.push(t.local_name().as_ref().to_ascii_lowercase());
                if path == ["importexportxml", "solutionmanifest", "version"] {
                    text_start =
                        Some(usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX));
                }
            }
            Event::End(_) => {
                if let Some(start) = text_start.filter(|_| path.len() == 3) {
                    return Ok((start + bom, before.min(xml.len()) + bom));
                }
                path.pop();
            }
            Event::Eof => {
                return Err(err(
                    "no <SolutionManifest>/<Version> element to rewrite".into()
                ));
            }
            _ => {}
        }
    }
}
