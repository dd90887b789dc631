use time::macros::datetime;

use super::*;

fn window(days: &[Weekday], start: &str, end: &str, tz: &str) -> DeploymentWindow {
    DeploymentWindow {
        days: days.to_vec(),
        start: start.to_owned(),
        end: end.to_owned(),
        time_zone: tz.to_owned(),
    }
}

fn weekdays() -> Vec<Weekday> {
    use Weekday::*;
    vec![Mon, Tue, Wed, Thu, Fri]
}

fn paris_office_hours() -> StagePolicies {
    StagePolicies {
        deployment_windows: vec![window(&weekdays(), "08:00", "18:00", "Europe/Paris")],
        ..StagePolicies::default()
    }
}

fn candidate(at: OffsetDateTime) -> Candidate<'static> {
    Candidate {
        connectors: &[],
        managed: true,
        artifact_bytes: 1_000,
        at,
        notes: Some("ship it"),
    }
}

fn fields(errors: &[PolicyFieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

fn policies_of(v: &[PolicyViolation]) -> Vec<&str> {
    v.iter().map(|e| e.policy.as_str()).collect()
}

const OFFICE365: &str = "/providers/Microsoft.PowerApps/apis/shared_office365";
const TWITTER: &str = "/providers/Microsoft.PowerApps/apis/shared_twitter";

// ---------- connector names ----------

#[test]
fn connector_short_name_takes_last_segment_lowercased() {
    assert_eq!(connector_short_name(OFFICE365), "shared_office365");
    assert_eq!(connector_short_name("shared_office365"), "shared_office365");
    assert_eq!(connector_short_name("Shared_Office365"), "shared_office365");
    assert_eq!(
        connector_short_name("/PROVIDERS/Microsoft.PowerApps/apis/SHARED_Office365/"),
        "shared_office365"
    );
    assert_eq!(connector_short_name("  shared_sql  "), "shared_sql");
    assert_eq!(connector_short_name(""), "");
    assert_eq!(connector_short_name("/"), "");
}

// ---------- validate ----------

#[test]
fn default_policies_are_valid() {
    assert_eq!(StagePolicies::default().validate(), Ok(()));
}

#[test]
fn full_valid_policies_pass() {
    let p = StagePolicies {
        allowed_connectors: vec![OFFICE365.to_owned(), "shared_sharepointonline".to_owned()],
        blocked_connectors: vec!["shared_twitter".to_owned()],
        managed_only: true,
        max_artifact_bytes: Some(1),
        deployment_windows: vec![
            window(&weekdays(), "08:00", "18:00", "Europe/Paris"),
            window(&[Weekday::Fri], "22:00", "02:00", "UTC"),
        ],
        require_notes: true,
    };
    assert_eq!(p.validate(), Ok(()));
}

#[test]
fn validate_refuses_blank_connector_names() {
    let p = StagePolicies {
        allowed_connectors: vec!["shared_sql".to_owned(), "  ".to_owned()],
        blocked_connectors: vec![String::new()],
        ..StagePolicies::default()
    };
    let errors = p.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        ["allowed_connectors[1]", "blocked_connectors[0]"]
    );
    assert!(errors[0].reason.contains("blank"), "{}", errors[0].reason);
    assert!(
        errors[0].reason.contains("shared_office365"),
        "the fix shows an example"
    );
}

#[test]
fn validate_refuses_connector_with_no_name_after_slash() {
    let p = StagePolicies {
        blocked_connectors: vec!["/".to_owned()],
        ..StagePolicies::default()
    };
    let errors = p.validate().unwrap_err();
    assert_eq!(fields(&errors), ["blocked_connectors[0]"]);
    assert!(errors[0].reason.contains("names no connector"));
}

#[test]
fn validate_refuses_duplicate_connectors_after_normalizing() {
    let p = StagePolicies {
        allowed_connectors: vec![OFFICE365.to_owned(), "SHARED_OFFICE365".to_owned()],
        blocked_connectors: vec!["shared_twitter".to_owned(), TWITTER.to_owned()],
        ..StagePolicies::default()
    };
    let errors = p.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        ["allowed_connectors[1]", "blocked_connectors[1]"]
    );
    assert_eq!(
        errors[0].reason,
        "connector shared_office365 is already listed at allowed_connectors[0]; remove the duplicate"
    );
}

