//! `slipway deploy --wait` shows a slow import's real percentage, read by
//! the importer from the target's import job and carried on the run (see
//! `support`). Without a terminal each new whole percentage is a line.
#![allow(clippy::unwrap_used)]

mod support;

use slipway_envsim::config::Faults;
use support::{set_up, start};

/// The whole percentages of the `import N %` lines of `out`, in order.
fn percent_lines(out: &str) -> Vec<u64> {
    out.lines()
        .filter_map(|line| {
            let rest = line.trim().split_once("import ")?.1;
            rest.strip_suffix(" %")?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_shows_the_percentage_of_a_slow_import() {
    let gw = start().await;
    let s = set_up(&gw).await;
    gw.faults(
        "test",
        Faults {
            import_delay_ms: 2_500,
            ..Faults::default()
        },
    );

    let deployed = gw.deploy(&s.maker, "Contoso", "test", &["--wait"]).await;
    let out = deployed.ok();
    let percents = percent_lines(out);
    assert!(
        percents.len() >= 2,
        "a 2.5 s import shows its percentage as it grows:\n{out}"
    );
    assert!(
        percents.windows(2).all(|w| w[0] < w[1]),
        "each line a new, higher percentage: {percents:?}\n{out}"
    );
    assert!(percents.iter().all(|p| *p <= 100), "{percents:?}");
    // In order: after the import started, before it succeeded.
    let at = |needle: &str| {
        out.find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{out}"))
    };
    let first = out.lines().find(|l| !percent_lines(l).is_empty()).unwrap();
    assert!(at("import started") < at(first), "{out}");
    assert!(at(first) < at("import succeeded"), "{out}");
    // No terminal: no bar drawn on stderr.
    assert!(
        !deployed.stderr.contains("importing into"),
        "{}",
        deployed.stderr
    );

    // The run keeps it: 100 once the import succeeded.
    let id = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("deployment "))
        .and_then(|l| l.split(':').next())
        .unwrap()
        .to_owned();
    let shown = gw
        .slipway(&s.maker, &["runs", &id, "-o", "json"])
        .await
        .json();
    let run = &shown["run"];
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["import_progress"]["percent"], 100.0, "{run}");
    assert!(
        run["import_progress"]["polls"].as_u64().unwrap() >= 2,
        "{run}"
    );
    gw.stop().await;
}
