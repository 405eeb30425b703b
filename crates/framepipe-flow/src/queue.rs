//! A bounded queue whose capacity is in bytes as well as items (SPEC §5.1).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, Semaphore, TryAcquireError};

use crate::StageGauge;

/// Default byte budget of a queue: 512 KiB (SPEC §5.1). Measured on the reference workload (issue
/// 14): as fast as 4 MiB, with both sides' peak RSS under 7 MiB where 4 MiB took the producer to 14.
pub const DEFAULT_MAX_BYTES: usize = 512 * 1024;

/// Default item bound of a queue: 1,024 (SPEC §5.1).
pub const DEFAULT_MAX_ITEMS: usize = 1024;

/// Largest byte budget a queue accepts: 4 GiB − 1 (the permits are counted in `u32`).
pub const MAX_BUDGET: usize = u32::MAX as usize;

/// Limits of a byte-budgeted queue. `Default` gives [`DEFAULT_MAX_BYTES`] and [`DEFAULT_MAX_ITEMS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    max_bytes: usize,
    max_items: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_bytes: DEFAULT_MAX_BYTES,
            max_items: DEFAULT_MAX_ITEMS,
        }
    }
}

impl QueueLimits {
    /// Most bytes the queue holds at once (default 512 KiB; clamped to 1 ..= [`MAX_BUDGET`]).
    ///
    /// This is the memory the queue bounds. An item larger than the whole budget is admitted only when
    /// the queue is empty, and then alone, so the queue holds at most `max(max_bytes, largest item)`.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes.clamp(1, MAX_BUDGET);
        self
    }

    /// Most items the queue holds at once, whatever their size (default 1,024; at least 1).
    ///
    /// Bounds the per-item overhead when items are tiny.
    pub fn max_items(mut self, items: usize) -> Self {
        self.max_items = items.max(1);
        self
    }

    /// The byte budget.
    pub fn get_max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The item bound.
    pub fn get_max_items(&self) -> usize {
        self.max_items
    }
}

/// Creates a queue bounded by `limits`, reporting into `gauge`.
pub fn channel<T>(limits: QueueLimits, gauge: StageGauge) -> (Sender<T>, Receiver<T>) {
    let budget = Arc::new(Semaphore::new(limits.max_bytes));
    let (tx, rx) = mpsc::channel(limits.max_items);
    let sender = Sender {
        tx,
        budget: budget.clone(),
        max_bytes: limits.max_bytes,
        gauge: gauge.clone(),
    };
    (sender, Receiver { rx, budget, gauge })
}

/// One queued item with its accounting.
struct Entry<T> {
    item: T,
    bytes: usize,
    permits: u32,
}

/// The sending half. Clone it for several producers.
pub struct Sender<T> {
    tx: mpsc::Sender<Entry<T>>,
    budget: Arc<Semaphore>,
    max_bytes: usize,
    gauge: StageGauge,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            tx: self.tx.clone(),
            budget: self.budget.clone(),
            max_bytes: self.max_bytes,
            gauge: self.gauge.clone(),
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("max_bytes", &self.max_bytes)
            .field("gauge", &self.gauge.snapshot())
            .finish()
    }
}

/// The queue's receiver was dropped; the item is handed back so nothing is lost silently.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed<T>(pub T);

impl<T> fmt::Display for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue closed: its receiver was dropped")
    }
}

impl<T: fmt::Debug> std::error::Error for Closed<T> {}

impl<T> Sender<T> {
    /// Queues `item`, which accounts for `bytes` of memory, waiting for room if needed.
    ///
    /// # Backpressure
    /// Waits until the queue has `bytes` of budget free and an item slot (an item larger than the whole
    /// budget waits until the queue is empty). While waiting it holds only the item and, once granted,
    /// its share of the budget; the time spent waiting is added to the gauge's `blocked_ms`.
    ///
    /// Fails, returning the item, if the receiver has been dropped.
    pub async fn send(&self, item: T, bytes: usize) -> Result<(), Closed<T>> {
        // SPEC §5.1: an item over the whole budget takes the whole budget, so it waits for an empty
        // queue and then travels alone.
        let permits = bytes.min(self.max_bytes) as u32;
        let mut waited_since = None;
        // The permit guard is kept until the item is committed: if this future is dropped while waiting
        // (a timeout, a `select!`), the budget it took is returned, not leaked.
        let budget = match self.budget.try_acquire_many(permits) {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => return Err(Closed(item)),
            Err(TryAcquireError::NoPermits) => {
                waited_since = Some(Instant::now());
                match self.budget.acquire_many(permits).await {
                    Ok(p) => p,
                    Err(_) => return Err(Closed(item)),
                }
            }
        };
        let slot = match self.tx.try_reserve() {
            Ok(slot) => slot,
            Err(mpsc::error::TrySendError::Closed(())) => return Err(Closed(item)),
            Err(mpsc::error::TrySendError::Full(())) => {
                waited_since.get_or_insert_with(Instant::now);
                match self.tx.reserve().await {
                    Ok(slot) => slot,
                    Err(_) => return Err(Closed(item)),
                }
            }
        };
        if let Some(since) = waited_since {
            self.gauge.add_blocked(since.elapsed());
        }
        // Committed: the receiver returns these permits when the item leaves the queue.
        budget.forget();
        self.gauge.add(bytes);
        slot.send(Entry {
            item,
            bytes,
            permits,
        });
        Ok(())
    }

