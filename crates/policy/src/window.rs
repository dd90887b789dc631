//! Deployment windows: when, in a stage's local time, a deployment may start.
//!
//! Windows are written in wall-clock time of an IANA zone so that "08:00–18:00
//! Europe/Paris" means 08:00 in Paris in winter (UTC+1) and in summer (UTC+2).
//! Instants are moved between `time` and `jiff` through the unix timestamp.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A day of the week, written `mon` … `sun` in policy JSON.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Every day, Monday first (the order used in messages).
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// Monday = 0 … Sunday = 6.
    pub(crate) fn index(self) -> usize {
        match self {
            Weekday::Mon => 0,
            Weekday::Tue => 1,
            Weekday::Wed => 2,
            Weekday::Thu => 3,
            Weekday::Fri => 4,
            Weekday::Sat => 5,
            Weekday::Sun => 6,
        }
    }

    fn from_jiff(day: jiff::civil::Weekday) -> Weekday {
        match day {
            jiff::civil::Weekday::Monday => Weekday::Mon,
            jiff::civil::Weekday::Tuesday => Weekday::Tue,
            jiff::civil::Weekday::Wednesday => Weekday::Wed,
            jiff::civil::Weekday::Thursday => Weekday::Thu,
            jiff::civil::Weekday::Friday => Weekday::Fri,
            jiff::civil::Weekday::Saturday => Weekday::Sat,
            jiff::civil::Weekday::Sunday => Weekday::Sun,
        }
    }

    /// The name used in JSON: `mon` … `sun`.
    pub fn json_name(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }
}

impl std::fmt::Display for Weekday {
    /// `Mon` … `Sun`, as shown to makers.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Weekday::Mon => "Mon",
            Weekday::Tue => "Tue",
            Weekday::Wed => "Wed",
            Weekday::Thu => "Thu",
            Weekday::Fri => "Fri",
            Weekday::Sat => "Sat",
            Weekday::Sun => "Sun",
        };
        f.write_str(s)
    }
}

/// A weekly time slot in which deployments to a stage may start.
///
/// The window opens at `start` on each of `days` (local time in `time_zone`)
/// and closes at `end`, which is exclusive. An `end` before `start` runs past
/// midnight: `fri 22:00–02:00` covers Saturday 01:00, and belongs to Friday.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentWindow {
    /// Days the window opens on (`mon` … `sun`).
    pub days: Vec<Weekday>,
    /// Local opening time, `HH:MM` (00:00–23:59).
    #[schema(example = "08:00")]
    pub start: String,
    /// Local closing time, `HH:MM`, exclusive; before `start` = ends the next day.
    #[schema(example = "18:00")]
    pub end: String,
    /// IANA time zone the times are in, like `Europe/Paris` or `UTC`.
    #[schema(example = "Europe/Paris")]
    pub time_zone: String,
}

/// Minutes since midnight for a strict `HH:MM` (00:00–23:59), else `None`.
pub(crate) fn parse_hhmm(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return None;
    }
    let digit = |c: u8| c.is_ascii_digit().then(|| u16::from(c - b'0'));
    let h = digit(b[0])? * 10 + digit(b[1])?;
    let m = digit(b[3])? * 10 + digit(b[4])?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Looks a zone up in the bundled IANA database (case-insensitive, as jiff does).
pub(crate) fn lookup_zone(name: &str) -> Result<TimeZone, String> {
    if name.trim().is_empty() {
        return Err("time zone is blank; use an IANA name like Europe/Paris or UTC".to_owned());
    }
    match jiff::tz::db().get(name) {
        Ok(tz) if !tz.is_unknown() => Ok(tz),
        _ => Err(format!(
            "unknown time zone {name}; use an IANA name like Europe/Paris or UTC"
        )),
    }
}

/// A window whose times and zone parsed: ready to test instants against.
#[derive(Debug)]
pub(crate) struct Resolved {
    days: [bool; 7],
    start: u16,
    end: u16,
    pub(crate) tz: TimeZone,
}

