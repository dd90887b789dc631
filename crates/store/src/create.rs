//! Starting runs, with group commit.
//!
//! Every new run appends to the hash-chained audit log, whose appenders
//! serialize on the one `audit_head` row until they commit; one transaction
//! per submission would therefore make submissions wait for each other's
//! commit (a disk flush each), and throughput would be one commit at a time.
//! So concurrent submissions are written together: one committer task per
//! [`Store`] takes every request waiting, writes them in one transaction with
//! multi-row statements, and answers each. An idle gateway commits a lone
//! request at once (no waiting window, so no added latency); under load the
//! batches grow by themselves while the previous one commits.
//!
//! A batch that fails (a duplicate run id, say) is retried one request at a
//! time, so each request gets its own answer and one bad request never fails
//! the others.

use std::collections::BTreeMap;

use slipway_messages::Envelope;
use sqlx::{Any, AssertSqlSafe, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::audit::{self, AuditAction, NewAudit};
use crate::{
    NewHistory, NewRun, Release, Run, RunRow, RunState, Store, StoreError, insert_history,
    run_columns, run_from_row, to_json,
};

/// Requests queued for the committer before submitters wait to enqueue.
const QUEUE: usize = 1024;
/// Most runs written by one transaction.
const MAX_BATCH_RUNS: usize = 256;
/// Runs per multi-row statement (11 parameters a row for `runs`, well under
/// both databases' limit on bind parameters). Batches are cut into power-of-
/// two chunks up to this size, so each statement has at most a handful of
/// shapes and stays in the connection's prepared-statement cache.
const ROW_CHUNK: usize = 64;

/// One submission waiting for the committer.
pub(crate) struct Request {
    runs: Vec<(NewRun, Envelope)>,
    trace_headers: BTreeMap<String, String>,
    publish: Publish,
    reply: oneshot::Sender<Result<Started, StoreError>>,
}

/// Who publishes the first commands of new runs.
#[derive(Debug, Clone, Copy)]
pub enum Publish {
    /// The outbox relay, as soon as it is woken.
    ByRelay,
    /// The caller, at once after the commit: the rows are written leased
    /// for this long (ms), and the relay takes them only if the lease runs
    /// out first (the caller crashed or could not publish).
    ByCaller { lease_ms: i64 },
}

/// Runs just started, and the first commands the caller publishes itself
/// ([`Publish::ByCaller`]; none with [`Publish::ByRelay`], nor for a run
/// held at a gate).
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub runs: Vec<Run>,
    /// Mark each with [`Store::mark_published`] once the broker confirmed.
    pub publish: Vec<crate::OutboxItem>,
}

/// A run to write: its first command, the trace headers to send it with,
/// and who publishes it.
type Entry<'a> = (
    &'a NewRun,
    &'a Envelope,
    &'a BTreeMap<String, String>,
    Publish,
);

/// The handle submitters send to; the task ends when every handle is gone.
pub(crate) type Committer = mpsc::Sender<Request>;

/// Start the committer of `store` (a store without a committer of its own:
/// it writes directly). Needs a Tokio runtime.
pub(crate) fn spawn(store: Store) -> Committer {
    let (sender, receiver) = mpsc::channel(QUEUE);
    tokio::spawn(commit_loop(store, receiver));
    sender
}