#[test]
fn validate_refuses_connector_both_allowed_and_blocked_and_names_it() {
    let p = StagePolicies {
        allowed_connectors: vec!["shared_sql".to_owned(), OFFICE365.to_owned()],
        blocked_connectors: vec!["shared_twitter".to_owned(), "Shared_Office365".to_owned()],
        ..StagePolicies::default()
    };
    let errors = p.validate().unwrap_err();
    assert_eq!(fields(&errors), ["blocked_connectors[1]"]);
    assert_eq!(
        errors[0].reason,
        "connector shared_office365 is both allowed (allowed_connectors[1]) and blocked; remove it from one of the lists"
    );
}

#[test]
fn validate_refuses_zero_max_artifact_bytes() {
    let p = StagePolicies {
        max_artifact_bytes: Some(0),
        ..StagePolicies::default()
    };
    let errors = p.validate().unwrap_err();
    assert_eq!(fields(&errors), ["max_artifact_bytes"]);
    assert!(errors[0].reason.contains("greater than 0"));
    let ok = StagePolicies {
        max_artifact_bytes: Some(1),
        ..StagePolicies::default()
    };
    assert_eq!(ok.validate(), Ok(()));
}

#[test]
fn validate_refuses_window_without_days() {
    let p = StagePolicies {
        deployment_windows: vec![window(&[], "08:00", "18:00", "UTC")],
        ..StagePolicies::default()
    };
    let errors = p.validate().unwrap_err();
    assert_eq!(fields(&errors), ["deployment_windows[0].days"]);
    assert!(errors[0].reason.contains("mon, tue"));
}

#[test]
fn validate_refuses_duplicate_days() {
    use Weekday::*;
    let p = StagePolicies {
        deployment_windows: vec![
            window(&[Mon], "08:00", "18:00", "UTC"),
            window(&[Mon, Tue, Mon, Tue], "08:00", "18:00", "UTC"),
        ],
        ..StagePolicies::default()
    };
    let errors = p.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "deployment_windows[1].days[2]",
            "deployment_windows[1].days[3]"
        ]
    );
    assert_eq!(errors[0].reason, "duplicate day mon; name each day once");
}

#[test]
fn validate_refuses_bad_times() {
    for bad in ["8:00", "24:00", "12:60", "noon", "", "08:00:00", "08h00"] {
        let p = StagePolicies {
            deployment_windows: vec![window(&[Weekday::Mon], bad, bad, "UTC")],
            ..StagePolicies::default()
        };
        let errors = p.validate().unwrap_err();
        assert_eq!(
            fields(&errors),
            ["deployment_windows[0].start", "deployment_windows[0].end"],
            "for {bad:?}"
        );
        assert!(errors[0].reason.contains("HH:MM"), "{}", errors[0].reason);
    }
    // Both ends of the range are fine.
    let p = StagePolicies {
        deployment_windows: vec![window(&[Weekday::Mon], "00:00", "23:59", "UTC")],
        ..StagePolicies::default()
    };
    assert_eq!(p.validate(), Ok(()));
}

#[test]
fn validate_refuses_start_equal_to_end() {
    let p = StagePolicies {
        deployment_windows: vec![window(&[Weekday::Mon], "08:00", "08:00", "UTC")],
        ..StagePolicies::default()
    };
    let errors = p.validate().unwrap_err();
    assert_eq!(fields(&errors), ["deployment_windows[0].end"]);
    assert!(errors[0].reason.starts_with("equals start 08:00"));
}

#[test]
fn validate_accepts_window_crossing_midnight() {
    let p = StagePolicies {
        deployment_windows: vec![window(&[Weekday::Fri], "22:00", "02:00", "Europe/Paris")],
        ..StagePolicies::default()
    };
    assert_eq!(p.validate(), Ok(()));
}

