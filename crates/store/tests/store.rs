//! Every store behaviour, written once and run on both backends: a fresh
//! PostgreSQL database (the real server) and a SQLite file in a temp dir.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use slipway_messages::{Deployment, Envelope, ExportCommand, Message, RunEvent, Step, StepStatus};
use slipway_store::{
    Applied, Backend, CancelOutcome, HistoryKind, NewRun, Publish, RunState, Store, StoreError,
};
use uuid::Uuid;

/// A database for one test: its url (to open more replicas) and a store on it.
struct Fixture {
    url: String,
    store: Store,
}

impl Fixture {
    /// Another gateway replica: its own pool on the same database.
    async fn replica(&self) -> Store {
        Store::connect(&self.url).await.unwrap()
    }
}

/// Generate `postgres::<name>` and `sqlite::<name>` tests calling `<name>(&Fixture)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = slipway_testkit::pg::fresh_database().await.unwrap();
                    let store = slipway_store::Store::connect(db.url()).await.unwrap();
                    assert_eq!(store.backend(), slipway_store::Backend::Postgres);
                    let fixture = super::Fixture { url: db.url().to_owned(), store };
                    super::$name(&fixture).await;
                    drop(fixture);
                    db.drop_db().await.unwrap();
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}?mode=rwc", dir.path().join("slipway.db").display());
                    let store = slipway_store::Store::connect(&url).await.unwrap();
                    assert_eq!(store.backend(), slipway_store::Backend::Sqlite);
                    super::$name(&super::Fixture { url, store }).await;
                }
            )*
        }
    };
}

on_both_backends!(
    create_run_writes_run_audit_and_outbox_together,
    failed_create_writes_nothing,
    create_runs_writes_every_run_or_none,
    concurrent_creations_each_get_their_own_answer,
    claim_leases_oldest_first_and_published_rows_never_return,
    concurrent_claimers_never_get_the_same_row,
    happy_path_ends_succeeded,
    redelivered_event_is_a_duplicate,
    out_of_order_events_end_in_the_same_state,
    failure_sets_the_reason,
    terminal_states_are_final,
    cancel_stops_a_run_before_the_import_only,
    history_interleaves_events_and_transitions_in_order,
    a_folded_history_row_reads_back_as_its_event_and_transition,
    concurrent_replicas_apply_events_exactly_once,
    unknown_run_and_wrong_kind_are_refused,
    list_runs_newest_first,
    reconnecting_reapplies_no_migration_and_keeps_data,
    a_batch_of_several_runs_records_every_transition_in_order,
    duplicates_within_and_across_batches_are_recorded_once,
    a_batch_with_a_command_writes_nothing,
    concurrent_batches_from_two_replicas_never_double_transition,
    the_source_version_of_the_first_export_is_kept,
    a_validation_is_kept_on_the_run_whether_or_not_it_moves_it,
    commands_the_caller_publishes_are_leased_to_it_and_recovered_after,
);

fn deployment() -> Deployment {
    Deployment {
        version: Some("1.0.0.2".into()),
        settings: Some(serde_json::json!({"EnvironmentVariables": []})),
        ..Deployment::between("Contoso", "dev", "test")
    }
}

fn headers() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    )])
}

fn export_command(run: Uuid) -> Envelope {
    Envelope::new(
        run,
        Message::Export(ExportCommand {
            deployment: deployment(),
        }),
    )
}

/// Start a run; returns its id and first command.
async fn start_run(store: &Store) -> (Uuid, Envelope) {
    let id = Uuid::now_v7();
    let command = export_command(id);
    let new = NewRun {
        id,
        deployment: deployment(),
        requested_by: "maker@contoso.com".into(),
        gates: Default::default(),
        artifact: None,
    };
    store.create_run(&new, &command, &headers()).await.unwrap();
    (id, command)
}

fn event(run: Uuid, step: Option<Step>, status: StepStatus, detail: Option<&str>) -> Envelope {
    let service = step.map_or("gateway", |s| match s {
        Step::Export => "exporter",
        Step::Validate => "validator",
        Step::Import => "importer",
    });
    Envelope::new(
        run,
        Message::RunEvent(RunEvent {
            step,
            status,
            service: service.into(),
            instance: Some(format!("{service}-host:1")),
            detail: detail.map(Into::into),
            outcome: None,
        }),
    )
}

/// The six events of a successful run, in pipeline order.
fn happy_events(run: Uuid) -> Vec<Envelope> {
    let mut events = vec![];
    for step in [Step::Export, Step::Validate, Step::Import] {
        for status in [StepStatus::Started, StepStatus::Succeeded] {
            events.push(event(run, Some(step), status, None));
        }
    }
    events
}

async fn state_of(store: &Store, run: Uuid) -> RunState {
    store.get_run(run).await.unwrap().unwrap().state
}

/// The states a run's audit rows moved it to, in order.
async fn transitions(store: &Store, run: Uuid) -> Vec<RunState> {
    let history = store.run_history(run).await.unwrap();
    history
        .iter()
        .filter(|h| h.kind == HistoryKind::Transition)
        .map(|h| h.state.unwrap())
        .collect()
}