async fn commit_loop(store: Store, mut receiver: mpsc::Receiver<Request>) {
    while let Some(first) = receiver.recv().await {
        let mut runs = first.runs.len();
        let mut batch = vec![first];
        while runs < MAX_BATCH_RUNS {
            match receiver.try_recv() {
                Ok(next) => {
                    runs += next.runs.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        if batch.len() > 1 {
            let all: Vec<Entry<'_>> = batch
                .iter()
                .flat_map(|r| {
                    r.runs
                        .iter()
                        .map(|(n, e)| (n, e, &r.trace_headers, r.publish))
                })
                .collect();
            match store.write_runs(&all).await {
                Ok(started) => {
                    let mut runs = started.runs.into_iter();
                    let mut publish = started.publish;
                    for request in batch {
                        let mine: Vec<Run> = runs.by_ref().take(request.runs.len()).collect();
                        let (own, rest): (Vec<_>, Vec<_>) = publish.into_iter().partition(|item| {
                            request
                                .runs
                                .iter()
                                .any(|(n, _)| n.id == item.envelope.run_id)
                        });
                        publish = rest;
                        // A submitter that gave up (its request dropped) needs no answer.
                        let _ = request.reply.send(Ok(Started {
                            runs: mine,
                            publish: own,
                        }));
                    }
                    continue;
                }
                Err(err) => {
                    tracing::debug!(error = %err, requests = batch.len(), "group commit failed; writing its requests one by one");
                }
            }
        }
        for request in batch {
            let one: Vec<Entry<'_>> = request
                .runs
                .iter()
                .map(|(n, e)| (n, e, &request.trace_headers, request.publish))
                .collect();
            let result = store.write_runs(&one).await;
            let _ = request.reply.send(result);
        }
    }
}

impl Store {
    /// Start a run: in one transaction, insert it (in `Requested`, or
    /// `AwaitingPreExport` when its stage has a pre-export gate), its first
    /// history and audit rows (actor: the requester), and the outbox row
    /// that will publish `first_command` with `trace_headers` (held until
    /// the gate passes, if there is one). Nothing is written if any part
    /// fails.
    #[tracing::instrument(skip_all, fields(run_id = %new.id))]
    pub async fn create_run(
        &self,
        new: &NewRun,
        first_command: &Envelope,
        trace_headers: &BTreeMap<String, String>,
    ) -> Result<Run, StoreError> {
        self.create_runs(&[(new, first_command)], trace_headers)
            .await?
            .pop()
            .ok_or_else(|| StoreError::not_found("run", new.id))
    }

    /// Start several runs (a deployment fanned out to every target of a
    /// stage) as [`Store::create_run`] starts one, all in one transaction:
    /// either every run and its first command is written, or none is.
    /// Returns the runs in the order given, as created (read inside the
    /// writing transaction: once it commits, the relay may publish at once
    /// and the workers move the runs on). Concurrent calls share a
    /// transaction (group commit, see the module documentation).
    pub async fn create_runs(
        &self,
        runs: &[(&NewRun, &Envelope)],
        trace_headers: &BTreeMap<String, String>,
    ) -> Result<Vec<Run>, StoreError> {
        Ok(self
            .start_runs(runs, trace_headers, Publish::ByRelay)
            .await?
            .runs)
    }

    /// [`Store::create_runs`], choosing who publishes the first commands:
    /// a gateway publishes its own submissions right after the commit
    /// ([`Publish::ByCaller`]), which spares the relay a claim per batch.
    #[tracing::instrument(skip_all, fields(runs = runs.len()))]
    pub async fn start_runs(
        &self,
        runs: &[(&NewRun, &Envelope)],
        trace_headers: &BTreeMap<String, String>,
        publish: Publish,
    ) -> Result<Started, StoreError> {
        for (new, first_command) in runs {
            if first_command.run_id != new.id {
                return Err(StoreError::CommandRunMismatch {
                    run: new.id,
                    command_run: first_command.run_id,
                });
            }
        }
        let Some(committer) = &self.committer else {
            let all: Vec<_> = runs
                .iter()
                .map(|(n, e)| (*n, *e, trace_headers, publish))
                .collect();
            return self.write_runs(&all).await;
        };
        let (reply, answer) = oneshot::channel();
        let request = Request {
            runs: runs
                .iter()
                .map(|(n, e)| ((*n).clone(), (*e).clone()))
                .collect(),
            trace_headers: trace_headers.clone(),
            publish,
            reply,
        };
        let gone = || StoreError::corrupt("run creation", "the committer task has stopped");
        committer.send(request).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Write `runs` (each with its first command and trace headers) in one
    /// transaction and read them back inside it.
    async fn write_runs(&self, runs: &[Entry<'_>]) -> Result<Started, StoreError> {
        let now = crate::now_millis();
        let mut tx = self.begin_write().await?;
        let mut history = Vec::with_capacity(runs.len());
        let mut audits = Vec::with_capacity(runs.len());
        let mut rows = Vec::with_capacity(runs.len());
        let mut outbox = Vec::with_capacity(runs.len());
        let mut by_caller = Vec::new();
        for (new, first_command, trace_headers, publish) in runs {
            let row = RunInsert::of(new)?;
            let state = row.state;
            rows.push(row);
            let id = new.id.to_string();
            let mut audit = NewAudit::new(&new.requested_by, AuditAction::Transition, "run", &id)
                .after(&serde_json::json!({ "state": state }));
            audit.pipeline_id = new.deployment.pipeline_id.map(|p| p.to_string());
            audits.push(audit);
            let release = match publish {
                _ if new.gates.pre_export_gate => Release::Held,
                Publish::ByRelay => Release::Now,
                Publish::ByCaller { lease_ms } => {
                    by_caller.push((
                        first_command.message_id.to_string(),
                        *first_command,
                        *trace_headers,
                    ));
                    // The relay's claims skip a row until its lease ends.
                    Release::At(now.saturating_add(*lease_ms))
                }
            };
            outbox.push(crate::OutboxInsert::of(
                first_command,
                trace_headers,
                release,
            )?);
        }
        if let Err(err) = insert_runs(&mut tx, now, &rows).await {
            drop(tx);
            return Err(match err {
                StoreError::DuplicateRun(id) if id.is_nil() => self.duplicate_of(runs).await,
                err => err,
            });
        }
        for (row, (new, _, _, _)) in rows.iter().zip(runs) {
            history.push(NewHistory::transition(
                &row.id,
                row.state,
                &new.requested_by,
                None,
                None,
            ));
        }
        insert_history(&mut tx, self.backend, now, &history).await?;
        let outbox_ids: BTreeMap<String, i64> = crate::insert_outbox_rows(&mut tx, now, &outbox)
            .await?
            .into_iter()
            .map(|(id, message_id)| (message_id, id))
            .collect();
        let publish = by_caller
            .into_iter()
            .map(|(message_id, envelope, trace_headers)| {
                let id = outbox_ids.get(&message_id).copied().ok_or_else(|| {
                    StoreError::corrupt(
                        "outbox insert",
                        format!("no row came back for message {message_id}"),
                    )
                })?;
                Ok(crate::OutboxItem {
                    id,
                    envelope: envelope.clone(),
                    trace_headers: trace_headers.clone(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let created = fetch_runs(&mut tx, &ids).await?;
        // Last before the commit: the audit head stays locked until then.
        audit::append(&mut tx, self.backend, now, &audits).await?;
        tx.commit().await?;
        Ok(Started {
            runs: created,
            publish,
        })
    }
}

impl Store {
    /// Why a multi-row insert of `runs` hit the unique key: the first run
    /// whose id is taken, or given twice.
    async fn duplicate_of(&self, runs: &[Entry<'_>]) -> StoreError {
        let mut seen = std::collections::BTreeSet::new();
        for (new, _, _, _) in runs {
            if !seen.insert(new.id) {
                return StoreError::DuplicateRun(new.id);
            }
            match self.get_run(new.id).await {
                Ok(Some(_)) => return StoreError::DuplicateRun(new.id),
                Ok(None) => {}
                Err(err) => return err,
            }
        }
        StoreError::Conflict("a run id of this request is already taken".to_owned())
    }
}

/// A `runs` row about to be inserted, encoded.
struct RunInsert<'a> {
    id: String,
    state: RunState,
    deployment: String,
    gates: String,
    artifact: Option<String>,
    new: &'a NewRun,
}

impl<'a> RunInsert<'a> {
    fn of(new: &'a NewRun) -> Result<Self, StoreError> {
        Ok(RunInsert {
            id: new.id.to_string(),
            state: if new.gates.pre_export_gate {
                RunState::AwaitingPreExport
            } else {
                RunState::Requested
            },
            deployment: to_json("deployment", &new.deployment)?,
            gates: to_json("run gates", &new.gates)?,
            artifact: new
                .artifact
                .as_ref()
                .map(|a| to_json("artifact", a))
                .transpose()?,
            new,
        })
    }
}

/// The sizes a batch of `n` rows is cut into: powers of two, largest
/// first, none over [`ROW_CHUNK`].
pub(crate) fn chunk_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let size = if n >= ROW_CHUNK {
            ROW_CHUNK
        } else {
            1 << (usize::BITS - 1 - n.leading_zeros())
        };
        n -= size;
        Some(size)
    })
}

/// `rows` of `columns` placeholders each, numbered from `$first`:
/// `($1, $2), ($3, $4)`.
pub(crate) fn placeholders(rows: usize, columns: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&(first + row * columns + column).to_string());
        }
        out.push(')');
    }
    out
}

async fn insert_runs(
    tx: &mut Transaction<'static, Any>,
    now: i64,
    rows: &[RunInsert<'_>],
) -> Result<(), StoreError> {
    let mut rest = rows;
    for size in chunk_sizes(rows.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        // Only numbered placeholders are spliced in; the values are bound.
        let sql = format!(
            "INSERT INTO runs (id, state, deployment, requested_by, created_at, updated_at, \
               pipeline_id, stage_id, gates, artifact, solution_name) VALUES {}",
            placeholders(chunk.len(), 11, 1)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in chunk {
            let deployment = &row.new.deployment;
            query = query
                .bind(&row.id)
                .bind(row.state.as_str())
                .bind(&row.deployment)
                .bind(&row.new.requested_by)
                .bind(now)
                .bind(now)
                .bind(deployment.pipeline_id.map(|p| p.to_string()))
                .bind(deployment.stage_id.map(|s| s.to_string()))
                .bind(&row.gates)
                .bind(row.artifact.as_deref())
                .bind(&deployment.solution_name);
        }
        if let Err(err) = query.execute(&mut **tx).await {
            return Err(match err.as_database_error() {
                Some(db) if db.is_unique_violation() => match chunk {
                    [one] => StoreError::DuplicateRun(one.new.id),
                    // Which one: found by `write_runs` once this rolled back.
                    _ => StoreError::DuplicateRun(uuid::Uuid::nil()),
                },
                _ => err.into(),
            });
        }
    }
    Ok(())
}

/// The runs with these ids, in the order given, read through `tx`.
async fn fetch_runs(
    tx: &mut Transaction<'static, Any>,
    ids: &[&str],
) -> Result<Vec<Run>, StoreError> {
    let mut by_id: BTreeMap<String, Run> = BTreeMap::new();
    let mut rest = ids;
    for size in chunk_sizes(ids.len()) {
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        // Only numbered placeholders are spliced in; the ids are bound.
        let sql = format!(
            concat!("SELECT ", run_columns!(), " FROM runs WHERE id IN ({})"),
            list.join(", ")
        );
        let mut query = sqlx::query_as::<_, RunRow>(AssertSqlSafe(sql));
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let run = run_from_row(row)?;
            by_id.insert(run.id.to_string(), run);
        }
    }
    ids.iter()
        .map(|id| {
            by_id
                .remove(*id)
                .ok_or_else(|| StoreError::not_found("run", id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_few_statement_shapes() {
        assert_eq!(chunk_sizes(0).count(), 0);
        assert_eq!(chunk_sizes(1).collect::<Vec<_>>(), [1]);
        assert_eq!(chunk_sizes(7).collect::<Vec<_>>(), [4, 2, 1]);
        assert_eq!(chunk_sizes(64).collect::<Vec<_>>(), [64]);
        assert_eq!(chunk_sizes(130).collect::<Vec<_>>(), [64, 64, 2]);
        for n in 0..300 {
            assert_eq!(chunk_sizes(n).sum::<usize>(), n);
            assert!(chunk_sizes(n).all(|s| s.is_power_of_two() && s <= ROW_CHUNK));
        }
    }

    #[test]
    fn placeholders_number_rows_and_columns() {
        assert_eq!(placeholders(2, 2, 1), "($1, $2), ($3, $4)");
        assert_eq!(placeholders(1, 3, 2), "($2, $3, $4)");
    }
}