#[test]
fn validate_refuses_unknown_or_blank_time_zone() {
    let p = StagePolicies {
        deployment_windows: vec![
            window(&[Weekday::Mon], "08:00", "18:00", "Europe/Paris"),
            window(&[Weekday::Mon], "08:00", "18:00", "Paris"),
            window(&[Weekday::Mon], "08:00", "18:00", " "),
            window(&[Weekday::Mon], "08:00", "18:00", "CEST+2"),
        ],
        ..StagePolicies::default()
    };
    let errors = p.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "deployment_windows[1].time_zone",
            "deployment_windows[2].time_zone",
            "deployment_windows[3].time_zone"
        ]
    );
    assert_eq!(
        errors[0].reason,
        "unknown time zone Paris; use an IANA name like Europe/Paris or UTC"
    );
    assert!(errors[1].reason.contains("blank"));
}

#[test]
fn validate_accepts_common_zones() {
    for tz in [
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Sydney",
    ] {
        let p = StagePolicies {
            deployment_windows: vec![window(&[Weekday::Mon], "08:00", "18:00", tz)],
            ..StagePolicies::default()
        };
        assert_eq!(p.validate(), Ok(()), "{tz}");
    }
}

#[test]
fn validate_returns_every_error_not_just_the_first() {
    let p = StagePolicies {
        allowed_connectors: vec![" ".to_owned(), "shared_sql".to_owned()],
        blocked_connectors: vec!["SHARED_SQL".to_owned()],
        managed_only: true,
        max_artifact_bytes: Some(0),
        deployment_windows: vec![
            window(&[], "8:00", "18:00", "Europe/Paris"),
            window(
                &[Weekday::Sat, Weekday::Sat],
                "10:00",
                "10:00",
                "Nowhere/Land",
            ),
        ],
        require_notes: true,
    };
    let errors = p.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "allowed_connectors[0]",
            "blocked_connectors[0]",
            "max_artifact_bytes",
            "deployment_windows[0].days",
            "deployment_windows[0].start",
            "deployment_windows[1].days[1]",
            "deployment_windows[1].end",
            "deployment_windows[1].time_zone",
        ]
    );
}

#[test]
fn field_error_displays_field_and_reason() {
    let e = PolicyFieldError {
        field: "deployment_windows[1].start".to_owned(),
        reason: "bad".to_owned(),
    };
    assert_eq!(e.to_string(), "deployment_windows[1].start: bad");
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["field"], "deployment_windows[1].start");
}

// ---------- check: connectors ----------

#[test]
fn default_policies_allow_any_deployment() {
    let connectors = vec![TWITTER.to_owned()];
    let c = Candidate {
        connectors: &connectors,
        managed: false,
        artifact_bytes: u64::MAX,
        at: datetime!(2025-01-18 03:00 UTC),
        notes: None,
    };
    assert_eq!(StagePolicies::default().check(&c), vec![]);
}

#[test]
fn allowed_connectors_match_full_id_or_short_name_ignoring_case() {
    let connectors = vec![
        OFFICE365.to_owned(),
        "/providers/Microsoft.PowerApps/apis/SHARED_SharePointOnline".to_owned(),
    ];
    let c = Candidate {
        connectors: &connectors,
        ..candidate(datetime!(2025-01-15 10:00 UTC))
    };
    let p = StagePolicies {
        allowed_connectors: vec![
            "Shared_Office365".to_owned(),
            "/providers/microsoft.powerapps/apis/shared_sharepointonline".to_owned(),
        ],
        ..StagePolicies::default()
    };
    assert_eq!(p.check(&c), vec![]);
}

#[test]
fn allowed_connectors_refuse_others_once_each() {
    let connectors = vec![
        OFFICE365.to_owned(),
        TWITTER.to_owned(),
        "shared_TWITTER".to_owned(),
    ];
    let c = Candidate {
        connectors: &connectors,
        ..candidate(datetime!(2025-01-15 10:00 UTC))
    };
    let p = StagePolicies {
        allowed_connectors: vec!["shared_office365".to_owned(), "shared_sql".to_owned()],
        ..StagePolicies::default()
    };
    let v = p.check(&c);
    assert_eq!(policies_of(&v), ["allowed_connectors"]);
    assert_eq!(
        v[0].message,
        "the connection reference uses connector shared_twitter, which is not on this stage's allowed list (shared_office365, shared_sql); use an allowed connector or ask an admin to allow it"
    );
}

