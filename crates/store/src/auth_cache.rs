//! Every request authenticates: an API-token lookup and a role lookup, two
//! round trips to the database before any work. On PostgreSQL each replica
//! keeps what it read, and forgets all of it the moment the database
//! announces (LISTEN/NOTIFY, from triggers, so every writer is covered) that
//! a token was revoked or changed or a role grant changed.
//!
//! The cache is only used while that announcement can be heard: until the
//! listener has subscribed, and from the moment its connection is lost until
//! it has subscribed again, every lookup goes to the database. A lookup that
//! raced a change is not kept (the generation moved on while it ran), so a
//! revocation takes effect on every replica within the time a notification
//! takes to arrive. Entries are also re-read after [`MAX_AGE`], in case.
//! SQLite (the embedded single process) reads the database every time.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::oneshot;

use crate::admin_model::{AccessRole, ApiToken, Principal};

/// The channel the triggers of migration 0009 notify.
pub(crate) const CHANNEL: &str = "slipway_auth";

/// The listener's connection, as `pg_stat_activity` shows it.
pub const LISTENER_APPLICATION_NAME: &str = "slipway-auth-listener";

/// Longest an entry is trusted even when nothing was announced.
const MAX_AGE: Duration = Duration::from_secs(60);

/// Entries per map; a full map is emptied rather than grown.
const MAX_ENTRIES: usize = 10_000;

/// Wait before listening again after the listener failed.
const RELISTEN_AFTER: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct Inner {
    /// Whether the listener is subscribed, so changes would be heard.
    listening: bool,
    /// Moves on at every change heard and every (un)subscription.
    generation: u64,
    tokens: HashMap<String, (ApiToken, Instant)>,
    roles: HashMap<Vec<Principal>, (BTreeSet<AccessRole>, Instant)>,
}

/// What one replica remembers of tokens and role grants.
#[derive(Debug)]
pub(crate) struct AuthCache {
    inner: Mutex<Inner>,
    /// Dropped with the cache, which stops its listener.
    _stop: oneshot::Sender<()>,
}

/// A read to the database that may be kept if nothing changed meanwhile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(Option<u64>);

impl AuthCache {
    /// A cache and the task that keeps it honest, listening on `url`.
    pub(crate) fn spawn(url: &str) -> Result<Arc<AuthCache>, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name(LISTENER_APPLICATION_NAME);
        let (stop, stopped) = oneshot::channel();
        let cache = Arc::new(AuthCache {
            inner: Mutex::new(Inner::default()),
            _stop: stop,
        });
        tokio::spawn(listen(options, Arc::downgrade(&cache), stopped));
        Ok(cache)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing here can leave the maps half-written: a poisoned lock
        // still holds usable (at worst, cleared) data.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token with this hash, if remembered and fresh.
    pub(crate) fn token(&self, hash: &str) -> Result<ApiToken, Ticket> {
        let inner = self.lock();
        match inner.tokens.get(hash) {
            Some((token, at)) if inner.listening && at.elapsed() < MAX_AGE => Ok(token.clone()),
            _ => Err(inner.ticket()),
        }
    }

    /// Remembers `token`, read under `ticket`, unless something changed.
    pub(crate) fn keep_token(&self, ticket: Ticket, hash: &str, token: &ApiToken) {
        let mut inner = self.lock();
        if inner.valid(ticket) {
            keep(&mut inner.tokens, hash.to_owned(), token.clone());
        }
    }

    /// Records a refreshed `last_used_at` in the remembered token.
    pub(crate) fn touch_token(&self, hash: &str, token: &ApiToken) {
        let mut inner = self.lock();
        if let Some((kept, _)) = inner.tokens.get_mut(hash)
            && kept.id == token.id
        {
            kept.last_used_at = token.last_used_at;
        }
    }

    /// The roles of these principals, if remembered and fresh.
    pub(crate) fn roles(&self, principals: &[Principal]) -> Result<BTreeSet<AccessRole>, Ticket> {
        let inner = self.lock();
        match inner.roles.get(principals) {
            Some((roles, at)) if inner.listening && at.elapsed() < MAX_AGE => Ok(roles.clone()),
            _ => Err(inner.ticket()),
        }
    }

    /// Remembers `roles`, read under `ticket`, unless something changed.
    pub(crate) fn keep_roles(
        &self,
        ticket: Ticket,
        principals: &[Principal],
        roles: &BTreeSet<AccessRole>,
    ) {
        let mut inner = self.lock();
        if inner.valid(ticket) {
            keep(&mut inner.roles, principals.to_vec(), roles.clone());
        }
    }

    /// Forgets everything after this replica changed a token or a grant
    /// itself: its own next request must not wait for the announcement.
    pub(crate) fn changed(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.tokens.clear();
        inner.roles.clear();
    }

    /// Forgets everything, and whether it may remember from now on.
    fn reset(&self, listening: bool) {
        let mut inner = self.lock();
        inner.listening = listening;
        inner.generation += 1;
        inner.tokens.clear();
        inner.roles.clear();
    }
}

/// Inserts into a map of [`Inner`], emptying it first when full.
fn keep<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, (V, Instant)>, key: K, value: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, (value, Instant::now()));
}

impl Inner {
    fn ticket(&self) -> Ticket {
        Ticket(self.listening.then_some(self.generation))
    }

    fn valid(&self, ticket: Ticket) -> bool {
        self.listening && ticket.0 == Some(self.generation)
    }
}

/// Keeps `cache` subscribed to [`CHANNEL`], emptying it at each change and
/// whenever the subscription is lost; ends when the cache is dropped.
async fn listen(
    options: PgConnectOptions,
    cache: Weak<AuthCache>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let subscribed = tokio::select! {
            _ = &mut stopped => return,
            s = subscribe(&options) => s,
        };
        let mut listener = match subscribed {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for token and role changes; authenticating from the database until it can");
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tokio::time::sleep(RELISTEN_AFTER) => continue,
                }
            }
        };
        let Some(c) = cache.upgrade() else { return };
        c.reset(true);
        drop(c);
        loop {
            let next = tokio::select! {
                _ = &mut stopped => return,
                n = listener.try_recv() => n,
            };
            let Some(c) = cache.upgrade() else { return };
            match next {
                Ok(Some(_)) => c.reset(true),
                Ok(None) | Err(_) => {
                    // Changes made now would go unheard.
                    c.reset(false);
                    tracing::warn!(
                        "lost the connection that hears token and role changes; authenticating from the database until it is back"
                    );
                    break;
                }
            }
        }
    }
}

async fn subscribe(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // Reconnecting silently would lose changes made meanwhile; `listen`
    // starts over (and empties the cache) instead.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
