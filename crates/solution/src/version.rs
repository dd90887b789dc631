//! Solution versions: `major.minor[.build[.revision]]`, compared numerically
//! part by part with missing parts counting as 0 (so `1.0` == `1.0.0.0`).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::VersionError;

/// A solution version. Keeps the text as written for display (`1.22043.1`
/// stays `1.22043.1`); ordering and equality are numeric.
#[derive(Debug, Clone)]
pub struct Version {
    parts: Vec<u64>,
    text: String,
}

/// Which part of a version [`Version::bump`] increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionPart {
    Major,
    Minor,
    Build,
    Revision,
}

impl Version {
    /// Parses leniently: 2 to 4 dot-separated non-negative integers, surrounding
    /// whitespace ignored.
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        let text = s.trim();
        if text.is_empty() {
            return Err(VersionError::Empty);
        }
        let parts = text
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VersionError::BadPart {
                        version: text.to_owned(),
                        part: p.to_owned(),
                    });
                }
                p.parse::<u64>().map_err(|_| VersionError::BadPart {
                    version: text.to_owned(),
                    part: p.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        match parts.len() {
            1 => Err(VersionError::TooFewParts(text.to_owned())),
            2..=4 => Ok(Version {
                parts,
                text: text.to_owned(),
            }),
            _ => Err(VersionError::TooManyParts(text.to_owned())),
        }
    }

    /// The numeric parts as written (2 to 4 of them).
    pub fn parts(&self) -> &[u64] {
        &self.parts
    }

    /// The text as written in the package.
    pub fn as_written(&self) -> &str {
        &self.text
    }

    /// Four-part canonical form, e.g. `1.0` -> `1.0.0.0`.
    pub fn canonical(&self) -> String {
        (0..4)
            .map(|i| self.part(i).to_string())
            .collect::<Vec<_>>()
            .join(".")
    }

    fn part(&self, i: usize) -> u64 {
        self.parts.get(i).copied().unwrap_or(0)
    }

    /// Increments one part and resets every lower part to 0, the way release
    /// numbers usually move: bumping Build of `1.2.3.4` gives `1.2.4.0`. The
    /// result always has four parts. Saturates at `u64::MAX`.
    pub fn bump(&self, part: VersionPart) -> Version {
        let idx = match part {
            VersionPart::Major => 0,
            VersionPart::Minor => 1,
            VersionPart::Build => 2,
            VersionPart::Revision => 3,
        };
        let parts: Vec<u64> = (0..4)
            .map(|i| match i.cmp(&idx) {
                Ordering::Less => self.part(i),
                Ordering::Equal => self.part(i).saturating_add(1),
                Ordering::Greater => 0,
            })
            .collect();
        let text = parts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(".");
        Version { parts, text }
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    /// The version as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (0..4)
            .map(|i| self.part(i).cmp(&other.part(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (0..4).for_each(|i| self.part(i).hash(state));
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Version::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_two_three_and_four_parts_as_written() {
        for s in ["1.0", "1.22043.1", "1.0.0.1"] {
            assert_eq!(Version::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Version::parse("1.0").unwrap().canonical(), "1.0.0.0");
    }

    #[test]
    fn compares_numerically_part_by_part() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert!(v("1.10.0.0") > v("1.9.0.0"));
        assert!(v("1.22043.1") > v("1.2.0.9"));
        assert_eq!(v("1.0"), v("1.0.0.0"));
        assert!(v("2.0") > v("1.99.99.99"));
    }

    #[test]
    fn bump_resets_lower_parts() {
        let v = Version::parse("1.2.3.4").unwrap();
        assert_eq!(v.bump(VersionPart::Build).to_string(), "1.2.4.0");
        assert_eq!(v.bump(VersionPart::Major).to_string(), "2.0.0.0");
        assert_eq!(v.bump(VersionPart::Revision).to_string(), "1.2.3.5");
        assert_eq!(
            Version::parse("1.0")
                .unwrap()
                .bump(VersionPart::Minor)
                .to_string(),
            "1.1.0.0"
        );
    }

    #[test]
    fn rejects_bad_versions() {
        assert_eq!(Version::parse(""), Err(VersionError::Empty));
        assert!(matches!(
            Version::parse("1"),
            Err(VersionError::TooFewParts(_))
        ));
        assert!(matches!(
            Version::parse("1.0.0.0.0"),
            Err(VersionError::TooManyParts(_))
        ));
        assert!(matches!(
            Version::parse("1.a"),
            Err(VersionError::BadPart { .. })
        ));
        assert!(matches!(
            Version::parse("1.-1"),
            Err(VersionError::BadPart { .. })
        ));
        assert!(matches!(
            Version::parse("1.99999999999999999999999"),
            Err(VersionError::BadPart { .. })
        ));
    }
}
