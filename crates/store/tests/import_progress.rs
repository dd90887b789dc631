//! A run's import progress as the importer's events record it, in batches,
//! on both backends: a fresh PostgreSQL database and a SQLite file.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use slipway_messages::{
    Deployment, Envelope, ExportCommand, Message, RunEvent, Step, StepOutcome, StepStatus,
};
use slipway_store::{NewRun, RunState, Store};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_import_progress_is_counted_and_kept() {
    let db = slipway_testkit::pg::fresh_database().await.unwrap();
    let store = Store::connect(db.url()).await.unwrap();
    import_progress_is_counted_and_kept(&store).await;
    drop(store);
    db.drop_db().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_import_progress_is_counted_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("slipway.db").display()
    );
    let store = Store::connect(&url).await.unwrap();
    import_progress_is_counted_and_kept(&store).await;
    // Kept across a reconnect: it is in the database.
    drop(store);
    let again = Store::connect(&url).await.unwrap();
    let runs = again.list_runs(10).await.unwrap();
    assert_eq!(runs[0].import_progress.as_ref().unwrap().polls, 5);
}

fn import_event(run: Uuid, status: StepStatus, percent: Option<Option<f64>>) -> Envelope {
    Envelope::new(
        run,
        Message::RunEvent(RunEvent {
            step: Some(Step::Import),
            status,
            service: "importer".into(),
            instance: Some("importer-host:1".into()),
            detail: None,
            outcome: percent.map(|percent| StepOutcome::ImportProgress {
                async_operation_id: Uuid::nil(),
                percent,
            }),
        }),
    )
}

async fn import_progress_is_counted_and_kept(store: &Store) {
    let id = Uuid::now_v7();
    let deployment = Deployment::between("Contoso", "dev", "test");
    let command = Envelope::new(
        id,
        Message::Export(ExportCommand {
            deployment: deployment.clone(),
        }),
    );
    let new = NewRun {
        id,
        deployment,
        requested_by: "maker@contoso.com".into(),
        gates: Default::default(),
        artifact: None,
    };
    store
        .create_run(&new, &command, &BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(
        store.get_run(id).await.unwrap().unwrap().import_progress,
        None
    );

    // One batch: the start, then three reports, the last without a percentage.
    store
        .apply_events(&[
            import_event(id, StepStatus::Started, None),
            import_event(id, StepStatus::Started, Some(None)),
            import_event(id, StepStatus::Started, Some(Some(40.0))),
            import_event(id, StepStatus::Started, Some(None)),
        ])
        .await
        .unwrap();
    let run = store.get_run(id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Importing);
    let progress = run.import_progress.unwrap();
    assert_eq!((progress.percent, progress.polls), (Some(40.0), 3));

    // The next batches add to it; odd numbers are kept within 0..=100.
    store
        .apply_events(&[import_event(id, StepStatus::Started, Some(Some(140.0)))])
        .await
        .unwrap();
    let progress = store.get_run(id).await.unwrap().unwrap().import_progress;
    assert_eq!(progress.unwrap().percent, Some(100.0));
    store
        .apply_events(&[
            import_event(id, StepStatus::Started, Some(Some(f64::NAN))),
            import_event(id, StepStatus::Succeeded, None),
        ])
        .await
        .unwrap();
    let run = store.get_run(id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Succeeded);
    let done = run.import_progress.unwrap();
    assert_eq!((done.percent, done.polls), (Some(100.0), 5));

    // Over: a late report changes nothing.
    store
        .apply_events(&[import_event(id, StepStatus::Started, Some(Some(5.0)))])
        .await
        .unwrap();
    let after = store.get_run(id).await.unwrap().unwrap().import_progress;
    assert_eq!(after, Some(done));
}
