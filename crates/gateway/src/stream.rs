//! Following a run live: `GET /api/v1/deployments/{id}/stream`, server-sent
//! events, so a client renders the steps and the import's progress without
//! polling other routes.
//!
//! Events, in order:
//! - `run`: the [`RunView`] at once, then again whenever it changes;
//! - `history`: each line of the run's history (the same objects as
//!   `GET /api/v1/deployments/{id}/events`, plus `index`, their position,
//!   which is also the SSE `id`), the ones so far at once, then as they come;
//! - `end`: `{id, state, reason}` once the run is succeeded, failed or
//!   canceled; the stream closes after it.
//!
//! A stream wakes as soon as this replica changes the run (events applied,
//! a gate decided, settings supplied, a cancel: [`Gateway::run_changed`])
//! and reads the store every [`POLL`] as well, for changes other replicas
//! make. A client that reconnects with `Last-Event-ID: N` gets the history
//! from index N + 1 on (and the current `run` at once, as always).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use slipway_store::StoreError;
use tokio::sync::broadcast::{self, error::RecvError};
use uuid::Uuid;

use crate::Gateway;
use crate::api::{RunView, visible_run};
use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};

/// How often a stream reads the store when nothing woke it.
pub const POLL: Duration = Duration::from_secs(2);
/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Follows a run: `run` at once and on every change, `history` lines as
/// they come, `end` when it is over. Same visibility as
/// `GET /api/v1/deployments/{id}`.
#[utoipa::path(get, path = "/api/v1/deployments/{id}/stream", tag = "deployments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "run id"),
           ("Last-Event-ID" = Option<u64>, Header, description = "resume: send history lines after this index only")),
    responses((status = 200, content_type = "text/event-stream",
               description = "Server-sent events. `event: run`, data: the RunView JSON, sent at once and on every change. `event: history`, `id: <index>`, data: a history line as in GET /api/v1/deployments/{id}/events plus `index` (0-based), each line once, in order. `event: end`, data: `{\"id\", \"state\", \"reason\"}`, when the run is succeeded, failed or canceled; the stream then closes. Comments (`:`) keep an idle stream open.",
               body = String),
              (status = 404, description = "no such deployment visible to the caller", body = ErrorBody)))]
pub async fn follow_deployment(
    State(gw): State<Gateway>,
    caller: Caller,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    // Subscribed before the first read, so no change in between is missed.
    let changes = gw.run_changes.subscribe();
    visible_run(&gw, &caller, id).await?;
    let history_sent = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |last| last.saturating_add(1));
    let follow = Follow {
        gw,
        id,
        changes: Some(changes),
        last_run: None,
        history_sent,
        pending: VecDeque::new(),
        started: false,
        ended: false,
    };
    let sse = Sse::new(events(follow)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    // nginx and its kin buffer responses unless told not to.
    Ok(([(HeaderName::from_static("x-accel-buffering"), "no")], sse))
}

fn events(follow: Follow) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(follow, |mut follow| async move {
        let event = follow.next_event().await?;
        Some((Ok(event), follow))
    })
}

/// One client following one run.
struct Follow {
    gw: Gateway,
    id: Uuid,
    /// `None` once the channel closed: polling only.
    changes: Option<broadcast::Receiver<Uuid>>,
    /// The JSON of the last `run` event sent.
    last_run: Option<String>,
    /// History lines sent (or skipped on resume).
    history_sent: usize,
    pending: VecDeque<Event>,
    started: bool,
    ended: bool,
}

impl Follow {
    /// The next event to send; `None` ends the stream (the run is over, or
    /// the gateway is stopping).
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            if self.started && !self.wait().await {
                return None;
            }
            self.started = true;
            if let Err(err) = self.refresh().await {
                // Tried again at the next wake; the client keeps its stream.
                tracing::warn!(run_id = %self.id, error = %err, "cannot read the run for its stream");
            }
        }
    }

    /// Waits until this run changed here, or for [`POLL`]; false when the
    /// gateway is stopping.
    async fn wait(&mut self) -> bool {
        let poll = tokio::time::sleep(POLL);
        tokio::pin!(poll);
        loop {
            let Some(changes) = self.changes.as_mut() else {
                tokio::select! {
                    () = self.gw.shutdown.cancelled() => return false,
                    () = &mut poll => return true,
                }
            };
            tokio::select! {
                () = self.gw.shutdown.cancelled() => return false,
                () = &mut poll => return true,
                changed = changes.recv() => match changed {
                    Ok(id) if id == self.id => return true,
                    Ok(_) => {}
                    // Missed some: this run may be among them.
                    Err(RecvError::Lagged(_)) => return true,
                    Err(RecvError::Closed) => self.changes = None,
                },
            }
        }
    }

    /// Reads the run and its history and queues what the client has not seen.
    async fn refresh(&mut self) -> Result<(), StoreError> {
        let Some(run) = self.gw.store.get_run(self.id).await? else {
            // Runs are never deleted; end rather than follow nothing.
            self.ended = true;
            return Ok(());
        };
        // Read after the run: holds at least every line up to its state.
        let history = self.gw.store.run_history(self.id).await?;
        let (state, reason) = (run.state, run.reason.clone());
        let view = encode(&RunView::from(run))?;
        if self.last_run.as_deref() != Some(view.as_str()) {
            self.pending
                .push_back(Event::default().event("run").data(view.as_str()));
            self.last_run = Some(view);
        }
        for (index, entry) in history.iter().enumerate().skip(self.history_sent) {
            let mut line = serde_json::to_value(entry).map_err(encoding)?;
            line["index"] = index.into();
            self.pending.push_back(
                Event::default()
                    .event("history")
                    .id(index.to_string())
                    .data(encode(&line)?),
            );
        }
        self.history_sent = self.history_sent.max(history.len());
        if state.is_terminal() {
            let end = serde_json::json!({ "id": self.id, "state": state, "reason": reason });
            self.pending
                .push_back(Event::default().event("end").data(encode(&end)?));
            self.ended = true;
        }
        Ok(())
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(encoding)
}

fn encoding(source: serde_json::Error) -> StoreError {
    StoreError::Encode {
        what: "run stream event",
        source,
    }
}