impl Resolved {
    /// Parses a stored window; the error says why it cannot be used.
    pub(crate) fn new(w: &DeploymentWindow) -> Result<Resolved, String> {
        let start = parse_hhmm(&w.start).ok_or_else(|| bad_time("start", &w.start))?;
        let end = parse_hhmm(&w.end).ok_or_else(|| bad_time("end", &w.end))?;
        let tz = lookup_zone(&w.time_zone)?;
        let mut days = [false; 7];
        for d in &w.days {
            days[d.index()] = true;
        }
        Ok(Resolved {
            days,
            start,
            end,
            tz,
        })
    }

    /// Whether a local wall-clock time falls inside this window.
    pub(crate) fn contains(&self, local: DateTime) -> bool {
        let t = minutes_of(local);
        let day = Weekday::from_jiff(local.weekday());
        let yesterday = Weekday::from_jiff(local.weekday().previous());
        if self.start < self.end {
            self.days[day.index()] && self.start <= t && t < self.end
        } else if self.start > self.end {
            // Crosses midnight: the evening part is today's window, the early
            // morning part belongs to yesterday's.
            (self.days[day.index()] && t >= self.start)
                || (self.days[yesterday.index()] && t < self.end)
        } else {
            false
        }
    }

    /// The first opening of this window at or after `after`.
    pub(crate) fn next_opening(&self, after: Timestamp) -> Option<Timestamp> {
        let open = Time::new(
            i8::try_from(self.start / 60).ok()?,
            i8::try_from(self.start % 60).ok()?,
            0,
            0,
        )
        .ok()?;
        let today = self.tz.to_datetime(after).date();
        // Start a day early so an odd offset jump cannot skip a candidate; each
        // weekday comes round again within the next 7 days.
        let mut date: Date = today.yesterday().unwrap_or(today);
        for _ in 0..10 {
            if self.days[Weekday::from_jiff(date.weekday()).index()] {
                let ts = self.opening_on(date.to_datetime(open))?;
                // A window lying wholly in a skipped hour does not happen that
                // day; every answer is an instant `contains` accepts.
                if ts >= after && self.contains(self.tz.to_datetime(ts)) {
                    return Some(ts);
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

impl Resolved {
    /// The first instant whose wall clock reads `local` or later.
    ///
    /// In a fall-back repeat that is the first of the two; in a spring-forward
    /// gap (02:30 when clocks jump 02:00 → 03:00) it is the jump itself.
    fn opening_on(&self, local: DateTime) -> Option<Timestamp> {
        let amb = self.tz.to_ambiguous_timestamp(local);
        let in_gap = matches!(amb.offset(), AmbiguousOffset::Gap { .. });
        // "compatible" = the earlier of a repeat, or past the gap.
        let ts = amb.compatible().ok()?;
        if in_gap && let Some(jump) = self.tz.preceding(ts).next() {
            return Some(jump.timestamp());
        }
        Some(ts)
    }
}

fn bad_time(which: &str, raw: &str) -> String {
    format!("{which} {raw:?} is not a time of day HH:MM from 00:00 to 23:59 (for example 08:00)")
}

fn minutes_of(dt: DateTime) -> u16 {
    // hour() is 0..=23 and minute() 0..=59, so both fit.
    let h = u16::try_from(dt.hour()).unwrap_or(0);
    let m = u16::try_from(dt.minute()).unwrap_or(0);
    h * 60 + m
}

/// `time` instant → `jiff` instant; `None` outside jiff's range (about ±9999 years).
pub(crate) fn to_jiff(at: OffsetDateTime) -> Option<Timestamp> {
    let nanos = i32::try_from(at.nanosecond()).ok()?;
    Timestamp::new(at.unix_timestamp(), nanos).ok()
}

/// `jiff` instant → `time` instant at the given offset.
pub(crate) fn from_jiff(ts: Timestamp, offset: time::UtcOffset) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(ts.as_nanosecond())
        .ok()?
        .checked_to_offset(offset)
}

/// "Sat 10:12": a local time as a maker reads it.
pub(crate) fn describe_local(dt: DateTime) -> String {
    format!(
        "{} {:02}:{:02}",
        Weekday::from_jiff(dt.weekday()),
        dt.hour(),
        dt.minute()
    )
}

/// "Mon 2025-02-03 08:00": a local date and time for "the next window opens …".
pub(crate) fn describe_local_date(dt: DateTime) -> String {
    format!(
        "{} {:04}-{:02}-{:02} {:02}:{:02}",
        Weekday::from_jiff(dt.weekday()),
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute()
    )
}

/// "Mon–Fri", "Mon, Wed, Fri", "every day": days in week order, runs of three
/// or more collapsed.
pub(crate) fn describe_days(days: &[Weekday]) -> String {
    let mut set = [false; 7];
    for d in days {
        set[d.index()] = true;
    }
    if set.iter().all(|&b| b) {
        return "every day".to_owned();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if !set[i] {
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < 7 && set[j + 1] {
            j += 1;
        }
        match j - i {
            0 => parts.push(Weekday::ALL[i].to_string()),
            1 => {
                parts.push(Weekday::ALL[i].to_string());
                parts.push(Weekday::ALL[j].to_string());
            }
            _ => parts.push(format!("{}–{}", Weekday::ALL[i], Weekday::ALL[j])),
        }
        i = j + 1;
    }
    if parts.is_empty() {
        "no day".to_owned()
    } else {
        parts.join(", ")
    }
}

/// "Mon–Fri 08:00–18:00 Europe/Paris", with "(ends the next day)" when the
/// window crosses midnight.
pub(crate) fn describe_window(w: &DeploymentWindow) -> String {
    let crosses = matches!(
        (parse_hhmm(&w.start), parse_hhmm(&w.end)),
        (Some(s), Some(e)) if e < s
    );
    format!(
        "{} {}–{}{} {}",
        describe_days(&w.days),
        w.start,
        w.end,
        if crosses { " (ends the next day)" } else { "" },
        w.time_zone
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_hhmm_accepts_only_strict_times() {
        assert_eq!(parse_hhmm("00:00"), Some(0));
        assert_eq!(parse_hhmm("08:30"), Some(510));
        assert_eq!(parse_hhmm("23:59"), Some(1439));
        for bad in [
            "24:00",
            "8:00",
            "08:60",
            "0800",
            "08:0",
            "08:00:00",
            "",
            "ab:cd",
            "+8:00",
            " 8:00",
            "08:00 ",
            "٠٨:٠٠",
        ] {
            assert_eq!(parse_hhmm(bad), None, "{bad:?} should be refused");
        }
    }

    #[test]
    fn describe_days_collapses_runs() {
        use Weekday::*;
        assert_eq!(describe_days(&[Fri, Mon, Tue, Wed, Thu]), "Mon–Fri");
        assert_eq!(describe_days(&[Mon, Wed, Fri]), "Mon, Wed, Fri");
        assert_eq!(describe_days(&[Sat, Sun]), "Sat, Sun");
        assert_eq!(describe_days(&[Mon, Tue, Wed, Sat]), "Mon–Wed, Sat");
        assert_eq!(describe_days(&Weekday::ALL), "every day");
        assert_eq!(describe_days(&[]), "no day");
    }

    #[test]
    fn lookup_zone_is_bundled_and_refuses_unknown() {
        assert!(lookup_zone("Europe/Paris").is_ok());
        assert!(lookup_zone("UTC").is_ok());
        assert!(lookup_zone("America/New_York").is_ok());
        let err = lookup_zone("Mars/Olympus").unwrap_err();
        assert_eq!(
            err,
            "unknown time zone Mars/Olympus; use an IANA name like Europe/Paris or UTC"
        );
        assert!(lookup_zone("Etc/Unknown").is_err());
        assert!(lookup_zone("  ").unwrap_err().contains("blank"));
    }
}