    /// The gauge this queue reports into.
    pub fn gauge(&self) -> &StageGauge {
        &self.gauge
    }
}

/// The receiving half.
pub struct Receiver<T> {
    rx: mpsc::Receiver<Entry<T>>,
    budget: Arc<Semaphore>,
    gauge: StageGauge,
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("gauge", &self.gauge.snapshot())
            .finish()
    }
}

impl<T> Receiver<T> {
    /// The next item, or `None` once every sender is dropped and the queue is empty.
    ///
    /// The item's bytes are returned to the budget as it leaves the queue. Waits while the queue is
    /// empty.
    pub async fn recv(&mut self) -> Option<T> {
        let entry = self.rx.recv().await?;
        Some(self.release(entry))
    }

    /// Polls for the next item, for use inside a `Stream` implementation. Same semantics as
    /// [`Receiver::recv`].
    pub fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<T>> {
        match self.rx.poll_recv(cx) {
            std::task::Poll::Ready(Some(entry)) => {
                std::task::Poll::Ready(Some(self.release(entry)))
            }
            std::task::Poll::Ready(None) => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    /// The next item if one is queued now; never waits. `None` if the queue is empty (or closed and
    /// empty).
    pub fn try_recv(&mut self) -> Option<T> {
        let entry = self.rx.try_recv().ok()?;
        Some(self.release(entry))
    }

    /// Polls for the next item like [`Receiver::poll_recv`], but leaves its bytes in the budget and
    /// the gauge until the returned [`Share`] is dropped: for a stage that works on items after
    /// taking them (a decoder looking ahead) and wants them to stay inside the queue's bound.
    ///
    /// The item slot is freed at once; the byte budget only when the share goes.
    pub fn poll_recv_held(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<(T, Share)>> {
        self.rx.poll_recv(cx).map(|entry| {
            entry.map(|entry| {
                let share = Share {
                    budget: self.budget.clone(),
                    gauge: self.gauge.clone(),
                    bytes: entry.bytes,
                    permits: entry.permits,
                };
                (entry.item, share)
            })
        })
    }

    fn release(&mut self, entry: Entry<T>) -> T {
        self.budget.add_permits(entry.permits as usize);
        self.gauge.remove(entry.bytes);
        entry.item
    }

    /// The gauge this queue reports into.
    pub fn gauge(&self) -> &StageGauge {
        &self.gauge
    }
}

/// An item's share of its queue's byte budget, taken with [`Receiver::poll_recv_held`]: the bytes
/// stay counted in the queue's budget and gauge until this is dropped.
#[must_use = "the bytes return to the queue's budget when the share is dropped"]
pub struct Share {
    budget: Arc<Semaphore>,
    gauge: StageGauge,
    bytes: usize,
    permits: u32,
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share").field("bytes", &self.bytes).finish()
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.budget.add_permits(self.permits as usize);
        self.gauge.remove(self.bytes);
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Wake senders waiting for budget: nobody will ever free it.
        self.budget.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::time::Duration;

    fn queue(max_bytes: usize, max_items: usize) -> (Sender<usize>, Receiver<usize>) {
        let limits = QueueLimits::default()
            .max_bytes(max_bytes)
            .max_items(max_items);
        channel(limits, StageGauge::new("test"))
    }

    #[tokio::test]
    async fn items_arrive_in_order_and_the_gauge_returns_to_zero() {
        let (tx, mut rx) = queue(1000, 8);
        for i in 0..5 {
            tx.send(i, 100).await.unwrap();
        }
        assert_eq!(tx.gauge().snapshot().bytes, 500);
        drop(tx);
        let mut got = Vec::new();
        while let Some(i) = rx.recv().await {
            got.push(i);
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
        let s = rx.gauge().snapshot();
        assert_eq!((s.bytes, s.items, s.peak_bytes), (0, 0, 500));
    }

    #[tokio::test]
    async fn a_held_item_keeps_its_bytes_in_the_budget_until_its_share_is_dropped() {
        // 300-byte items, 700-byte budget: two fit; taking one with its share frees no bytes.
        let (tx, mut rx) = queue(700, 100);
        tx.send(0, 300).await.unwrap();
        tx.send(1, 300).await.unwrap();
        let (item, share) = futures::future::poll_fn(|cx| rx.poll_recv_held(cx))
            .await
            .unwrap();
        assert_eq!(item, 0);
        let mut third = Box::pin(tx.send(2, 300));
        assert!(
            (&mut third).now_or_never().is_none(),
            "the held bytes still count"
        );
        assert_eq!(rx.gauge().snapshot().bytes, 600);
        drop(share);
        third.await.unwrap();
        assert_eq!(rx.gauge().snapshot().bytes, 600);
    }

    #[tokio::test]
    async fn a_send_over_the_byte_budget_waits_until_bytes_leave() {
        // SPEC §5.1.1: 300-byte items, 1000-byte budget: three fit, the fourth waits.
        let (tx, mut rx) = queue(1000, 100);
        for i in 0..3 {
            tx.send(i, 300).await.unwrap();
        }
        let mut fourth = Box::pin(tx.send(3, 300));
        assert!((&mut fourth).now_or_never().is_none(), "fourth must wait");
        assert_eq!(rx.recv().await, Some(0));
        fourth.await.unwrap();
        assert_eq!(tx.gauge().snapshot().peak_bytes, 900);
    }

    #[tokio::test]
    async fn try_recv_takes_what_is_queued_without_waiting() {
        let (tx, mut rx) = queue(1000, 8);
        assert_eq!(rx.try_recv(), None);
        tx.send(1, 400).await.unwrap();
        tx.send(2, 400).await.unwrap();
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.gauge().snapshot().bytes, 400);
        // Its bytes went back to the budget: 600 fit again.
        tx.send(3, 600).now_or_never().expect("room").unwrap();
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn the_item_bound_applies_to_tiny_items() {
        let (tx, mut rx) = queue(1000, 2);
        tx.send(0, 1).await.unwrap();
        tx.send(1, 1).await.unwrap();
        assert!(
            tx.send(2, 1).now_or_never().is_none(),
            "third item must wait"
        );
        assert_eq!(rx.recv().await, Some(0));
        tx.send(2, 1).await.unwrap();
    }

    #[tokio::test]
    async fn an_item_larger_than_the_budget_travels_alone() {
        // SPEC §5.1: it waits for an empty queue, then nothing else enters until it leaves.
        let (tx, mut rx) = queue(1000, 100);
        tx.send(0, 10).await.unwrap();
        let mut big = Box::pin(tx.send(1, 5000));
        assert!(
            (&mut big).now_or_never().is_none(),
            "waits while the queue holds bytes"
        );
        assert_eq!(rx.recv().await, Some(0));
        big.await.unwrap();
        assert!(
            tx.send(2, 1).now_or_never().is_none(),
            "nothing joins the oversized item"
        );
        assert_eq!(rx.recv().await, Some(1));
        tx.send(2, 1).await.unwrap();
        assert_eq!(tx.gauge().snapshot().peak_bytes, 5000);
    }

    #[tokio::test]
    async fn a_cancelled_send_returns_its_budget() {
        // SPEC §5.1.3.
        // Budget free, item slots full: the send takes bytes, then waits for a slot and is dropped.
        let (tx, mut rx) = queue(1000, 1);
        tx.send(0, 100).await.unwrap();
        assert!(tx.send(1, 800).now_or_never().is_none());
        assert_eq!(rx.recv().await, Some(0));
        // All 1000 bytes must be available again.
        tx.send(2, 1000)
            .now_or_never()
            .expect("budget was returned")
            .unwrap();
    }

    #[tokio::test]
    async fn sending_after_the_receiver_is_gone_hands_the_item_back() {
        let (tx, rx) = queue(1000, 1);
        tx.send(0, 1000).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(7, 10).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(Closed(7)));
        assert_eq!(tx.send(8, 1).await, Err(Closed(8)));
    }

    #[tokio::test]
    async fn time_spent_waiting_is_reported_as_blocked() {
        let (tx, mut rx) = queue(100, 10);
        tx.send(0, 100).await.unwrap();
        let consumer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let first = rx.recv().await;
            (first, rx) // keep the receiver alive so the waiting send can complete
        });
        tx.send(1, 100).await.unwrap();
        let (first, mut rx) = consumer.await.unwrap();
        assert_eq!(first, Some(0));
        assert_eq!(rx.recv().await, Some(1));
        let blocked = tx.gauge().snapshot().blocked_ms;
        assert!(blocked >= 40, "blocked {blocked} ms");
    }
}
