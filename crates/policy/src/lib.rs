//! Per-stage deployment policies for Slipway pipelines.
//!
//! An admin sets [`StagePolicies`] on a pipeline stage (the gateway stores
//! them as JSON). Power Platform's own pipelines have no such rules; Slipway
//! adds them so a stage such as Production can refuse risky deployments.
//!
//! # The policies
//!
//! - `allowed_connectors`: if non-empty, every connection reference in the
//!   solution must use one of these connectors (an allow-list).
//! - `blocked_connectors`: no connection reference may use one of these.
//! - `managed_only`: the artifact deployed must be a managed solution.
//! - `max_artifact_bytes`: the (managed) solution file may be at most this big.
//! - `deployment_windows`: if non-empty, a deployment may start only inside
//!   one of these weekly windows, in the window's own time zone (so daylight
//!   saving time is followed); a window whose end is before its start runs
//!   past midnight and belongs to the day it starts.
//! - `require_notes`: the deployment notes must say something (whitespace
//!   does not count).
//!
//! Connectors are named either by their full id
//! (`/providers/Microsoft.PowerApps/apis/shared_office365`) or by its short
//! name (`shared_office365`); both sides are compared by
//! [`connector_short_name`], ignoring case.
//!
//! # Checked twice
//!
//! - When an admin saves the policies, [`StagePolicies::validate`] refuses
//!   mistakes (a blank or duplicate connector, a connector both allowed and
//!   blocked, a time like `8:00`, an unknown time zone…) and names every bad
//!   field, so the admin learns at once instead of at the next deployment.
//! - When a deployment runs, the validator worker calls
//!   [`StagePolicies::check`] with what it knows about the deployment
//!   ([`Candidate`]) and reports each [`PolicyViolation`] in words a maker
//!   understands. `check` never trusts that `validate` ran (stored JSON may be
//!   older than a rule): a window it cannot read never lets a deployment in.
//!
//! The crate does no I/O: time zones come from a tz database bundled in the
//! binary, so results do not depend on the machine's `/usr/share/zoneinfo`.
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

mod window;

pub use window::{DeploymentWindow, Weekday};

/// Rules an admin sets on one pipeline stage; the default allows everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StagePolicies {
    /// If non-empty, every connection reference's connector must be in it
    /// (full id or short name like `shared_office365`).
    pub allowed_connectors: Vec<String>,
    /// No connection reference may use one of these connectors.
    pub blocked_connectors: Vec<String>,
    /// The artifact deployed must be a managed solution.
    pub managed_only: bool,
    /// Size limit of the (managed) solution file, in bytes.
    pub max_artifact_bytes: Option<u64>,
    /// If non-empty, a deployment may start only inside one of these windows.
    pub deployment_windows: Vec<DeploymentWindow>,
    /// Deployment notes must be non-blank.
    pub require_notes: bool,
}

/// One mistake in policies an admin tried to save.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
#[error("{field}: {reason}")]
pub struct PolicyFieldError {
    /// JSON path of the bad value, like `deployment_windows[1].start`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub reason: String,
}

/// What the validator knows about a deployment when it checks the policies.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// Connector ids of the solution's connection references.
    pub connectors: &'a [String],
    /// Whether the artifact to import is a managed solution.
    pub managed: bool,
    /// Size of the artifact to import, in bytes.
    pub artifact_bytes: u64,
    /// When the deployment starts.
    pub at: OffsetDateTime,
    /// The deployment notes the maker wrote, if any.
    pub notes: Option<&'a str>,
}

/// One policy a deployment breaks, said so a maker can act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyViolation {
    /// Which policy: the [`StagePolicies`] field name, like `blocked_connectors`.
    pub policy: String,
    /// What is wrong, in words a maker understands.
    pub message: String,
}

impl PolicyViolation {
    fn new(policy: &str, message: String) -> PolicyViolation {
        PolicyViolation {
            policy: policy.to_owned(),
            message,
        }
    }
}

/// The comparable name of a connector: the last path segment, lower-cased.
///
/// Solutions carry full ids (`/providers/Microsoft.PowerApps/apis/shared_office365`)
/// while admins often write `shared_office365`; both map to `shared_office365`.
pub fn connector_short_name(id: &str) -> String {
    let trimmed = id.trim().trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
    last.trim().to_lowercase()
}

const CONNECTOR_HINT: &str = "use a connector id like /providers/Microsoft.PowerApps/apis/shared_office365 or its short name shared_office365";

