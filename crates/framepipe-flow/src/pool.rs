//! A memory cap shared by many connections: bytes are reserved before they are read, and a reader
//! that cannot reserve waits instead of allocating (SPEC §7.6).
//!
//! Each connection holds a [`Reservation`] covering the bytes it has buffered. Before a read it grows
//! the reservation to cover what the read may bring in; the bytes of each frame then travel with the
//! frame (split off with [`Reservation::split`]) until the frame is dropped. The pool's total is
//! therefore the bytes buffered across all connections, and it never exceeds the limit.
//!
//! # Why readers cannot deadlock
//!
//! Growth comes in two kinds. A **required** growth ([`Reservation::grow_to`]) waits, first come
//! first served, until the pool has room; a reader asks for one only to complete the frame it is
//! reading (at most `max_frame_length` + 4 bytes in all). An **optional** growth
//! ([`Reservation::try_grow_keeping`], for reading ahead) is taken only if it leaves `reserve` bytes
//! free, and never waits. Optional bytes therefore never total more than `limit − reserve`, so once
//! every required reservation has completed its frame and been released, at least `reserve` bytes are
//! free, which is enough for any one waiting reader. A required reservation completes as long as its
//! peer sends (or the reader's frame deadline closes the connection) and its handler drains.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;

/// Bytes reserved from a [`MemoryPool`]; given back when dropped. Cheap to move; not `Clone`.
pub struct Reservation {
    pool: Arc<Inner>,
    bytes: usize,
}

/// A byte budget shared by many readers. Cheap to clone (all clones are the same pool).
#[derive(Clone)]
pub struct MemoryPool {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    free: Semaphore,
    limit: usize,
    reserve: usize,
    peak: AtomicUsize,
    waits: AtomicU64,
    wait_nanos: AtomicU64,
}

/// One reading of a [`MemoryPool`]. Serializes to JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PoolSnapshot {
    /// The pool's limit in bytes.
    pub limit: usize,
    /// Bytes reserved now.
    pub in_use: usize,
    /// Most bytes ever reserved at once (exact).
    pub peak: usize,
    /// Times a reader had to wait for room.
    pub waits: u64,
    /// Time readers spent waiting for room, summed, in milliseconds.
    pub wait_ms: u64,
}

impl MemoryPool {
    /// The largest limit a pool can have (Tokio's semaphore limit, `usize::MAX >> 3`).
    pub const MAX_LIMIT: usize = Semaphore::MAX_PERMITS;

