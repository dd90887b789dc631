//! Property tests over the reader: random bytes, mutated zips and mutated
//! XML never panic, and whatever is accepted is sane.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use proptest::prelude::*;
use slipway_solution::{Limits, ReadMode, Solution, Version};
use slipway_testkit::solution_zip::{DepEnd, SolutionZip, zip_of};

fn sample() -> &'static SolutionZip {
    static S: OnceLock<SolutionZip> = OnceLock::new();
    S.get_or_init(|| {
        SolutionZip::new("Sample", "1.2.3.4")
            .publisher("contoso", "cts")
            .root_component(1, "cts_t")
            .missing_dependency(
                DepEnd::new("61", "x.png").package("P (1.0)"),
                DepEnd::named_type("CustomAPI", "cts_api"),
            )
            .connection_reference("cts_c", "/providers/Microsoft.PowerApps/apis/shared_x")
            .env_var("cts_v", 100000003, Some("{}"), Some("[]"))
            .flow("F", "6b53c887-0d6a-4c7e-9e2b-1f1b2e3c4d5e", "{}")
    })
}

fn limits() -> Limits {
    Limits {
        max_entry_bytes: 4 * 1024 * 1024,
        max_total_bytes: 16 * 1024 * 1024,
        ..Limits::default()
    }
}

fn check(bytes: &[u8]) {
    for mode in [ReadMode::Full, ReadMode::Facts] {
        if let Ok(s) = Solution::from_reader_mode(std::io::Cursor::new(bytes), &limits(), mode) {
            assert!(!s.unique_name.is_empty());
            assert!(s.version.parts().len() >= 2);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check(&bytes);
    }

    #[test]
    fn random_bytes_after_a_zip_signature_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = b"PK\x03\x04".to_vec();
        bytes.extend(tail);
        bytes.extend_from_slice(b"PK\x05\x06");
        bytes.extend(std::iter::repeat_n(0u8, 18));
        check(&bytes);
    }

    #[test]
    fn mutated_zips_never_panic(
        stored in any::<bool>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut zip = sample().clone().stored(stored).build();
        for (at, byte) in edits {
            let i = at.index(zip.len());
            zip[i] = byte;
        }
        if let Some(c) = cut {
            zip.truncate(c.index(zip.len()));
        }
        check(&zip);
    }

    #[test]
    fn mutated_xml_never_panics(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), prop::sample::select(vec![b'<', b'>', b'&', b'"', b'/', b'!', b'?', 0xFF, b'x', b' '])), 1..8),
    ) {
        let mut entries = sample().entries();
        let target = entries.iter().position(|(n, _)| match which {
            0 => n == "solution.xml",
            1 => n == "customizations.xml",
            _ => n.ends_with("environmentvariabledefinition.xml"),
        }).unwrap();
        let data = &mut entries[target].1;
        for (at, byte) in edits {
            let i = at.index(data.len());
            data[i] = byte;
        }
        check(&zip_of(&entries, false));
    }

    #[test]
    fn versions_round_trip_and_order_numerically(a in proptest::collection::vec(0u64..100_000, 2..=4), b in proptest::collection::vec(0u64..100_000, 2..=4)) {
        let text = |p: &Vec<u64>| p.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
        let (va, vb) = (Version::parse(&text(&a)).unwrap(), Version::parse(&text(&b)).unwrap());
        prop_assert_eq!(va.to_string(), text(&a));
        let pad = |p: &Vec<u64>| { let mut p = p.clone(); p.resize(4, 0); p };
        prop_assert_eq!(va.cmp(&vb), pad(&a).cmp(&pad(&b)));
    }
}