async fn create_run_writes_run_audit_and_outbox_together(fx: &Fixture) {
    let store = &fx.store;
    store.ping().await.unwrap();
    let id = Uuid::now_v7();
    let command = export_command(id);
    let new = NewRun {
        id,
        deployment: deployment(),
        requested_by: "maker@contoso.com".into(),
        gates: Default::default(),
        artifact: None,
    };
    let run = store.create_run(&new, &command, &headers()).await.unwrap();
    assert_eq!(run.state, RunState::Requested);
    assert_eq!(store.get_run(id).await.unwrap(), Some(run.clone()));

    let history = store.run_history(id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].kind, HistoryKind::Transition);
    assert_eq!(history[0].state, Some(RunState::Requested));
    assert_eq!(history[0].actor.as_deref(), Some("maker@contoso.com"));
    assert_eq!(history[0].at, run.created_at);

    let claimed = store
        .claim_outbox(10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].envelope, command);
    assert_eq!(claimed[0].trace_headers, headers());
}

async fn failed_create_writes_nothing(fx: &Fixture) {
    let store = &fx.store;
    let (id, first) = start_run(store).await;
    let again = NewRun {
        id,
        deployment: deployment(),
        requested_by: "someone-else".into(),
        gates: Default::default(),
        artifact: None,
    };
    let err = store
        .create_run(&again, &export_command(id), &headers())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateRun(dup) if dup == id),
        "{err}"
    );

    let stranger = NewRun {
        id: Uuid::now_v7(),
        ..again
    };
    let err = store
        .create_run(&stranger, &export_command(id), &headers())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::CommandRunMismatch { .. }),
        "{err}"
    );
    assert_eq!(store.get_run(stranger.id).await.unwrap(), None);

    // Only the first run's audit row and outbox row exist.
    assert_eq!(transitions(store, id).await, [RunState::Requested]);
    let claimed = store
        .claim_outbox(10, Duration::from_secs(60))
        .await
        .unwrap();
    let ids: Vec<Uuid> = claimed.iter().map(|c| c.envelope.message_id).collect();
    assert_eq!(ids, [first.message_id]);
}

/// A fanned-out deployment: several runs and their commands in one
/// transaction; one bad run keeps every other from being written.
async fn create_runs_writes_every_run_or_none(fx: &Fixture) {
    let store = &fx.store;
    let new = |target: &str| {
        let id = Uuid::now_v7();
        (
            NewRun {
                id,
                deployment: Deployment::between("Contoso", "dev", target),
                requested_by: "maker@contoso.com".into(),
                gates: Default::default(),
                artifact: None,
            },
            export_command(id),
        )
    };
    let (eu, us) = (new("prod-eu"), new("prod-us"));
    let runs = store
        .create_runs(&[(&eu.0, &eu.1), (&us.0, &us.1)], &headers())
        .await
        .unwrap();
    let targets: Vec<&str> = runs
        .iter()
        .map(|r| r.deployment.target_environment.as_str())
        .collect();
    assert_eq!(targets, ["prod-eu", "prod-us"]);
    assert_eq!(transitions(store, us.0.id).await, [RunState::Requested]);

    // The second run repeats an id: the first of this batch is not written.
    let apac = new("prod-apac");
    let err = store
        .create_runs(&[(&apac.0, &apac.1), (&eu.0, &eu.1)], &headers())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateRun(id) if id == eu.0.id),
        "{err}"
    );
    assert_eq!(store.get_run(apac.0.id).await.unwrap(), None);
    let claimed = store
        .claim_outbox(10, Duration::from_secs(60))
        .await
        .unwrap();
    let mut ids: Vec<Uuid> = claimed.iter().map(|c| c.envelope.run_id).collect();
    ids.sort();
    let mut expected = vec![eu.0.id, us.0.id];
    expected.sort();
    assert_eq!(
        ids, expected,
        "only the first batch's commands are in the outbox"
    );
}

/// Concurrent submissions share transactions (group commit); each still
/// gets exactly its own runs, and one that repeats an id fails alone.
async fn concurrent_creations_each_get_their_own_answer(fx: &Fixture) {
    let store = &fx.store;
    let taken = start_run(store).await.0;
    let requests: Vec<(NewRun, Envelope)> = (0..120)
        .map(|i| {
            let id = if i == 57 { taken } else { Uuid::now_v7() };
            let new = NewRun {
                id,
                deployment: Deployment::between("Contoso", "dev", &format!("target-{i}")),
                requested_by: format!("maker-{i}@contoso.com"),
                gates: Default::default(),
                artifact: None,
            };
            (new, export_command(id))
        })
        .collect();
    let headers = headers();
    let answers = futures::future::join_all(
        requests
            .iter()
            .map(|(new, command)| store.create_run(new, command, &headers)),
    )
    .await;
    for (i, ((new, _), answer)) in requests.iter().zip(&answers).enumerate() {
        if i == 57 {
            assert!(
                matches!(answer, Err(StoreError::DuplicateRun(id)) if *id == taken),
                "the repeated id must fail alone: {answer:?}"
            );
            continue;
        }
        let run = answer.as_ref().unwrap();
        assert_eq!(run.id, new.id);
        assert_eq!(run.deployment.target_environment, format!("target-{i}"));
        assert_eq!(run.requested_by, format!("maker-{i}@contoso.com"));
        assert_eq!(transitions(store, run.id).await, [RunState::Requested]);
    }
    let claimed = store
        .claim_outbox(500, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        120,
        "one command per run written (119 + the first)"
    );
    let audit = store.verify_audit().await.unwrap();
    assert!(audit.intact, "{audit:?}");
}

