//! The consumer's session table (SPEC §10.8): each session's position, and which connection serves
//! it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use framepipe_codec::session::{Hello, ResumeSecret, SessionId};
use framepipe_proto::consumer::SessionStart;

use crate::session_store::StoredSession;
use crate::SessionStore;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

/// Default most sessions remembered at once: 1,024 (SPEC §10.8).
pub const DEFAULT_MAX_SESSIONS: usize = 1024;
/// Default time a session without a connection is remembered: 10 minutes (SPEC §10.8).
pub const DEFAULT_SESSION_EXPIRY: Duration = Duration::from_secs(600);

/// One session: where it is, and the connection serving it.
#[derive(Debug)]
pub(crate) struct Slot {
    id: SessionId,
    /// The resume secret of the hello that began the session: every later hello must carry it
    /// (SPEC §10.4.5).
    secret: ResumeSecret,
    /// Every frame below this has been handled (the application side keeps it up to date).
    handled: AtomicU64,
    /// Every frame below this has been committed to the store (with a store only).
    committed: AtomicU64,
    /// The consumer's session store: acks then follow commits, not handling (SPEC §10.3).
    store: Option<Arc<dyn SessionStore>>,
    /// Wakes the serving connection's driver when `handled` moves.
    moved: Notify,
    /// The connection serving the session: a newer one's id tells the older to stop reading.
    holder: watch::Sender<u64>,
    /// Held by the connection serving the session until its application has finished with every
    /// frame it read, so the next connection's frames reach the handler after them.
    lease: Arc<Semaphore>,
    /// Since when no connection has served it (`None` while one does).
    idle_since: Mutex<Option<Instant>>,
}

impl Slot {
    fn new(
        id: SessionId,
        secret: ResumeSecret,
        handled: u64,
        now: Instant,
        store: Option<Arc<dyn SessionStore>>,
    ) -> Self {
        Slot {
            id,
            secret,
            handled: AtomicU64::new(handled),
            committed: AtomicU64::new(handled),
            store,
            moved: Notify::new(),
            holder: watch::Sender::new(0),
            lease: Arc::new(Semaphore::new(1)),
            idle_since: Mutex::new(Some(now)),
        }
    }

    /// Every frame below the returned number has been handled.
    pub(crate) fn handled(&self) -> u64 {
        self.handled.load(Ordering::Acquire)
    }

    /// The application has handled frame `seq`.
    pub(crate) fn set_handled(&self, seq: u64) {
        self.handled.fetch_max(seq + 1, Ordering::AcqRel);
        self.moved.notify_one();
    }

    /// What may be acknowledged: every frame below it was handled, and committed when there is a
    /// store (SPEC §10.3, §10.5).
    pub(crate) fn ack_position(&self) -> u64 {
        match self.store {
            Some(_) => self.committed.load(Ordering::Acquire),
            None => self.handled(),
        }
    }

    /// The session.
    pub(crate) fn id(&self) -> SessionId {
        self.id
    }

    /// Commits `next` to the store (blocking), then lets it be acknowledged.
    pub(crate) fn commit(&self, next: u64) -> std::io::Result<()> {
        let Some(store) = &self.store else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this consumer has no session store (Consumer::session_store)",
            ));
        };
        let stored = StoredSession {
            next,
            secret: self.secret,
        };
        store.commit(self.id, &stored)?;
        self.committed.fetch_max(next, Ordering::AcqRel);
        self.moved.notify_one();
        Ok(())
    }

    /// The session ended: its position is of no more use (blocking; errors are logged).
    pub(crate) fn forget(&self) {
        if let Some(store) = &self.store {
            if let Err(e) = store.forget(self.id) {
                tracing::warn!(session = %self.id, "the session store could not forget the session: {e}");
            }
        }
    }

    /// Waits until `handled` moves.
    pub(crate) async fn moved(&self) {
        self.moved.notified().await;
    }

    /// Whether `hello` may take this session over (SPEC §10.4.5): it carries the session's secret
    /// and resumes no later than what was handled (a hello never moves the position forward).
    fn admit(&self, hello: &Hello) -> Result<(), Refused> {
        if !hello.secret.is_some_and(|s| self.secret.matches(&s)) {
            return Err(Refused::Denied {
                sent: hello.secret.is_some(),
            });
        }
        let handled = self.handled();
        if hello.next > handled {
            return Err(Refused::Ahead {
                next: hello.next,
                handled,
            });
        }
        Ok(())
    }

    /// Whether connection `id` no longer serves the session.
    pub(crate) fn superseded(&self, id: u64) -> bool {
        *self.holder.borrow() != id
    }

    /// A receiver that changes when another connection takes the session over.
    pub(crate) fn watch_holder(&self) -> watch::Receiver<u64> {
        self.holder.subscribe()
    }

    fn idle(&self) -> MutexGuard<'_, Option<Instant>> {
        self.idle_since.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's hold on its session: dropping it lets the next connection of the session begin.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) slot: Arc<Slot>,
    _permit: OwnedSemaphorePermit,
    conn: u64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.slot.superseded(self.conn) {
            *self.slot.idle() = Some(Instant::now());
        }
    }
}