#[test]
fn allowed_connectors_refuse_a_blank_connector_id() {
    let connectors = vec![String::new()];
    let c = Candidate {
        connectors: &connectors,
        ..candidate(datetime!(2025-01-15 10:00 UTC))
    };
    let p = StagePolicies {
        allowed_connectors: vec!["shared_sql".to_owned()],
        ..StagePolicies::default()
    };
    let v = p.check(&c);
    assert_eq!(policies_of(&v), ["allowed_connectors"]);
    assert!(v[0].message.contains("no connector id"));
}

#[test]
fn blocked_connectors_refuse_by_full_id_or_short_name() {
    let connectors = vec![OFFICE365.to_owned(), TWITTER.to_owned()];
    let c = Candidate {
        connectors: &connectors,
        ..candidate(datetime!(2025-01-15 10:00 UTC))
    };
    for blocked in ["shared_twitter", "SHARED_Twitter", TWITTER] {
        let p = StagePolicies {
            blocked_connectors: vec![blocked.to_owned()],
            ..StagePolicies::default()
        };
        let v = p.check(&c);
        assert_eq!(
            policies_of(&v),
            ["blocked_connectors"],
            "blocking {blocked}"
        );
        assert_eq!(
            v[0].message,
            "the connection reference uses connector shared_twitter, which this stage blocks; remove it from the solution or deploy to another stage"
        );
    }
    let p = StagePolicies {
        blocked_connectors: vec!["shared_sql".to_owned()],
        ..StagePolicies::default()
    };
    assert_eq!(p.check(&c), vec![]);
}

#[test]
fn blank_blocked_entry_blocks_nothing() {
    let connectors = vec![String::new(), OFFICE365.to_owned()];
    let c = Candidate {
        connectors: &connectors,
        ..candidate(datetime!(2025-01-15 10:00 UTC))
    };
    let p = StagePolicies {
        blocked_connectors: vec![" ".to_owned()],
        ..StagePolicies::default()
    };
    assert_eq!(p.check(&c), vec![]);
}

// ---------- check: managed, size, notes ----------

#[test]
fn managed_only_refuses_unmanaged() {
    let p = StagePolicies {
        managed_only: true,
        ..StagePolicies::default()
    };
    let at = datetime!(2025-01-15 10:00 UTC);
    assert_eq!(p.check(&candidate(at)), vec![]);
    let v = p.check(&Candidate {
        managed: false,
        ..candidate(at)
    });
    assert_eq!(policies_of(&v), ["managed_only"]);
    assert!(v[0].message.contains("only managed solutions"));
}

#[test]
fn max_artifact_bytes_allows_the_limit_and_refuses_one_more() {
    let p = StagePolicies {
        max_artifact_bytes: Some(10_000_000),
        ..StagePolicies::default()
    };
    let at = datetime!(2025-01-15 10:00 UTC);
    let at_limit = Candidate {
        artifact_bytes: 10_000_000,
        ..candidate(at)
    };
    assert_eq!(p.check(&at_limit), vec![]);
    let v = p.check(&Candidate {
        artifact_bytes: 12_345_678,
        ..candidate(at)
    });
    assert_eq!(policies_of(&v), ["max_artifact_bytes"]);
    assert_eq!(
        v[0].message,
        "the solution file is 12.3 MB (12345678 bytes), over this stage's limit of 10.0 MB (10000000 bytes); remove unused components or ask an admin to raise the limit"
    );
}

#[test]
fn describe_bytes_picks_a_unit() {
    assert_eq!(describe_bytes(999), "999 bytes");
    assert_eq!(describe_bytes(1_500), "1.5 kB (1500 bytes)");
    assert_eq!(describe_bytes(2_000_000_000), "2.0 GB (2000000000 bytes)");
    assert!(describe_bytes(u64::MAX).contains("GB"));
}