/// A gateway publishes its submissions' first commands itself: the store
/// hands them back leased to it (the relay does not claim them), except a
/// run held at a gate; if the gateway never marks them published (it
/// crashed), the relay claims them once the lease runs out.
async fn commands_the_caller_publishes_are_leased_to_it_and_recovered_after(fx: &Fixture) {
    let store = &fx.store;
    let new = |gated: bool| {
        let id = Uuid::now_v7();
        let new = NewRun {
            id,
            deployment: deployment(),
            requested_by: "maker@contoso.com".into(),
            gates: slipway_store::RunGates {
                pre_export_gate: gated,
                ..Default::default()
            },
            artifact: None,
        };
        (new, export_command(id))
    };
    let lease = Duration::from_millis(1_500);
    let by_caller = Publish::ByCaller {
        lease_ms: i64::try_from(lease.as_millis()).unwrap(),
    };
    // Concurrent submissions share a transaction: each gets its own commands.
    let requests: Vec<Vec<(NewRun, Envelope)>> = (0..20)
        .map(|i| (0..1 + i % 3).map(|_| new(false)).collect())
        .collect();
    let headers = headers();
    let answers = futures::future::join_all(requests.iter().map(|runs| {
        let pairs: Vec<(&NewRun, &Envelope)> = runs.iter().map(|(n, e)| (n, e)).collect();
        let headers = &headers;
        async move { store.start_runs(&pairs, headers, by_caller).await }
    }))
    .await;
    let mut handed = Vec::new();
    for (runs, answer) in requests.iter().zip(answers) {
        let started = answer.unwrap();
        let ids: Vec<Uuid> = started.runs.iter().map(|r| r.id).collect();
        let wanted: Vec<Uuid> = runs.iter().map(|(n, _)| n.id).collect();
        assert_eq!(ids, wanted);
        let commands: Vec<&Envelope> = started.publish.iter().map(|i| &i.envelope).collect();
        let expected: Vec<&Envelope> = runs.iter().map(|(_, e)| e).collect();
        assert_eq!(
            commands, expected,
            "each request gets its own commands, in order"
        );
        assert!(started.publish.iter().all(|i| i.trace_headers == headers));
        handed.extend(started.publish);
    }
    assert_eq!(handed.len(), requests.iter().map(Vec::len).sum::<usize>());
    let gated = new(true);
    let held = store
        .start_runs(&[(&gated.0, &gated.1)], &headers, by_caller)
        .await
        .unwrap();
    assert_eq!(held.runs[0].state, RunState::AwaitingPreExport);
    assert!(
        held.publish.is_empty(),
        "a gated run's command waits for its gate"
    );

    // Leased to the caller: the relay takes none of them meanwhile.
    assert!(store.claim_outbox(100, lease).await.unwrap().is_empty());
    // The caller published and marked half; the other half it never did.
    let (marked, lost) = handed.split_at(handed.len() / 2);
    let marked: Vec<i64> = marked.iter().map(|i| i.id).collect();
    store.mark_published(&marked).await.unwrap();
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let mut recovered: Vec<Uuid> = store
        .claim_outbox(100, Duration::from_secs(60))
        .await
        .unwrap()
        .iter()
        .map(|i| i.envelope.message_id)
        .collect();
    let mut lost: Vec<Uuid> = lost.iter().map(|i| i.envelope.message_id).collect();
    recovered.sort();
    lost.sort();
    assert_eq!(
        recovered, lost,
        "exactly the unmarked commands are recovered"
    );
}

async fn claim_leases_oldest_first_and_published_rows_never_return(fx: &Fixture) {
    let store = &fx.store;
    let mut commands = vec![];
    for _ in 0..3 {
        commands.push(start_run(store).await.1.message_id);
    }
    let lease = Duration::from_secs(60);
    let first = store.claim_outbox(2, lease).await.unwrap();
    let got: Vec<Uuid> = first.iter().map(|c| c.envelope.message_id).collect();
    assert_eq!(got, commands[..2]);
    assert!(first[0].id < first[1].id);

    // Leased rows are not handed out again; the third one is.
    let second = store.claim_outbox(10, lease).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].envelope.message_id, commands[2]);
    assert!(store.claim_outbox(10, lease).await.unwrap().is_empty());
    assert!(store.claim_outbox(0, lease).await.unwrap().is_empty());

    let ids: Vec<i64> = first.iter().map(|c| c.id).collect();
    store.mark_published(&ids).await.unwrap();
    store.mark_published(&ids).await.unwrap(); // idempotent
    store.mark_published(&[]).await.unwrap();

    // An expired lease (here: zero) makes a row claimable again; published
    // rows never come back.
    let (_, late) = start_run(store).await;
    let once = store.claim_outbox(10, Duration::ZERO).await.unwrap();
    assert_eq!(once.len(), 1);
    assert_eq!(once[0].envelope.message_id, late.message_id);
    let again = store.claim_outbox(10, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, once[0].id);
    store
        .mark_published(&[once[0].id, second[0].id])
        .await
        .unwrap();
    let everything = store.claim_outbox(100, Duration::ZERO).await.unwrap();
    assert!(everything.is_empty(), "{everything:?}");
}

async fn concurrent_claimers_never_get_the_same_row(fx: &Fixture) {
    const ROWS: usize = 120;
    for _ in 0..ROWS {
        start_run(&fx.store).await;
    }
    let replicas = [fx.store.clone(), fx.replica().await];
    let mut tasks = vec![];
    for replica in replicas {
        for _ in 0..3 {
            let store = replica.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = vec![];
                loop {
                    let batch = store
                        .claim_outbox(7, Duration::from_secs(60))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|item| item.id));
                }
            }));
        }
    }
    let mut all = vec![];
    for task in futures::future::join_all(tasks).await {
        all.extend(task.unwrap());
    }
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a row was claimed twice");
    assert_eq!(all.len(), ROWS);
}

