//! Property tests: policies straight from storage (valid or not) never make
//! `validate`, `check` or `next_window_start` panic, and a window opening that
//! `next_window_start` reports is one `check` lets through.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use slipway_policy::{Candidate, DeploymentWindow, StagePolicies, Weekday};
use time::{OffsetDateTime, UtcOffset};

fn weekday() -> impl Strategy<Value = Weekday> {
    prop::sample::select(Weekday::ALL.to_vec())
}

/// Mostly well-formed times, with some junk.
fn hhmm() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u8..24, 0u8..60).prop_map(|(h, m)| format!("{h:02}:{m:02}")),
        1 => "\\PC{0,7}",
        1 => (0u8..=99, 0u8..=99).prop_map(|(h, m)| format!("{h}:{m}")),
    ]
}

fn zone() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "UTC",
            "Europe/Paris",
            "America/New_York",
            "Australia/Lord_Howe",
            "Pacific/Apia",
            "Asia/Kathmandu",
            "America/Santiago",
            "Antarctica/Troll",
            "europe/PARIS",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,20}",
        1 => "[A-Za-z_]{1,10}/[A-Za-z_]{1,10}",
    ]
}

fn window() -> impl Strategy<Value = DeploymentWindow> {
    (
        prop::collection::vec(weekday(), 0..9),
        hhmm(),
        hhmm(),
        zone(),
    )
        .prop_map(|(days, start, end, time_zone)| DeploymentWindow {
            days,
            start,
            end,
            time_zone,
        })
}

fn connector() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "shared_office365",
            "/providers/Microsoft.PowerApps/apis/shared_twitter",
            "SHARED_TWITTER",
            "/",
            "",
            "  ",
        ])
        .prop_map(str::to_owned),
        "\\PC{0,30}",
        "(/[a-zA-Z_.]{0,8}){0,5}/?",
    ]
}

fn policies() -> impl Strategy<Value = StagePolicies> {
    (
        prop::collection::vec(connector(), 0..4),
        prop::collection::vec(connector(), 0..4),
        any::<bool>(),
        prop::option::of(any::<u64>()),
        prop::collection::vec(window(), 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(allowed, blocked, managed_only, max, windows, require_notes)| StagePolicies {
                allowed_connectors: allowed,
                blocked_connectors: blocked,
                managed_only,
                max_artifact_bytes: max,
                deployment_windows: windows,
                require_notes,
            },
        )
}

/// Any instant `time` can hold, at any offset it can hold.
fn instant() -> impl Strategy<Value = OffsetDateTime> {
    let min = OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT).unix_timestamp();
    let max = OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT).unix_timestamp();
    prop_oneof![
        // Around today, where real deployments happen.
        4 => 1_600_000_000i64..2_200_000_000,
        1 => min..=max,
    ]
    .prop_flat_map(|secs| (Just(secs), 0u32..1_000_000_000, -86_399i32..=86_399))
    .prop_map(|(secs, nanos, off)| {
        let at = OffsetDateTime::from_unix_timestamp(secs)
            .unwrap()
            .replace_nanosecond(nanos)
            .unwrap();
        let offset = UtcOffset::from_whole_seconds(off).unwrap();
        at.checked_to_offset(offset).unwrap_or(at)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn validate_never_panics(p in policies()) {
        match p.validate() {
            Ok(()) => {}
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!(!e.field.is_empty() && !e.reason.is_empty());
                }
            }
        }
    }

    #[test]
    fn check_never_panics(
        p in policies(),
        connectors in prop::collection::vec(connector(), 0..5),
        managed in any::<bool>(),
        artifact_bytes in any::<u64>(),
        at in instant(),
        notes in prop::option::of("\\PC{0,10}"),
    ) {
        let c = Candidate {
            connectors: &connectors,
            managed,
            artifact_bytes,
            at,
            notes: notes.as_deref(),
        };
        for v in p.check(&c) {
            prop_assert!(!v.message.is_empty());
        }
        let _ = p.next_window_start(at);
    }

    #[test]
    fn next_window_start_opens_a_window_check_accepts(
        windows in prop::collection::vec(window(), 1..3),
        at in instant(),
    ) {
        let p = StagePolicies { deployment_windows: windows, ..StagePolicies::default() };
        if let Some(opens) = p.next_window_start(at) {
            prop_assert!(opens >= at);
            prop_assert_eq!(opens.offset(), at.offset());
            let c = Candidate {
                connectors: &[],
                managed: true,
                artifact_bytes: 0,
                at: opens,
                notes: None,
            };
            let violations = p.check(&c);
            prop_assert!(violations.is_empty(), "opens {} but {:?}", opens, violations);
        }
    }

    #[test]
    fn serde_round_trips(p in policies()) {
        let json = serde_json::to_string(&p).unwrap();
        let back: StagePolicies = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(back, p);
    }
}