#[test]
fn require_notes_refuses_missing_empty_and_whitespace_notes() {
    let p = StagePolicies {
        require_notes: true,
        ..StagePolicies::default()
    };
    let at = datetime!(2025-01-15 10:00 UTC);
    for notes in [None, Some(""), Some("   \n\t ")] {
        let v = p.check(&Candidate {
            notes,
            ..candidate(at)
        });
        assert_eq!(policies_of(&v), ["require_notes"], "notes {notes:?}");
        assert!(v[0].message.contains("requires deployment notes"));
    }
    let ok = Candidate {
        notes: Some("  fixes the invoice flow "),
        ..candidate(at)
    };
    assert_eq!(p.check(&ok), vec![]);
    // Without the policy, no notes are fine.
    let none = Candidate {
        notes: None,
        ..candidate(at)
    };
    assert_eq!(StagePolicies::default().check(&none), vec![]);
}

#[test]
fn every_violation_is_reported_in_field_order() {
    let connectors = vec![TWITTER.to_owned()];
    let p = StagePolicies {
        allowed_connectors: vec!["shared_sql".to_owned()],
        blocked_connectors: vec!["shared_twitter".to_owned()],
        managed_only: true,
        max_artifact_bytes: Some(10),
        deployment_windows: paris_office_hours().deployment_windows,
        require_notes: true,
    };
    let v = p.check(&Candidate {
        connectors: &connectors,
        managed: false,
        artifact_bytes: 11,
        at: datetime!(2025-01-18 09:12 UTC),
        notes: Some(" "),
    });
    assert_eq!(
        policies_of(&v),
        [
            "allowed_connectors",
            "blocked_connectors",
            "managed_only",
            "max_artifact_bytes",
            "deployment_windows",
            "require_notes"
        ]
    );
}

// ---------- check: windows ----------

#[test]
fn window_follows_paris_local_time_in_winter_and_summer() {
    let p = paris_office_hours();
    let inside = |at| p.check(&candidate(at)).is_empty();
    // Winter, Paris is UTC+1: 08:00–18:00 local is 07:00–17:00 UTC.
    assert!(!inside(datetime!(2025-01-15 06:59 UTC)));
    assert!(inside(datetime!(2025-01-15 07:00 UTC)));
    assert!(inside(datetime!(2025-01-15 16:59 UTC)));
    assert!(!inside(datetime!(2025-01-15 17:00 UTC)));
    // Summer, Paris is UTC+2: 06:00–16:00 UTC.
    assert!(!inside(datetime!(2025-07-16 05:59 UTC)));
    assert!(inside(datetime!(2025-07-16 06:00 UTC)));
    assert!(inside(datetime!(2025-07-16 15:59 UTC)));
    assert!(!inside(datetime!(2025-07-16 16:00 UTC)));
    // The same UTC instant lands on different sides in the two seasons.
    assert!(!inside(datetime!(2025-01-15 06:30 UTC)));
    assert!(inside(datetime!(2025-07-16 06:30 UTC)));
    // The offset of `at` does not matter, only the instant.
    assert!(inside(datetime!(2025-07-16 08:30 +02:00)));
    assert!(inside(datetime!(2025-07-16 08:30 -05:00))); // 15:30 in Paris
    assert!(!inside(datetime!(2025-07-16 12:00 -05:00))); // 19:00 in Paris
}

#[test]
fn window_refuses_weekends_and_says_when_and_local_now() {
    let p = paris_office_hours();
    // Saturday 09:12 UTC is Saturday 10:12 in Paris.
    let v = p.check(&candidate(datetime!(2025-01-18 09:12 UTC)));
    assert_eq!(policies_of(&v), ["deployment_windows"]);
    assert_eq!(
        v[0].message,
        "deployments to this stage may start only Mon–Fri 08:00–18:00 Europe/Paris; it is Sat 10:12 there now; the next window opens Mon 2025-01-20 08:00 Europe/Paris"
    );
}

#[test]
fn window_day_is_the_local_day_not_the_utc_day() {
    // Friday 23:30 UTC is already Saturday 00:30 in Paris.
    let p = StagePolicies {
        deployment_windows: vec![window(&[Weekday::Fri], "00:00", "23:59", "Europe/Paris")],
        ..StagePolicies::default()
    };
    assert_eq!(p.check(&candidate(datetime!(2025-01-17 22:30 UTC))), vec![]);
    let v = p.check(&candidate(datetime!(2025-01-17 23:30 UTC)));
    assert!(
        v[0].message.contains("it is Sat 00:30 there now"),
        "{}",
        v[0].message
    );
}