async fn happy_path_ends_succeeded(fx: &Fixture) {
    let store = &fx.store;
    let (run, _) = start_run(store).await;
    let mut applied = vec![];
    for ev in happy_events(run) {
        applied.push(store.apply_event(&ev).await.unwrap());
    }
    use RunState::*;
    let t = |from, to| Applied::Transitioned { from, to };
    assert_eq!(
        applied,
        [
            t(Requested, Exporting),
            t(Exporting, Validating),
            Applied::Recorded, // validate started: already validating
            t(Validating, Importing),
            Applied::Recorded, // import started: already importing
            t(Importing, Succeeded),
        ]
    );
    let done = store.get_run(run).await.unwrap().unwrap();
    assert_eq!(done.state, Succeeded);
    assert_eq!(done.reason, None);
    assert!(done.updated_at >= done.created_at);
    // Retrying after the end changes nothing either.
    let retry = event(run, Some(Step::Import), StepStatus::Retrying, Some("429"));
    assert_eq!(store.apply_event(&retry).await.unwrap(), Applied::Recorded);
}

/// The exporter's `source_version` lands on the run; a later export of the
/// same run (a redelivery, after the source moved on) does not replace it.
async fn the_source_version_of_the_first_export_is_kept(fx: &Fixture) {
    let store = &fx.store;
    let (run, _) = start_run(store).await;
    assert_eq!(
        store.get_run(run).await.unwrap().unwrap().source_version,
        None
    );
    let exported = |source_version: Option<&str>, version: &str| {
        let mut ev = event(run, Some(Step::Export), StepStatus::Succeeded, None);
        if let Message::RunEvent(e) = &mut ev.message {
            e.outcome = Some(slipway_messages::StepOutcome::Exported {
                artifact: slipway_messages::ArtifactRef {
                    managed_sha256: "a".repeat(64),
                    unmanaged_sha256: "b".repeat(64),
                    version: version.into(),
                    managed_bytes: 1,
                },
                source_version: source_version.map(Into::into),
            });
        }
        ev
    };
    // Placeholder work reports none: nothing recorded.
    store.apply_event(&exported(None, "1.0.0.1")).await.unwrap();
    assert_eq!(
        store.get_run(run).await.unwrap().unwrap().source_version,
        None
    );
    store
        .apply_event(&exported(Some("1.0.0.0"), "1.0.0.1"))
        .await
        .unwrap();
    store
        .apply_event(&exported(Some("1.0.0.1"), "1.0.0.2"))
        .await
        .unwrap();
    let kept = store.get_run(run).await.unwrap().unwrap();
    assert_eq!(kept.source_version.as_deref(), Some("1.0.0.0"));
    assert_eq!(kept.state, RunState::Validating);
    let listed = store.list_runs(10).await.unwrap();
    assert_eq!(listed[0].source_version.as_deref(), Some("1.0.0.0"));
}

async fn redelivered_event_is_a_duplicate(fx: &Fixture) {
    let store = &fx.store;
    let (run, _) = start_run(store).await;
    let started = event(run, Some(Step::Export), StepStatus::Started, None);
    assert!(matches!(
        store.apply_event(&started).await.unwrap(),
        Applied::Transitioned { .. }
    ));
    let mut redelivered = started.clone();
    redelivered.attempt = 2;
    assert_eq!(
        store.apply_event(&redelivered).await.unwrap(),
        Applied::Duplicate
    );

    for ev in happy_events(run) {
        store.apply_event(&ev).await.unwrap();
        assert_eq!(store.apply_event(&ev).await.unwrap(), Applied::Duplicate);
    }
    // A second, distinct "import succeeded" is recorded but is not a second success.
    let extra = event(run, Some(Step::Import), StepStatus::Succeeded, None);
    assert_eq!(store.apply_event(&extra).await.unwrap(), Applied::Recorded);

    let history = store.run_history(run).await.unwrap();
    let events = history
        .iter()
        .filter(|h| h.kind == HistoryKind::Event)
        .count();
    assert_eq!(events, 1 + 6 + 1);
    let succeeded = transitions(store, run)
        .await
        .into_iter()
        .filter(|s| *s == RunState::Succeeded)
        .count();
    assert_eq!(succeeded, 1);
}

async fn out_of_order_events_end_in_the_same_state(fx: &Fixture) {
    let store = &fx.store;
    let orders: [&[usize]; 4] = [
        &[0, 1, 2, 3, 4, 5],
        &[5, 4, 3, 2, 1, 0],
        &[0, 2, 1, 4, 3, 5],
        &[2, 0, 5, 1, 3, 4],
    ];
    for order in orders {
        let (run, _) = start_run(store).await;
        let events = happy_events(run);
        for &i in order {
            store.apply_event(&events[i]).await.unwrap();
        }
        assert_eq!(state_of(store, run).await, RunState::Succeeded, "{order:?}");
        let moves = transitions(store, run).await;
        assert!(
            moves.windows(2).all(|w| w[0].rank() < w[1].rank()),
            "moved backwards for {order:?}: {moves:?}"
        );
        assert_eq!(moves.last(), Some(&RunState::Succeeded));
    }
    // A late "export started" after "validate started" does not move back.
    let (run, _) = start_run(store).await;
    let validate = event(run, Some(Step::Validate), StepStatus::Started, None);
    store.apply_event(&validate).await.unwrap();
    let late = event(run, Some(Step::Export), StepStatus::Started, None);
    assert_eq!(store.apply_event(&late).await.unwrap(), Applied::Recorded);
    assert_eq!(state_of(store, run).await, RunState::Validating);
}