impl StagePolicies {
    /// Checks policies an admin is saving; returns every mistake, each naming
    /// its JSON field and the fix.
    pub fn validate(&self) -> Result<(), Vec<PolicyFieldError>> {
        let mut errors = Vec::new();
        let mut err =
            |field: String, reason: String| errors.push(PolicyFieldError { field, reason });

        let allowed =
            check_connector_list("allowed_connectors", &self.allowed_connectors, &mut err);
        let blocked =
            check_connector_list("blocked_connectors", &self.blocked_connectors, &mut err);
        let mut both: Vec<(usize, &String)> = blocked
            .iter()
            .filter(|(short, _)| allowed.contains_key(*short))
            .map(|(short, &i)| (i, short))
            .collect();
        both.sort();
        for (i, short) in both {
            let j = allowed.get(short).copied().unwrap_or_default();
            err(
                format!("blocked_connectors[{i}]"),
                format!(
                    "connector {short} is both allowed (allowed_connectors[{j}]) and blocked; remove it from one of the lists"
                ),
            );
        }

        if self.max_artifact_bytes == Some(0) {
            err(
                "max_artifact_bytes".to_owned(),
                "must be greater than 0; leave it out for no size limit".to_owned(),
            );
        }

        for (i, w) in self.deployment_windows.iter().enumerate() {
            let at = |name: &str| format!("deployment_windows[{i}].{name}");
            if w.days.is_empty() {
                err(
                    at("days"),
                    "no days; name at least one of mon, tue, wed, thu, fri, sat, sun".to_owned(),
                );
            }
            let mut seen = [false; 7];
            for (k, d) in w.days.iter().enumerate() {
                let idx = d.index();
                if seen[idx] {
                    err(
                        format!("deployment_windows[{i}].days[{k}]"),
                        format!("duplicate day {}; name each day once", d.json_name()),
                    );
                }
                seen[idx] = true;
            }
            let start = window::parse_hhmm(&w.start);
            let end = window::parse_hhmm(&w.end);
            if start.is_none() {
                err(at("start"), bad_hhmm(&w.start));
            }
            if end.is_none() {
                err(at("end"), bad_hhmm(&w.end));
            }
            if start.is_some() && start == end {
                err(
                    at("end"),
                    format!(
                        "equals start {}; a window needs a length (the end is exclusive; an end before the start runs past midnight)",
                        w.start
                    ),
                );
            }
            if let Err(reason) = window::lookup_zone(&w.time_zone) {
                err(at("time_zone"), reason);
            }
        }

        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Checks a deployment against these policies; empty means it may go ahead.
    ///
    /// Violations come in field order, one per offending connector.
    pub fn check(&self, c: &Candidate) -> Vec<PolicyViolation> {
        let mut out = Vec::new();
        self.check_connectors(c, &mut out);

        if self.managed_only && !c.managed {
            out.push(PolicyViolation::new(
                "managed_only",
                "this stage accepts only managed solutions, but this deployment would import an unmanaged one; deploy the managed export of the solution".to_owned(),
            ));
        }

        if let Some(max) = self.max_artifact_bytes
            && c.artifact_bytes > max
        {
            out.push(PolicyViolation::new(
                "max_artifact_bytes",
                format!(
                    "the solution file is {}, over this stage's limit of {}; remove unused components or ask an admin to raise the limit",
                    describe_bytes(c.artifact_bytes),
                    describe_bytes(max)
                ),
            ));
        }

        if !self.deployment_windows.is_empty()
            && let Some(message) = self.window_violation(c.at)
        {
            out.push(PolicyViolation::new("deployment_windows", message));
        }

        if self.require_notes && c.notes.is_none_or(|n| n.trim().is_empty()) {
            out.push(PolicyViolation::new(
                "require_notes",
                "this stage requires deployment notes and this deployment has none (blank notes do not count); say what it changes and why".to_owned(),
            ));
        }
        out
    }

    /// When the next deployment window opens, at or after `after`, in
    /// `after`'s offset. `None` if there are no windows (or none that can
    /// ever open, e.g. one with an unknown time zone).
    ///
    /// If `after` is already inside a window this is the *next* opening, not
    /// the current one: ask [`StagePolicies::check`] whether now is fine.
    pub fn next_window_start(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let (ts, _) = self.next_opening(after)?;
        window::from_jiff(ts, after.offset())
    }

    /// The earliest opening across windows, with the window's zone.
    fn next_opening(&self, after: OffsetDateTime) -> Option<(jiff::Timestamp, jiff::tz::TimeZone)> {
        let after = window::to_jiff(after)?;
        self.deployment_windows
            .iter()
            .filter_map(|w| window::Resolved::new(w).ok())
            .filter_map(|r| r.next_opening(after).map(|ts| (ts, r.tz)))
            .min_by_key(|(ts, _)| *ts)
    }

    fn check_connectors(&self, c: &Candidate, out: &mut Vec<PolicyViolation>) {
        let allowed: Vec<String> = self
            .allowed_connectors
            .iter()
            .map(|a| connector_short_name(a))
            .filter(|s| !s.is_empty())
            .collect();
        let blocked: Vec<String> = self
            .blocked_connectors
            .iter()
            .map(|b| connector_short_name(b))
            .filter(|s| !s.is_empty())
            .collect();

        // One violation per distinct connector, in the solution's order.
        let mut seen: Vec<String> = Vec::new();
        for id in c.connectors {
            let short = connector_short_name(id);
            if seen.contains(&short) {
                continue;
            }
            seen.push(short.clone());

            if !self.allowed_connectors.is_empty() && !allowed.contains(&short) {
                let list = if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                };
                let message = if short.is_empty() {
                    format!(
                        "a connection reference has no connector id, so it cannot be matched against this stage's allowed connectors ({list}); fix the connection reference in the solution"
                    )
                } else {
                    format!(
                        "the connection reference uses connector {short}, which is not on this stage's allowed list ({list}); use an allowed connector or ask an admin to allow it"
                    )
                };
                out.push(PolicyViolation::new("allowed_connectors", message));
            }
            if !short.is_empty() && blocked.contains(&short) {
                out.push(PolicyViolation::new(
                    "blocked_connectors",
                    format!(
                        "the connection reference uses connector {short}, which this stage blocks; remove it from the solution or deploy to another stage"
                    ),
                ));
            }
        }
    }