#[test]
fn window_crossing_midnight_belongs_to_the_day_it_starts() {
    let p = StagePolicies {
        deployment_windows: vec![window(&[Weekday::Fri], "22:00", "02:00", "UTC")],
        ..StagePolicies::default()
    };
    let inside = |at| p.check(&candidate(at)).is_empty();
    // 2025-01-17 is a Friday.
    assert!(!inside(datetime!(2025-01-17 21:59 UTC)));
    assert!(inside(datetime!(2025-01-17 22:00 UTC)));
    assert!(inside(datetime!(2025-01-17 23:59 UTC)));
    assert!(inside(datetime!(2025-01-18 00:00 UTC)));
    assert!(inside(datetime!(2025-01-18 01:00 UTC)));
    assert!(inside(datetime!(2025-01-18 01:59:59 UTC)));
    assert!(!inside(datetime!(2025-01-18 02:00 UTC)));
    // Saturday evening and Friday early morning are not Friday's window.
    assert!(!inside(datetime!(2025-01-18 23:00 UTC)));
    assert!(!inside(datetime!(2025-01-17 01:00 UTC)));
    let v = p.check(&candidate(datetime!(2025-01-18 03:00 UTC)));
    assert!(
        v[0].message.starts_with(
            "deployments to this stage may start only Fri 22:00–02:00 (ends the next day) UTC; it is Sat 03:00 there now"
        ),
        "{}",
        v[0].message
    );
}

#[test]
fn any_one_of_several_windows_is_enough_and_message_lists_zones() {
    let p = StagePolicies {
        deployment_windows: vec![
            window(&weekdays(), "08:00", "18:00", "Europe/Paris"),
            window(&[Weekday::Sat], "09:00", "12:00", "America/New_York"),
        ],
        ..StagePolicies::default()
    };
    // Saturday 15:00 UTC is 10:00 in New York (UTC-5 in January).
    assert_eq!(p.check(&candidate(datetime!(2025-01-18 15:00 UTC))), vec![]);
    let v = p.check(&candidate(datetime!(2025-01-18 18:00 UTC)));
    assert_eq!(
        v[0].message,
        "deployments to this stage may start only Mon–Fri 08:00–18:00 Europe/Paris or Sat 09:00–12:00 America/New_York; it is Sat 19:00 in Europe/Paris and Sat 13:00 in America/New_York now; the next window opens Mon 2025-01-20 08:00 Europe/Paris"
    );
}

#[test]
fn window_with_unknown_zone_never_opens_and_says_so() {
    let p = StagePolicies {
        deployment_windows: vec![window(&weekdays(), "00:00", "23:59", "Mars/Olympus")],
        ..StagePolicies::default()
    };
    let v = p.check(&candidate(datetime!(2025-01-15 10:00 UTC)));
    assert_eq!(policies_of(&v), ["deployment_windows"]);
    assert!(
        v[0].message.contains(
            "deployment_windows[0] cannot be used (unknown time zone Mars/Olympus; use an IANA name like Europe/Paris or UTC); an admin must fix this stage's policies"
        ),
        "{}",
        v[0].message
    );
    assert_eq!(p.next_window_start(datetime!(2025-01-15 10:00 UTC)), None);
}

#[test]
fn window_with_no_days_or_empty_span_never_opens() {
    for w in [
        window(&[], "08:00", "18:00", "UTC"),
        window(&Weekday::ALL, "08:00", "08:00", "UTC"),
    ] {
        let p = StagePolicies {
            deployment_windows: vec![w],
            ..StagePolicies::default()
        };
        assert_eq!(
            policies_of(&p.check(&candidate(datetime!(2025-01-15 08:00 UTC)))),
            ["deployment_windows"]
        );
    }
}

#[test]
fn window_check_out_of_range_instant_is_refused_not_panicking() {
    let p = StagePolicies {
        deployment_windows: vec![window(&Weekday::ALL, "00:00", "23:59", "UTC")],
        ..StagePolicies::default()
    };
    let far = datetime!(9999-12-31 23:59:59 UTC);
    let v = p.check(&candidate(far));
    assert_eq!(policies_of(&v), ["deployment_windows"]);
    assert!(
        v[0].message.contains("outside the range"),
        "{}",
        v[0].message
    );
    assert_eq!(p.next_window_start(far), None);
}