    /// A pool of `limit` bytes that keeps `reserve` bytes out of reach of optional growth.
    ///
    /// # Panics
    /// If `reserve > limit` or `limit > MemoryPool::MAX_LIMIT`.
    pub fn new(limit: usize, reserve: usize) -> Self {
        assert!(reserve <= limit, "reserve {reserve} over limit {limit}");
        assert!(limit <= Self::MAX_LIMIT, "limit {limit} too large");
        MemoryPool {
            inner: Arc::new(Inner {
                free: Semaphore::new(limit),
                limit,
                reserve,
                peak: AtomicUsize::new(0),
                waits: AtomicU64::new(0),
                wait_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// An empty reservation on this pool.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            pool: self.inner.clone(),
            bytes: 0,
        }
    }

    /// A reservation of `bytes`, waiting, first come first served, until the pool has room; a wait
    /// is counted in [`PoolSnapshot::waits`] and [`PoolSnapshot::wait_ms`] like one of
    /// [`Reservation::grow_to`], which this is on a new, empty reservation.
    ///
    /// For a driver that waits for memory and hands the bytes to code that owns a connection's
    /// reservation, which takes them with [`Reservation::absorb`]. A required growth (see the module
    /// documentation): ask only for bytes that complete a frame.
    ///
    /// # Backpressure
    /// Waits while the pool has fewer than `bytes` free. Bytes given back meanwhile go to the first
    /// waiter until it has all it asked for (that is what keeps the order first come, first served),
    /// so a waiter holds part of its request while it waits; cancelling the wait gives all of it back.
    ///
    /// # Panics
    /// If `bytes` is over the pool's limit: that could never be granted.
    pub async fn acquire(&self, bytes: usize) -> Reservation {
        let mut reservation = self.reservation();
        reservation.grow_to(bytes).await;
        reservation
    }

    /// A reservation of `bytes` if the pool has that much free now, without waiting (required
    /// growth: it may use the reserve, as [`Reservation::grow_to`] does).
    pub fn try_acquire(&self, bytes: usize) -> Option<Reservation> {
        if bytes > self.inner.limit || !self.inner.take(bytes) {
            return None;
        }
        self.inner.note_peak();
        Some(Reservation {
            pool: self.inner.clone(),
            bytes,
        })
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> usize {
        self.inner.limit - self.inner.free.available_permits()
    }

    /// The pool's figures now (a few atomic loads).
    pub fn snapshot(&self) -> PoolSnapshot {
        let i = &self.inner;
        PoolSnapshot {
            limit: i.limit,
            in_use: self.in_use(),
            peak: i.peak.load(Relaxed),
            waits: i.waits.load(Relaxed),
            wait_ms: i.wait_nanos.load(Relaxed) / 1_000_000,
        }
    }
}

impl Inner {
    fn note_peak(&self) {
        let in_use = self.limit - self.free.available_permits();
        self.peak.fetch_max(in_use, Relaxed);
    }

    /// Takes `n` permits off the semaphore for good (they are given back by `release`).
    fn take(&self, n: usize) -> bool {
        let Ok(n32) = u32::try_from(n) else {
            return false;
        };
        match self.free.try_acquire_many(n32) {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.free.add_permits(n);
        }
    }
}

impl Reservation {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Grows the reservation to `bytes` (no-op if it holds that much), waiting, first come first
    /// served, until the pool has room. Returns how long it waited.
    ///
    /// # Panics
    /// If `bytes` is over the pool's limit: that could never be granted.
    pub async fn grow_to(&mut self, bytes: usize) -> Duration {
        if bytes <= self.bytes {
            return Duration::ZERO;
        }
        assert!(
            bytes <= self.pool.limit,
            "a reservation of {bytes} bytes can never fit a pool of {}",
            self.pool.limit
        );
        let mut want = bytes - self.bytes;
        if self.pool.take(want) {
            self.bytes = bytes;
            self.pool.note_peak();
            return Duration::ZERO;
        }
        let started = Instant::now();
        self.pool.waits.fetch_add(1, Relaxed);
        while want > 0 {
            let step = want.min(u32::MAX as usize);
            let permit = self
                .pool
                .free
                .acquire_many(step as u32)
                .await
                .expect("the pool's semaphore is never closed");
            permit.forget();
            self.bytes += step;
            want -= step;
        }
        self.pool.note_peak();
        let waited = started.elapsed();
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.pool.wait_nanos.fetch_add(nanos, Relaxed);
        waited
    }

    /// Grows the reservation to `bytes` only if that leaves at least the pool's `reserve` free, and
    /// without waiting. Returns whether it now holds `bytes`.
    pub fn try_grow_keeping(&mut self, bytes: usize) -> bool {
        if bytes <= self.bytes {
            return true;
        }
        let want = bytes - self.bytes;
        // Taking `want + reserve` and giving `reserve` back checks and takes in one step.
        let Some(with_reserve) = want.checked_add(self.pool.reserve) else {
            return false;
        };
        if !self.pool.take(with_reserve) {
            return false;
        }
        self.pool.release(self.pool.reserve);
        self.bytes = bytes;
        self.pool.note_peak();
        true
    }

    /// Gives back all but `bytes` (no-op if it holds no more than that).
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.pool.release(self.bytes - bytes);
            self.bytes = bytes;
        }
    }

    /// Moves `bytes` of this reservation into a new one (for a frame leaving the read buffer).
    ///
    /// # Panics
    /// If it holds fewer than `bytes`.
    pub fn split(&mut self, bytes: usize) -> Reservation {
        assert!(bytes <= self.bytes, "split {bytes} of {}", self.bytes);
        self.bytes -= bytes;
        Reservation {
            pool: self.pool.clone(),
            bytes,
        }
    }

    /// Merges `other`, a reservation on the same pool, into this one: this one then holds both, and
    /// gives both back when dropped. The pool's total does not change. No allocation.
    ///
    /// # Panics
    /// If `other` was reserved from another pool (it is then dropped and gives its bytes back).
    pub fn absorb(&mut self, mut other: Reservation) {
        assert!(
            Arc::ptr_eq(&self.pool, &other.pool),
            "a reservation of {} bytes from another pool cannot be absorbed",
            other.bytes
        );
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.release(self.bytes);
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl fmt::Debug for MemoryPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPool")
            .field("limit", &self.inner.limit)
            .field("reserve", &self.inner.reserve)
            .field("in_use", &self.in_use())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reservations_add_up_and_are_given_back_on_drop() {
        let pool = MemoryPool::new(1000, 100);
        let mut r = pool.reservation();
        assert!(r.try_grow_keeping(900));
        assert_eq!(pool.in_use(), 900);
        let frame = r.split(300);
        assert_eq!((r.bytes(), frame.bytes(), pool.in_use()), (600, 300, 900));
        drop(frame);
        assert_eq!(pool.in_use(), 600);
        r.shrink_to(100);
        assert_eq!(pool.in_use(), 100);
        drop(r);
        assert_eq!(pool.in_use(), 0);
        assert_eq!(pool.snapshot().peak, 900);
    }

    #[test]
    fn optional_growth_never_eats_into_the_reserve() {
        let pool = MemoryPool::new(1000, 400);
        let mut a = pool.reservation();
        assert!(a.try_grow_keeping(600));
        let mut b = pool.reservation();
        // 600 + 1 would leave 399 free: refused, and nothing is taken.
        assert!(!b.try_grow_keeping(1));
        assert_eq!((b.bytes(), pool.in_use()), (0, 600));
        drop(a);
        assert!(b.try_grow_keeping(600));
    }

    #[tokio::test]
    async fn required_growth_waits_for_room_then_takes_it() {
        let pool = MemoryPool::new(1000, 400);
        let mut a = pool.reservation();
        assert_eq!(a.grow_to(700).await, Duration::ZERO);
        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move {
                let mut b = pool.reservation();
                b.grow_to(500).await;
                b
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "500 more cannot fit beside 700");
        assert_eq!(pool.snapshot().waits, 1);
        a.shrink_to(400);
        let b = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("granted once there is room")
            .unwrap();
        assert_eq!((b.bytes(), pool.in_use()), (500, 900));
        assert!(pool.snapshot().wait_ms >= 40);
    }

    /// The deadlock the reserve prevents: readers holding read-ahead while each waits for a whole
    /// frame. With optional growth kept out of the reserve, one waiter is always served.
    #[tokio::test]
    async fn readers_holding_read_ahead_cannot_starve_a_frame() {
        let pool = MemoryPool::new(1000, 500);
        let mut holders = Vec::new();
        for _ in 0..10 {
            let mut r = pool.reservation();
            if r.try_grow_keeping(100) {
                holders.push(r);
            }
        }
        assert_eq!(holders.len(), 5, "read-ahead stops at limit − reserve");
        let mut frame = pool.reservation();
        let waited = tokio::time::timeout(Duration::from_secs(1), frame.grow_to(500)).await;
        assert_eq!(waited.ok(), Some(Duration::ZERO));
    }

    /// A driver waits for memory with `acquire` and hands it to the owner of the connection's
    /// reservation, which absorbs it.
    #[tokio::test]
    async fn acquired_bytes_wait_their_turn_and_merge_into_the_connection() {
        let pool = MemoryPool::new(1000, 0);
        let mut connection = pool.acquire(600).await;
        assert_eq!((connection.bytes(), pool.snapshot().waits), (600, 0));
        let driver = tokio::spawn({
            let pool = pool.clone();
            async move { pool.acquire(700).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!driver.is_finished(), "700 more cannot fit beside 600");
        connection.shrink_to(300);
        let more = tokio::time::timeout(Duration::from_secs(5), driver)
            .await
            .expect("granted once there is room")
            .unwrap();
        let s = pool.snapshot();
        assert_eq!((s.in_use, s.waits), (1000, 1));
        assert!(s.wait_ms >= 40, "{s:?}");
        connection.absorb(more);
        assert_eq!((connection.bytes(), pool.in_use()), (1000, 1000));
        connection.shrink_to(100);
        assert_eq!(pool.in_use(), 100);
        drop(connection);
        assert_eq!(pool.in_use(), 0);
    }

    #[tokio::test]
    async fn a_cancelled_acquire_gives_back_what_it_was_assigned() {
        let pool = MemoryPool::new(1000, 0);
        let held = pool.acquire(900).await;
        let waiting = tokio::time::timeout(Duration::from_millis(20), pool.acquire(500)).await;
        assert!(waiting.is_err(), "cannot fit");
        // The 100 free bytes were assigned to the waiter, and came back when it was cancelled.
        assert_eq!(pool.in_use(), 900);
        drop(held);
        assert_eq!(pool.in_use(), 0);
        assert_eq!(pool.acquire(1000).await.bytes(), 1000);
    }

    #[test]
    #[should_panic(expected = "from another pool")]
    fn absorbing_from_another_pool_is_refused() {
        let a = MemoryPool::new(100, 0);
        let b = MemoryPool::new(100, 0);
        let mut r = a.reservation();
        let mut other = b.reservation();
        assert!(other.try_grow_keeping(10));
        r.absorb(other);
    }
}