async fn failure_sets_the_reason(fx: &Fixture) {
    let store = &fx.store;
    let (run, _) = start_run(store).await;
    store
        .apply_event(&event(run, Some(Step::Export), StepStatus::Started, None))
        .await
        .unwrap();
    let why = "missing dependency: contoso_core 2.0";
    let failed = event(run, Some(Step::Validate), StepStatus::Failed, Some(why));
    assert_eq!(
        store.apply_event(&failed).await.unwrap(),
        Applied::Transitioned {
            from: RunState::Exporting,
            to: RunState::Failed
        }
    );
    let done = store.get_run(run).await.unwrap().unwrap();
    assert_eq!(done.state, RunState::Failed);
    assert_eq!(done.reason.as_deref(), Some(why));
    let history = store.run_history(run).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.kind, HistoryKind::Transition);
    assert_eq!(last.state, Some(RunState::Failed));
    assert_eq!(last.actor.as_deref(), Some("validator"));
    assert_eq!(last.detail.as_deref(), Some(why));

    // Without a detail the reason still says what failed.
    let (run, _) = start_run(store).await;
    let bare = event(run, Some(Step::Import), StepStatus::Failed, None);
    store.apply_event(&bare).await.unwrap();
    let reason = store.get_run(run).await.unwrap().unwrap().reason.unwrap();
    assert!(
        reason.contains("import") && reason.contains("importer"),
        "{reason}"
    );
}

async fn terminal_states_are_final(fx: &Fixture) {
    let store = &fx.store;
    let (run, _) = start_run(store).await;
    let why = "import job failed: solution is managed";
    store
        .apply_event(&event(
            run,
            Some(Step::Import),
            StepStatus::Failed,
            Some(why),
        ))
        .await
        .unwrap();
    for ev in happy_events(run) {
        assert_eq!(store.apply_event(&ev).await.unwrap(), Applied::Recorded);
    }
    let other = event(run, None, StepStatus::Failed, Some("another reason"));
    assert_eq!(store.apply_event(&other).await.unwrap(), Applied::Recorded);
    let done = store.get_run(run).await.unwrap().unwrap();
    assert_eq!(done.state, RunState::Failed);
    assert_eq!(done.reason.as_deref(), Some(why));
    assert_eq!(
        transitions(store, run).await,
        [RunState::Requested, RunState::Failed]
    );
}

async fn cancel_stops_a_run_before_the_import_only(fx: &Fixture) {
    let store = &fx.store;
    let (run, _) = start_run(store).await;
    let events = happy_events(run);
    store.apply_event(&events[0]).await.unwrap(); // exporting
    let outcome = store
        .cancel_run(run, "lead@contoso.com", Some("wrong version"))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CancelOutcome::Canceled {
            from: RunState::Exporting
        }
    );
    let done = store.get_run(run).await.unwrap().unwrap();
    assert_eq!(done.state, RunState::Canceled);
    assert_eq!(done.reason.as_deref(), Some("wrong version"));
    let last = store.run_history(run).await.unwrap().pop().unwrap();
    assert_eq!(last.actor.as_deref(), Some("lead@contoso.com"));
    assert_eq!(last.state, Some(RunState::Canceled));
    // The workers' later events are recorded and change nothing.
    for ev in &events[1..] {
        assert_eq!(store.apply_event(ev).await.unwrap(), Applied::Recorded);
    }
    assert_eq!(
        store.cancel_run(run, "lead", None).await.unwrap(),
        CancelOutcome::TooLate {
            state: RunState::Canceled
        }
    );

    // Once importing, a run can no longer be canceled.
    let (run, _) = start_run(store).await;
    let importing = event(run, Some(Step::Import), StepStatus::Started, None);
    store.apply_event(&importing).await.unwrap();
    assert_eq!(
        store.cancel_run(run, "lead", None).await.unwrap(),
        CancelOutcome::TooLate {
            state: RunState::Importing
        }
    );
    assert_eq!(state_of(store, run).await, RunState::Importing);
    assert_eq!(
        store
            .cancel_run(Uuid::now_v7(), "lead", None)
            .await
            .unwrap(),
        CancelOutcome::UnknownRun
    );
}

async fn history_interleaves_events_and_transitions_in_order(fx: &Fixture) {
    let store = &fx.store;
    let (run, _) = start_run(store).await;
    let events = happy_events(run);
    let retry = event(run, Some(Step::Validate), StepStatus::Retrying, Some("503"));
    for ev in [&events[0], &events[1], &events[2], &retry] {
        store.apply_event(ev).await.unwrap();
    }
    let history = store.run_history(run).await.unwrap();
    let summary: Vec<String> = history
        .iter()
        .map(|h| match h.kind {
            HistoryKind::Transition => format!("-> {}", h.state.unwrap()),
            HistoryKind::Event => format!(
                "{} {:?}",
                h.step.map_or("-", Step::as_str),
                h.status.unwrap()
            ),
        })
        .collect();
    assert_eq!(
        summary,
        [
            "-> requested",
            "export Started",
            "-> exporting",
            "export Succeeded",
            "-> validating",
            "validate Started",
            "validate Retrying",
        ]
    );
    assert!(history.windows(2).all(|w| w[0].at <= w[1].at));
    let retry_row = history.last().unwrap();
    assert_eq!(retry_row.service.as_deref(), Some("validator"));
    assert_eq!(retry_row.instance.as_deref(), Some("validator-host:1"));
    assert_eq!(retry_row.detail.as_deref(), Some("503"));
    assert!(store.run_history(Uuid::now_v7()).await.unwrap().is_empty());
}