/// Why a hello was refused (SPEC §10.4.5, §10.8). The session, and the connection serving it, are
/// untouched by a refused hello.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The table is full of sessions that all have a connection.
    Full { max_sessions: usize },
    /// The hello did not carry the session's resume secret (`sent`: it carried another one).
    Denied { sent: bool },
    /// The hello resumes beyond what the consumer handled.
    Ahead { next: u64, handled: u64 },
    /// The session store failed to load the session's position.
    Store(std::io::Error),
    /// A newer connection of the session said hello while this one waited for its turn.
    Superseded,
}

impl Refused {
    /// The notice's code and message.
    pub(crate) fn explain(&self) -> (&'static str, String) {
        use framepipe_proto::codes;
        match self {
            Refused::Full { max_sessions } => (
                codes::SESSION_LIMIT,
                format!(
                    "the consumer's session table is full: {max_sessions} sessions, each with a \
                     connection; try again later"
                ),
            ),
            Refused::Denied { sent: false } => (
                codes::SESSION_DENIED,
                "the hello carries no resume secret: this consumer resumes a session only for the \
                 producer that began it (upgrade the producer)"
                    .to_owned(),
            ),
            Refused::Denied { sent: true } => (
                codes::SESSION_DENIED,
                "the hello's resume secret is not the session's: the session belongs to the \
                 producer that began it"
                    .to_owned(),
            ),
            Refused::Ahead { next, handled } => (
                "session_mismatch",
                format!(
                    "the hello resumes at frame {next}, but this consumer has handled only the \
                     frames below {handled}: a producer resumes at the oldest frame it retains, \
                     never later than what was acknowledged"
                ),
            ),
            Refused::Store(e) => (
                framepipe_proto::codes::SESSION_STORE,
                format!("the consumer's session store failed to load the session: {e}"),
            ),
            Refused::Superseded => (
                codes::SUPERSEDED,
                "another connection of this session said hello after this one and took the \
                 session over"
                    .to_owned(),
            ),
        }
    }
}

/// What [`SessionTable::open`] found.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) slot: Arc<Slot>,
    /// The session was known (a resume) rather than new here.
    pub(crate) known: bool,
}

/// The table (SPEC §10.8). Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct SessionTable {
    slots: Arc<Mutex<HashMap<SessionId, Arc<Slot>>>>,
    max_sessions: usize,
    expiry: Duration,
    store: Option<Arc<dyn SessionStore>>,
}

impl std::fmt::Debug for dyn SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionStore")
    }
}

impl SessionTable {
    pub(crate) fn new(max_sessions: usize, expiry: Duration) -> Self {
        SessionTable {
            slots: Arc::default(),
            max_sessions: max_sessions.max(1),
            expiry,
            store: None,
        }
    }