// ---------- next_window_start ----------

#[test]
fn next_window_start_is_none_without_windows() {
    assert_eq!(
        StagePolicies::default().next_window_start(datetime!(2025-01-15 10:00 UTC)),
        None
    );
}

#[test]
fn next_window_start_follows_dst() {
    let p = paris_office_hours();
    // From Saturday: Monday 08:00 Paris, 07:00 UTC in winter, 06:00 UTC in summer.
    assert_eq!(
        p.next_window_start(datetime!(2025-01-18 09:12 UTC)),
        Some(datetime!(2025-01-20 07:00 UTC))
    );
    assert_eq!(
        p.next_window_start(datetime!(2025-07-19 09:12 UTC)),
        Some(datetime!(2025-07-21 06:00 UTC))
    );
    // Across the spring change (2025-03-30): Friday 08:00 was UTC+1, Monday is UTC+2.
    assert_eq!(
        p.next_window_start(datetime!(2025-03-28 12:00 UTC)),
        Some(datetime!(2025-03-31 06:00 UTC))
    );
}

#[test]
fn next_window_start_keeps_the_callers_offset_and_is_inclusive() {
    let p = paris_office_hours();
    let start = datetime!(2025-01-20 08:00 +01:00);
    let got = p.next_window_start(start).unwrap();
    assert_eq!(got, start);
    assert_eq!(got.offset(), start.offset());
    // Inside a window, the answer is the next opening.
    assert_eq!(
        p.next_window_start(datetime!(2025-01-20 08:00:01 +01:00)),
        Some(datetime!(2025-01-21 08:00 +01:00))
    );
    // Before today's opening, today's opening.
    assert_eq!(
        p.next_window_start(datetime!(2025-01-21 05:00 UTC)),
        Some(datetime!(2025-01-21 07:00 UTC))
    );
}

#[test]
fn next_window_start_picks_the_earliest_window() {
    let p = StagePolicies {
        deployment_windows: vec![
            window(&[Weekday::Mon], "08:00", "18:00", "Europe/Paris"),
            window(&[Weekday::Sun], "20:00", "02:00", "UTC"),
        ],
        ..StagePolicies::default()
    };
    assert_eq!(
        p.next_window_start(datetime!(2025-01-18 09:12 UTC)),
        Some(datetime!(2025-01-19 20:00 UTC))
    );
}

#[test]
fn next_window_start_in_a_spring_forward_gap_opens_after_the_jump() {
    // 2025-03-30 in Paris, 02:00 jumps to 03:00: 02:30 does not exist.
    let p = StagePolicies {
        deployment_windows: vec![window(&[Weekday::Sun], "02:30", "04:00", "Europe/Paris")],
        ..StagePolicies::default()
    };
    // It opens at the jump, 03:00 CEST = 01:00 UTC, the first instant whose
    // wall clock is past 02:30.
    let opens = p
        .next_window_start(datetime!(2025-03-29 12:00 UTC))
        .unwrap();
    assert_eq!(opens, datetime!(2025-03-30 01:00 UTC));
    assert_eq!(p.check(&candidate(opens)), vec![]);
    // 00:59 UTC is 01:59 CET: before the window.
    assert!(
        !p.check(&candidate(datetime!(2025-03-30 00:59 UTC)))
            .is_empty()
    );
}

#[test]
fn window_wholly_inside_a_skipped_hour_waits_a_week() {
    let p = StagePolicies {
        deployment_windows: vec![window(&[Weekday::Sun], "02:15", "02:45", "Europe/Paris")],
        ..StagePolicies::default()
    };
    assert_eq!(
        p.next_window_start(datetime!(2025-03-29 12:00 UTC)),
        Some(datetime!(2025-04-06 00:15 UTC))
    );
}

#[test]
fn next_window_start_in_the_repeated_autumn_hour_is_the_first_one() {
    let p = StagePolicies {
        deployment_windows: vec![window(&[Weekday::Sun], "02:30", "04:00", "Europe/Paris")],
        ..StagePolicies::default()
    };
    // 02:30 CEST = 00:30 UTC, before the clocks go back.
    assert_eq!(
        p.next_window_start(datetime!(2025-10-25 12:00 UTC)),
        Some(datetime!(2025-10-26 00:30 UTC))
    );
}