/// An event and the transition it caused are stored as one row and read
/// back as the two entries, each with its own fields: the transition's
/// actor is the reporting service, a failure's reason is rebuilt.
async fn a_folded_history_row_reads_back_as_its_event_and_transition(fx: &Fixture) {
    let store = &fx.store;
    let (run, _) = start_run(store).await;
    let started = event(run, Some(Step::Export), StepStatus::Started, None);
    let failed = event(run, Some(Step::Export), StepStatus::Failed, None);
    store.apply_events(&[started, failed]).await.unwrap();
    let history = store.run_history(run).await.unwrap();
    let seen: Vec<_> = history
        .iter()
        .map(|h| {
            (
                h.kind,
                h.state,
                h.step,
                h.status,
                h.service.as_deref(),
                h.actor.as_deref(),
                h.detail.as_deref(),
            )
        })
        .collect();
    use HistoryKind::*;
    let exporter = Some("exporter");
    let export = Some(Step::Export);
    assert_eq!(
        seen[1..],
        [
            (
                Event,
                None,
                export,
                Some(StepStatus::Started),
                exporter,
                None,
                None
            ),
            (
                Transition,
                Some(RunState::Exporting),
                export,
                Some(StepStatus::Started),
                exporter,
                exporter,
                None
            ),
            (
                Event,
                None,
                export,
                Some(StepStatus::Failed),
                exporter,
                None,
                None
            ),
            (
                Transition,
                Some(RunState::Failed),
                export,
                Some(StepStatus::Failed),
                exporter,
                exporter,
                Some("export failed (reported by exporter)")
            ),
        ]
    );
    assert_eq!(seen[0].0, Transition);
    assert_eq!(seen[0].1, Some(RunState::Requested));
    assert_eq!(
        store.get_run(run).await.unwrap().unwrap().reason.as_deref(),
        Some("export failed (reported by exporter)")
    );
    // Five entries, three rows: the request and the two folded ones.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&fx.url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM run_history WHERE run_id = $1")
        .bind(run.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 3);
    pool.close().await;
}

async fn concurrent_replicas_apply_events_exactly_once(fx: &Fixture) {
    const RUNS: usize = 4;
    const DELIVERIES: usize = 3;
    let replicas = [fx.store.clone(), fx.replica().await];
    let mut runs = vec![];
    let mut tasks = vec![];
    for _ in 0..RUNS {
        let (run, _) = start_run(&fx.store).await;
        runs.push(run);
        // Every event delivered several times, to both replicas at once,
        // newest first so out-of-order arrival races as well.
        for ev in happy_events(run).into_iter().rev() {
            for delivery in 0..DELIVERIES {
                let store = replicas[delivery % 2].clone();
                let ev = ev.clone();
                tasks.push(tokio::spawn(async move { store.apply_event(&ev).await }));
            }
        }
    }
    let results: Vec<Applied> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let duplicates = results.iter().filter(|a| **a == Applied::Duplicate).count();
    assert_eq!(duplicates, RUNS * 6 * (DELIVERIES - 1));
    for run in runs {
        assert_eq!(state_of(&fx.store, run).await, RunState::Succeeded);
        let moves = transitions(&fx.store, run).await;
        assert_eq!(
            moves.iter().filter(|s| **s == RunState::Succeeded).count(),
            1,
            "{moves:?}"
        );
        assert!(
            moves.windows(2).all(|w| w[0].rank() < w[1].rank()),
            "{moves:?}"
        );
        let history = fx.store.run_history(run).await.unwrap();
        let events = history.iter().filter(|h| h.kind == HistoryKind::Event);
        assert_eq!(events.count(), 6);
    }
}

async fn unknown_run_and_wrong_kind_are_refused(fx: &Fixture) {
    let store = &fx.store;
    let stray = event(
        Uuid::now_v7(),
        Some(Step::Export),
        StepStatus::Started,
        None,
    );
    assert_eq!(
        store.apply_event(&stray).await.unwrap(),
        Applied::UnknownRun
    );
    assert_eq!(store.get_run(stray.run_id).await.unwrap(), None);

    let (run, command) = start_run(store).await;
    let err = store.apply_event(&command).await.unwrap_err();
    assert!(err.to_string().contains("`export`"), "{err}");
    assert_eq!(transitions(store, run).await, [RunState::Requested]);
}

async fn list_runs_newest_first(fx: &Fixture) {
    let store = &fx.store;
    assert!(store.list_runs(10).await.unwrap().is_empty());
    let mut ids = vec![];
    for _ in 0..3 {
        ids.push(start_run(store).await.0);
        // Distinct creation times without relying on uuid order.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let listed: Vec<Uuid> = store
        .list_runs(2)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, [ids[2], ids[1]]);
    assert_eq!(store.list_runs(100).await.unwrap().len(), 3);
}