    /// Positions of sessions this table does not know are loaded from `store`, and acks follow
    /// its commits.
    pub(crate) fn set_store(&mut self, store: Arc<dyn SessionStore>) {
        self.store = Some(store);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connection `conn` says hello: the session's slot (made if new, taking the place of the
    /// longest idle one at the bound), now held by `conn`; the connection serving it before is told
    /// to stop. A hello for a known session must carry its secret and resume no later than what
    /// was handled; a refused hello changes nothing (SPEC §10.4.5, §10.8).
    pub(crate) fn open(&self, hello: &Hello, conn: u64) -> Result<Opened, Refused> {
        let now = Instant::now();
        let mut slots = self.lock();
        slots.retain(|_, s| s.idle().is_none_or(|t| now.duration_since(t) < self.expiry));
        if let Some(slot) = slots.get(&hello.session).cloned() {
            drop(slots);
            slot.admit(hello)?;
            *slot.idle() = None;
            slot.holder.send_replace(conn);
            return Ok(Opened { slot, known: true });
        }
        let Some(secret) = hello.secret else {
            return Err(Refused::Denied { sent: false });
        };
        if slots.len() >= self.max_sessions {
            let oldest = slots
                .iter()
                .filter_map(|(id, s)| s.idle().map(|t| (t, *id)))
                .min();
            let Some((_, id)) = oldest else {
                return Err(Refused::Full {
                    max_sessions: self.max_sessions,
                });
            };
            slots.remove(&id);
        }
        let slot = Arc::new(Slot::new(
            hello.session,
            secret,
            hello.next,
            now,
            self.store.clone(),
        ));
        slots.insert(hello.session, slot.clone());
        drop(slots);
        *slot.idle() = None;
        slot.holder.send_replace(conn);
        Ok(Opened { slot, known: false })
    }

    /// Waits until the connection that served the session before has finished, and takes its
    /// place; where the session resumes. A session this table did not know is loaded from the
    /// store, whose secret the hello must carry and whose position it must not pass (SPEC §10.3,
    /// §10.4.5); a refused session is taken out of the table again.
    pub(crate) async fn lease(
        &self,
        opened: Opened,
        conn: u64,
        hello: &Hello,
    ) -> Result<(Lease, SessionStart), Refused> {
        let slot = opened.slot;
        let permit = slot
            .lease
            .clone()
            .acquire_owned()
            .await
            .expect("the lease semaphore is never closed");
        let lease = Lease {
            slot: slot.clone(),
            _permit: permit,
            conn,
        };
        if slot.superseded(conn) {
            return Err(Refused::Superseded);
        }
        if let (false, Some(store)) = (opened.known, slot.store.clone()) {
            // A session this table does not know: where the store says it is (SPEC §10.4.2).
            if let Err(refused) = Self::load(&slot, store, hello).await {
                self.discard(&slot, conn);
                return Err(refused);
            }
        }
        let handled = slot.handled();
        let start = SessionStart {
            next: slot.ack_position().clamp(hello.next, handled),
            handled,
        };
        Ok((lease, start))
    }

    /// Loads a session the table did not know from the store into its new slot.
    async fn load(slot: &Slot, store: Arc<dyn SessionStore>, hello: &Hello) -> Result<(), Refused> {
        let id = hello.session;
        let loaded = tokio::task::spawn_blocking(move || store.load(id))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(Refused::Store)?;
        let Some(stored) = loaded else {
            return Ok(()); // never committed: a new session, at the producer's position
        };
        if !hello.secret.is_some_and(|s| stored.secret.matches(&s)) {
            return Err(Refused::Denied {
                sent: hello.secret.is_some(),
            });
        }
        if hello.next > stored.next {
            return Err(Refused::Ahead {
                next: hello.next,
                handled: stored.next,
            });
        }
        slot.handled.fetch_max(stored.next, Ordering::AcqRel);
        slot.committed.fetch_max(stored.next, Ordering::AcqRel);
        Ok(())
    }

    /// Takes `slot`, made for a hello that was then refused, out of the table, unless another
    /// connection holds it by now.
    fn discard(&self, slot: &Arc<Slot>, conn: u64) {
        let mut slots = self.lock();
        if slots.get(&slot.id).is_some_and(|s| Arc::ptr_eq(s, slot)) && !slot.superseded(conn) {
            slots.remove(&slot.id);
        }
    }

    /// Sessions remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests;
