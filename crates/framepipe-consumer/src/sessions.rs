//! The consumer's session table (SPEC §10.8): each session's position, and which connection serves
//! it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use framepipe_codec::session::{Hello, SessionId};
use framepipe_proto::consumer::SessionStart;

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
        handled: u64,
        now: Instant,
        store: Option<Arc<dyn SessionStore>>,
    ) -> Self {
        Slot {
            id,
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
        store.commit(self.id, next)?;
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

/// Why a hello was refused.
#[derive(Debug)]
pub(crate) struct Full {
    pub(crate) max_sessions: usize,
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
    /// to stop. `Err` if the table is full of sessions that all have a connection.
    pub(crate) fn open(&self, hello: &Hello, conn: u64) -> Result<Opened, Full> {
        let now = Instant::now();
        let mut slots = self.lock();
        slots.retain(|_, s| s.idle().is_none_or(|t| now.duration_since(t) < self.expiry));
        let known = slots.contains_key(&hello.session);
        if !known && slots.len() >= self.max_sessions {
            let oldest = slots
                .iter()
                .filter_map(|(id, s)| s.idle().map(|t| (t, *id)))
                .min();
            match oldest {
                Some((_, id)) => {
                    slots.remove(&id);
                }
                None => {
                    return Err(Full {
                        max_sessions: self.max_sessions,
                    })
                }
            }
        }
        let slot = slots
            .entry(hello.session)
            .or_insert_with(|| {
                Arc::new(Slot::new(
                    hello.session,
                    hello.next,
                    now,
                    self.store.clone(),
                ))
            })
            .clone();
        drop(slots);
        *slot.idle() = None;
        slot.holder.send_replace(conn);
        Ok(Opened { slot, known })
    }

    /// Waits until the connection that served the session before has finished, and takes its
    /// place. Where the session resumes: the handled position, or the producer's own where it is
    /// ahead (a session this table forgot, SPEC §10.4.2).
    pub(crate) async fn lease(
        opened: Opened,
        conn: u64,
        hello: &Hello,
    ) -> std::io::Result<(Lease, SessionStart)> {
        let slot = opened.slot;
        let permit = slot
            .lease
            .clone()
            .acquire_owned()
            .await
            .expect("the lease semaphore is never closed");
        if let (false, Some(store)) = (opened.known, slot.store.clone()) {
            // A session this table does not know: where the store says it is (SPEC §10.4.2).
            let id = hello.session;
            let loaded = tokio::task::spawn_blocking(move || store.load(id))
                .await
                .map_err(std::io::Error::other)??;
            if let Some(next) = loaded {
                slot.handled.fetch_max(next, Ordering::AcqRel);
                slot.committed.fetch_max(next, Ordering::AcqRel);
            }
        }
        let handled = slot.handled().max(hello.next);
        slot.handled.fetch_max(handled, Ordering::AcqRel);
        let start = SessionStart {
            next: slot.ack_position().clamp(hello.next, handled),
            handled,
        };
        let lease = Lease {
            slot,
            _permit: permit,
            conn,
        };
        Ok((lease, start))
    }

    /// Sessions remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use framepipe_codec::session::Pacing;

    fn hello(id: u128, next: u64) -> Hello {
        Hello {
            version: 1,
            session: SessionId::from_u128(id),
            next,
            max_frame_length: 1024,
            pacing: Pacing::default(),
        }
    }

    #[test]
    fn at_the_bound_the_longest_idle_session_goes_and_a_full_table_of_busy_ones_refuses() {
        let table = SessionTable::new(2, DEFAULT_SESSION_EXPIRY);
        let a = table.open(&hello(1, 0), 1).unwrap();
        let b = table.open(&hello(2, 0), 2).unwrap();
        assert!(!a.known && !b.known);
        // Both have connections: a third session is refused.
        assert_eq!(table.open(&hello(3, 0), 3).unwrap_err().max_sessions, 2);
        // Session 1's connection ends: its place can be taken.
        *a.slot.idle() = Some(Instant::now());
        let c = table.open(&hello(3, 0), 3).unwrap();
        assert!(!c.known);
        assert_eq!(table.len(), 2);
        assert!(table.open(&hello(2, 0), 4).unwrap().known);
        assert!(b.slot.superseded(2), "connection 4 took session 2 over");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_next_connection_waits_for_the_last_to_finish_and_resumes_at_what_was_handled() {
        let table = SessionTable::new(8, DEFAULT_SESSION_EXPIRY);
        let h = hello(7, 10);
        let first = table.open(&h, 1).unwrap();
        let (lease, start) = SessionTable::lease(first, 1, &h).await.unwrap();
        assert_eq!((start.next, start.handled), (10, 10));
        lease.slot.set_handled(14);
        let second = table.open(&h, 2).unwrap();
        assert!(second.known);
        let waiting = tokio::spawn(async move { SessionTable::lease(second, 2, &h).await });
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "the first connection still holds the session"
        );
        drop(lease);
        let (_lease, start) = waiting.await.unwrap().unwrap();
        assert_eq!(start.next, 15);
    }
}