async fn reconnecting_reapplies_no_migration_and_keeps_data(fx: &Fixture) {
    let (run, _) = start_run(&fx.store).await;
    let again = fx.replica().await;
    let third = fx.replica().await;
    assert_eq!(third.backend(), fx.store.backend());
    assert_eq!(state_of(&again, run).await, RunState::Requested);
    let ev = event(run, Some(Step::Export), StepStatus::Started, None);
    assert!(matches!(
        again.apply_event(&ev).await.unwrap(),
        Applied::Transitioned { .. }
    ));
    assert_eq!(third.apply_event(&ev).await.unwrap(), Applied::Duplicate);
    assert_eq!(state_of(&fx.store, run).await, RunState::Exporting);
}

async fn a_batch_of_several_runs_records_every_transition_in_order(fx: &Fixture) {
    let store = &fx.store;
    let (a, _) = start_run(store).await;
    let (b, _) = start_run(store).await;
    let (failing, _) = start_run(store).await;
    let stranger = Uuid::now_v7();
    // The runs' events interleaved, as they arrive on the event queue.
    let mut batch = vec![];
    for (ea, eb) in happy_events(a).into_iter().zip(happy_events(b)) {
        batch.push(ea);
        batch.push(eb);
    }
    batch.insert(
        3,
        event(failing, Some(Step::Export), StepStatus::Started, None),
    );
    batch.insert(
        7,
        event(
            failing,
            Some(Step::Export),
            StepStatus::Failed,
            Some("boom"),
        ),
    );
    batch.insert(
        9,
        event(stranger, Some(Step::Export), StepStatus::Started, None),
    );
    batch.push(event(
        failing,
        Some(Step::Validate),
        StepStatus::Started,
        None,
    ));
    let applied = store.apply_events(&batch).await.unwrap();
    assert_eq!(applied.len(), batch.len());

    use RunState::*;
    let t = |from, to| Applied::Transitioned { from, to };
    let of = |run: Uuid| -> Vec<Applied> {
        batch
            .iter()
            .zip(&applied)
            .filter(|(e, _)| e.run_id == run)
            .map(|(_, a)| *a)
            .collect()
    };
    let happy = [
        t(Requested, Exporting),
        t(Exporting, Validating),
        Applied::Recorded,
        t(Validating, Importing),
        Applied::Recorded,
        t(Importing, Succeeded),
    ];
    assert_eq!(of(a), happy);
    assert_eq!(of(b), happy);
    assert_eq!(
        of(failing),
        [
            t(Requested, Exporting),
            t(Exporting, Failed),
            Applied::Recorded
        ]
    );
    assert_eq!(of(stranger), [Applied::UnknownRun]);
    for run in [a, b] {
        assert_eq!(
            transitions(store, run).await,
            [Requested, Exporting, Validating, Importing, Succeeded]
        );
        let history = store.run_history(run).await.unwrap();
        assert_eq!(
            history
                .iter()
                .filter(|h| h.kind == HistoryKind::Event)
                .count(),
            6
        );
        let done = store.get_run(run).await.unwrap().unwrap();
        assert_eq!((done.state, done.reason), (Succeeded, None));
    }
    assert_eq!(
        transitions(store, failing).await,
        [Requested, Exporting, Failed]
    );
    let failed = store.get_run(failing).await.unwrap().unwrap();
    assert_eq!(
        (failed.state, failed.reason.as_deref()),
        (Failed, Some("boom"))
    );
    assert!(store.run_history(stranger).await.unwrap().is_empty());
    assert!(store.apply_events(&[]).await.unwrap().is_empty());
}

async fn duplicates_within_and_across_batches_are_recorded_once(fx: &Fixture) {
    let store = &fx.store;
    let (run, _) = start_run(store).await;
    let events = happy_events(run);
    let mut redelivered = events[0].clone();
    redelivered.attempt = 2;
    let first = [
        events[0].clone(),
        events[1].clone(),
        redelivered,
        events[1].clone(),
    ];
    let applied = store.apply_events(&first).await.unwrap();
    use RunState::*;
    assert_eq!(
        applied,
        [
            Applied::Transitioned {
                from: Requested,
                to: Exporting
            },
            Applied::Transitioned {
                from: Exporting,
                to: Validating
            },
            Applied::Duplicate,
            Applied::Duplicate,
        ]
    );
    // The next batch repeats the first two events, then goes on.
    let applied = store.apply_events(&events).await.unwrap();
    assert_eq!(
        applied,
        [
            Applied::Duplicate,
            Applied::Duplicate,
            Applied::Recorded,
            Applied::Transitioned {
                from: Validating,
                to: Importing
            },
            Applied::Recorded,
            Applied::Transitioned {
                from: Importing,
                to: Succeeded
            },
        ]
    );
    assert_eq!(
        store.apply_events(&events).await.unwrap(),
        [Applied::Duplicate; 6]
    );
    assert_eq!(
        store.apply_event(&events[5]).await.unwrap(),
        Applied::Duplicate
    );
    let history = store.run_history(run).await.unwrap();
    assert_eq!(
        history
            .iter()
            .filter(|h| h.kind == HistoryKind::Event)
            .count(),
        6
    );
    assert_eq!(
        transitions(store, run).await,
        [Requested, Exporting, Validating, Importing, Succeeded]
    );
}

async fn a_batch_with_a_command_writes_nothing(fx: &Fixture) {
    let store = &fx.store;
    let (run, command) = start_run(store).await;
    let events = happy_events(run);
    let err = store
        .apply_events(&[events[0].clone(), command, events[1].clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotAnEvent { kind: "export" }),
        "{err}"
    );
    assert_eq!(transitions(store, run).await, [RunState::Requested]);
    assert_eq!(store.run_history(run).await.unwrap().len(), 1);
}