#[test]
fn window_in_the_repeated_autumn_hour_is_open_both_times() {
    // 2025-10-26 in Paris: 03:00 CEST falls back to 02:00 CET; 02:00–02:59 happens twice.
    let p = StagePolicies {
        deployment_windows: vec![window(&[Weekday::Sun], "02:00", "03:00", "Europe/Paris")],
        ..StagePolicies::default()
    };
    assert_eq!(p.check(&candidate(datetime!(2025-10-26 00:30 UTC))), vec![]);
    assert_eq!(p.check(&candidate(datetime!(2025-10-26 01:30 UTC))), vec![]);
    assert!(
        !p.check(&candidate(datetime!(2025-10-26 02:00 UTC)))
            .is_empty()
    );
}

// ---------- serde and schema ----------

#[test]
fn serde_round_trip_keeps_everything() {
    let p = StagePolicies {
        allowed_connectors: vec![OFFICE365.to_owned()],
        blocked_connectors: vec!["shared_twitter".to_owned()],
        managed_only: true,
        max_artifact_bytes: Some(50_000_000),
        deployment_windows: vec![window(&weekdays(), "08:00", "18:00", "Europe/Paris")],
        require_notes: true,
    };
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(
        json["deployment_windows"][0]["days"],
        serde_json::json!(["mon", "tue", "wed", "thu", "fri"])
    );
    let back: StagePolicies = serde_json::from_value(json).unwrap();
    assert_eq!(back, p);
}

#[test]
fn serde_empty_object_is_the_default() {
    let p: StagePolicies = serde_json::from_str("{}").unwrap();
    assert_eq!(p, StagePolicies::default());
    let p: StagePolicies = serde_json::from_str(r#"{"managed_only": true}"#).unwrap();
    assert!(p.managed_only);
    assert_eq!(p.max_artifact_bytes, None);
}

#[test]
fn serde_refuses_unknown_fields_and_names_them() {
    let err = serde_json::from_str::<StagePolicies>(r#"{"managed_olny": true}"#).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `managed_olny`"),
        "{err}"
    );

    let err = serde_json::from_str::<StagePolicies>(
        r#"{"deployment_windows": [{"days": ["mon"], "start": "08:00", "end": "18:00",
            "time_zone": "UTC", "timezone": "UTC"}]}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `timezone`"),
        "{err}"
    );
}

#[test]
fn serde_days_are_short_lowercase_names() {
    let w: DeploymentWindow = serde_json::from_str(
        r#"{"days": ["mon","tue","wed","thu","fri","sat","sun"], "start": "08:00", "end": "18:00", "time_zone": "UTC"}"#,
    )
    .unwrap();
    assert_eq!(w.days, Weekday::ALL);
    let err = serde_json::from_str::<DeploymentWindow>(
        r#"{"days": ["Monday"], "start": "08:00", "end": "18:00", "time_zone": "UTC"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("Monday"), "{err}");
    let err = serde_json::from_str::<DeploymentWindow>(r#"{"days": ["mon"], "start": "08:00"}"#)
        .unwrap_err();
    assert!(err.to_string().contains("missing field `end`"), "{err}");
}

#[test]
fn violation_round_trips() {
    let v = PolicyViolation {
        policy: "require_notes".to_owned(),
        message: "m".to_owned(),
    };
    let back: PolicyViolation = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
    assert_eq!(back, v);
}

#[test]
fn openapi_schema_shows_the_policies() {
    use utoipa::PartialSchema;
    let schema = serde_json::to_value(StagePolicies::schema()).unwrap();
    let props = &schema["properties"];
    for field in [
        "allowed_connectors",
        "blocked_connectors",
        "managed_only",
        "max_artifact_bytes",
        "deployment_windows",
        "require_notes",
    ] {
        assert!(props.get(field).is_some(), "schema lacks {field}: {schema}");
    }
    let day = serde_json::to_value(Weekday::schema()).unwrap();
    assert_eq!(
        day["enum"],
        serde_json::json!(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
    );
}