    /// `None` if `at` is inside a window, else why not (with when it opens).
    fn window_violation(&self, at: OffsetDateTime) -> Option<String> {
        let windows: Vec<String> = self
            .deployment_windows
            .iter()
            .map(window::describe_window)
            .collect();
        let mut message = format!(
            "deployments to this stage may start only {}",
            windows.join(" or ")
        );

        let mut broken = Vec::new();
        let mut resolved = Vec::new();
        for (i, w) in self.deployment_windows.iter().enumerate() {
            match window::Resolved::new(w) {
                Ok(r) => resolved.push((w, r)),
                Err(reason) => broken.push(format!(
                    "deployment_windows[{i}] cannot be used ({reason}); an admin must fix this stage's policies"
                )),
            }
        }

        match window::to_jiff(at) {
            Some(ts) => {
                if resolved
                    .iter()
                    .any(|(_, r)| r.contains(r.tz.to_datetime(ts)))
                {
                    return None;
                }
                // "it is Sat 10:12 there now", once per distinct zone.
                let mut zones: Vec<(&str, String)> = Vec::new();
                for (w, r) in &resolved {
                    if !zones.iter().any(|(name, _)| *name == w.time_zone) {
                        zones.push((&w.time_zone, window::describe_local(r.tz.to_datetime(ts))));
                    }
                }
                match zones.as_slice() {
                    [] => {}
                    [(_, local)] => message.push_str(&format!("; it is {local} there now")),
                    many => {
                        let parts: Vec<String> = many
                            .iter()
                            .map(|(name, local)| format!("{local} in {name}"))
                            .collect();
                        message.push_str(&format!("; it is {} now", parts.join(" and ")));
                    }
                }
            }
            None => message.push_str(&format!(
                "; the deployment time {at} is outside the range this check supports"
            )),
        }
        if let Some((ts, tz)) = self.next_opening(at) {
            let local = window::describe_local_date(tz.to_datetime(ts));
            let name = tz.iana_name().unwrap_or("UTC");
            message.push_str(&format!("; the next window opens {local} {name}"));
        }
        for b in broken {
            message.push_str("; ");
            message.push_str(&b);
        }
        Some(message)
    }
}

/// Validates one connector list; returns short name → first index.
fn check_connector_list(
    field: &str,
    names: &[String],
    err: &mut impl FnMut(String, String),
) -> HashMap<String, usize> {
    let mut first: HashMap<String, usize> = HashMap::new();
    for (i, name) in names.iter().enumerate() {
        let short = connector_short_name(name);
        if name.trim().is_empty() {
            err(
                format!("{field}[{i}]"),
                format!("connector name is blank; {CONNECTOR_HINT}"),
            );
        } else if short.is_empty() {
            err(
                format!("{field}[{i}]"),
                format!("{name:?} names no connector after its last '/'; {CONNECTOR_HINT}"),
            );
        } else if let Some(j) = first.get(&short) {
            err(
                format!("{field}[{i}]"),
                format!(
                    "connector {short} is already listed at {field}[{j}]; remove the duplicate"
                ),
            );
        } else {
            first.insert(short, i);
        }
    }
    first
}

fn bad_hhmm(raw: &str) -> String {
    format!("{raw:?} is not a time of day HH:MM from 00:00 to 23:59 (for example 08:00)")
}

/// "12.6 MB (12582912 bytes)": decimal units, exact bytes for the borderline.
fn describe_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1_000_000_000, "GB"), (1_000_000, "MB"), (1_000, "kB")];
    for (size, unit) in UNITS {
        if n >= size {
            // Tenths without float rounding surprises.
            let tenths = n / (size / 10);
            return format!("{}.{} {unit} ({n} bytes)", tenths / 10, tenths % 10);
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests;