async fn concurrent_batches_from_two_replicas_never_double_transition(fx: &Fixture) {
    const RUNS: usize = 6;
    const BATCHES: usize = 8;
    let replicas = [fx.store.clone(), fx.replica().await];
    let mut runs = vec![];
    let mut all = vec![];
    for _ in 0..RUNS {
        let (run, _) = start_run(&fx.store).await;
        runs.push(run);
        all.extend(happy_events(run));
    }
    // Each batch holds every event, rotated, so batches overlap in runs and
    // messages and lock the same rows in different arrival orders.
    let mut tasks = vec![];
    for i in 0..BATCHES {
        let store = replicas[i % 2].clone();
        let mut batch = all.clone();
        batch.rotate_left(i * 5 % all.len());
        if i % 3 == 0 {
            batch.reverse();
        }
        tasks.push(tokio::spawn(
            async move { store.apply_events(&batch).await },
        ));
    }
    let mut applied = vec![];
    for task in futures::future::join_all(tasks).await {
        applied.extend(task.unwrap().unwrap());
    }
    let fresh = applied.iter().filter(|a| **a != Applied::Duplicate).count();
    assert_eq!(fresh, RUNS * 6, "each event is recorded exactly once");
    for run in runs {
        assert_eq!(state_of(&fx.store, run).await, RunState::Succeeded);
        let moves = transitions(&fx.store, run).await;
        assert!(
            moves.windows(2).all(|w| w[0].rank() < w[1].rank()),
            "{moves:?}"
        );
        assert_eq!(moves.last(), Some(&RunState::Succeeded), "{moves:?}");
        let history = fx.store.run_history(run).await.unwrap();
        assert_eq!(
            history
                .iter()
                .filter(|h| h.kind == HistoryKind::Event)
                .count(),
            6
        );
    }
}

#[tokio::test]
async fn in_memory_sqlite_keeps_its_data_across_calls() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    let (run, _) = start_run(&store).await;
    for ev in happy_events(run) {
        store.apply_event(&ev).await.unwrap();
    }
    assert_eq!(state_of(&store, run).await, RunState::Succeeded);
    assert_eq!(
        store
            .claim_outbox(5, Duration::from_secs(1))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn bad_urls_get_clear_errors() {
    let err = Store::connect("mysql://root@localhost/slipway")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must start with"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    // mode=ro on a missing file: cannot open.
    let url = format!(
        "sqlite://{}?mode=ro",
        dir.path().join("missing.db").display()
    );
    let err = Store::connect(&url).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Connect {
                backend: Backend::Sqlite,
                ..
            }
        ),
        "{err}"
    );
}

fn validated(run: Uuid, version: &str, verdict: &str) -> Envelope {
    let artifact = slipway_messages::ArtifactRef {
        managed_sha256: "a".repeat(64),
        unmanaged_sha256: "b".repeat(64),
        version: version.into(),
        managed_bytes: 42,
    };
    let report: slipway_messages::ValidationReport = serde_json::from_value(
        serde_json::json!({ "verdict": verdict, "artifact_version": version }),
    )
    .unwrap();
    let mut envelope = event(run, Some(Step::Validate), StepStatus::Succeeded, None);
    if let Message::RunEvent(event) = &mut envelope.message {
        event.outcome = Some(slipway_messages::StepOutcome::Validated { artifact, report });
    }
    envelope
}

/// A validation's artifact and report are kept on the run in the batch's
/// one update; a late validation is kept too but moves nothing (its
/// `updated_at` stays).
async fn a_validation_is_kept_on_the_run_whether_or_not_it_moves_it(fx: &Fixture) {
    let store = &fx.store;
    let (id, _) = start_run(store).await;
    let (other, _) = start_run(store).await;
    let batch = [
        event(id, Some(Step::Export), StepStatus::Succeeded, None),
        validated(id, "1.0.0.2", "passed"),
        event(other, Some(Step::Export), StepStatus::Succeeded, None),
    ];
    store.apply_events(&batch).await.unwrap();
    let run = store.get_run(id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Importing);
    assert_eq!(run.artifact.as_ref().unwrap().version, "1.0.0.2");
    assert_eq!(
        run.validation.as_ref().unwrap().verdict,
        slipway_messages::Verdict::Passed
    );
    let untouched = store.get_run(other).await.unwrap().unwrap();
    assert_eq!(untouched.state, RunState::Validating);
    assert_eq!(untouched.artifact, None, "no validation, no artifact");
    assert_eq!(untouched.validation, None);

    // Imported; then a stale validation arrives (a redelivered command).
    store
        .apply_events(&[event(id, Some(Step::Import), StepStatus::Succeeded, None)])
        .await
        .unwrap();
    let done = store.get_run(id).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .apply_events(&[validated(id, "1.0.0.3", "needs_settings")])
        .await
        .unwrap();
    let after = store.get_run(id).await.unwrap().unwrap();
    assert_eq!(after.state, RunState::Succeeded);
    assert_eq!(after.updated_at, done.updated_at, "nothing moved");
    assert_eq!(
        after.artifact.unwrap().version,
        "1.0.0.3",
        "what was validated is kept"
    );
    assert_eq!(
        after.validation.unwrap().verdict,
        slipway_messages::Verdict::NeedsSettings
    );
}
