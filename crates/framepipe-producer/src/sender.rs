//! Request-driven sending: a handle that reserves room before it takes an item (SPEC §6.7).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Sink;
use serde::Serialize;
use tokio::sync::Notify;

use crate::queue::{Grant, SendQueue};
use crate::stats::{Report, Stats};
use crate::Error;

/// What all the handles of one connection share: the queue and the connection's outcome.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) queue: Arc<SendQueue>,
    outcome: Mutex<Outcome>,
    done: Notify,
    stats: Stats,
}

#[derive(Debug)]
enum Outcome {
    Running,
    Finished(Result<Report, Error>),
    /// Taken by a `close`; a successful report stays readable.
    Taken(Option<Report>),
}

impl Shared {
    pub(crate) fn new(queue: Arc<SendQueue>, stats: Stats) -> Arc<Self> {
        Arc::new(Shared {
            queue,
            outcome: Mutex::new(Outcome::Running),
            done: Notify::new(),
            stats,
        })
    }

    /// The driver's result, stored for whoever closes.
    pub(crate) fn finish(&self, result: Result<Report, Error>) {
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Outcome::Finished(result);
        self.done.notify_waiters();
    }

    async fn wait(&self) -> Result<Report, Error> {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
                match std::mem::replace(&mut *outcome, Outcome::Running) {
                    Outcome::Running => {}
                    Outcome::Finished(result) => {
                        *outcome = Outcome::Taken(result.as_ref().ok().cloned());
                        return result;
                    }
                    Outcome::Taken(report) => {
                        *outcome = Outcome::Taken(report.clone());
                        return report.ok_or(Error::Closed(
                            "another handle's close already returned the connection's error",
                        ));
                    }
                }
            }
            notified.await;
        }
    }

    fn abort(&self) {
        self.queue
            .close("aborted", Some(tokio::time::Instant::now().into_std()));
    }

    async fn close(&self, deadline: Option<Duration>) -> Result<Report, Error> {
        let at = deadline.map(|d| tokio::time::Instant::now().into_std() + d);
        self.queue.close("close was called", at);
        self.wait().await
    }
}

/// Runs `driver` in a task of its own, feeding `queue`, and returns the first handle: the driver's
/// outcome goes to whoever closes (and is logged by the driver, naming the peer).
pub(crate) fn spawn_driver<D>(queue: Arc<SendQueue>, stats: Stats, driver: D) -> Arc<LastHandle>
where
    D: Future<Output = Result<Report, Error>> + Send + 'static,
{
    let shared = Shared::new(queue, stats);
    let handle = Arc::new(LastHandle(shared.clone()));
    tokio::spawn(async move {
        // The drivers log how they ended (naming the peer), so an outcome nobody closes for is seen.
        shared.finish(driver.await);
    });
    handle
}

/// Closes the queue when the last handle of a connection is dropped, so the connection finishes
/// what it was given and closes cleanly.
#[derive(Debug)]
pub(crate) struct LastHandle(pub(crate) Arc<Shared>);

impl Drop for LastHandle {
    fn drop(&mut self) {
        self.0.queue.close("every sender was dropped", None);
    }
}

/// A handle for sending items as they come (requests, events), typed: each item is one frame of
/// compact JSON, or, with [`Builder::batching`](crate::Builder::batching), items are gathered into
/// frames that are JSON arrays. Cheap to clone; every clone feeds the same connection, whose driver
/// runs in a task of its own.
///
/// # Backpressure
/// Room is reserved before an item is taken, as with tower's `poll_ready`/`call`:
/// [`reserve`](Self::reserve) waits while the queue holds its byte budget;
/// [`try_reserve`](Self::try_reserve) fails at once with [`Error::Full`]. The item is encoded only
/// once a permit is granted, so a caller that cannot wait keeps its item.
///
/// ```no_run
/// # async fn f() -> Result<(), framepipe_producer::Error> {
/// use framepipe_producer::Producer;
///
/// let sender = Producer::connect("127.0.0.1:7000").await?.sender::<serde_json::Value>();
/// sender.send(serde_json::json!({"event": "login"})).await?;
/// match sender.try_reserve() {
///     Ok(permit) => permit.send(serde_json::json!({"event": "click"}))?,
///     Err(e) if e.is_retryable() => eprintln!("busy, dropping a click: {e}"),
///     Err(e) => return Err(e),
/// }
/// let report = sender.close().await?; // writes what was accepted, FIN, waits for the consumer
/// assert!(report.confirmed);
/// # Ok(()) }
/// ```
pub struct Sender<T> {
    handle: Arc<LastHandle>,
    sink: SinkState,
    _item: PhantomData<fn(T)>,
}

/// A handle for sending raw bodies as they come: like [`Sender`], without JSON.
#[derive(Debug, Clone)]
pub struct RawSender {
    handle: Arc<LastHandle>,
}

/// Room reserved for one item of a [`Sender`]; [`send`](Permit::send) it, or drop it to give the
/// room back.
#[must_use = "a permit holds room in the queue until it is used or dropped"]
pub struct Permit<T> {
    queue: Arc<SendQueue>,
    grant: Option<Grant>,
    _item: PhantomData<fn(T)>,
}

/// Room reserved for one body of a [`RawSender`].
#[must_use = "a permit holds room in the queue until it is used or dropped"]
#[derive(Debug)]
pub struct RawPermit {
    queue: Arc<SendQueue>,
    grant: Option<Grant>,
}

/// A boxed future the `Sink` implementation keeps between polls. `Sync` as well as `Send`, so that a
/// `Sender` is `Sync`: `sender.send(item).await` borrows it across an await, and a future holding a
/// `&Sender` is `Send` (can be spawned) only if `Sender` is `Sync`.
type Pending<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + Sync>>;

#[derive(Default)]
struct SinkState {
    permit: Option<Grant>,
    pending: Option<Pending<Grant>>,
    flushing: Option<Pending<()>>,
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("item", &std::any::type_name::<T>())
            .field("queued_bytes", &self.queue().queued_bytes())
            .finish()
    }
}

impl<T> fmt::Debug for Permit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("grant", &self.grant)
            .finish()
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            handle: self.handle.clone(),
            sink: SinkState::default(),
            _item: PhantomData,
        }
    }
}

impl<T> Sender<T> {
    pub(crate) fn new(handle: Arc<LastHandle>) -> Self {
        Sender {
            handle,
            sink: SinkState::default(),
            _item: PhantomData,
        }
    }

    fn queue(&self) -> &Arc<SendQueue> {
        &self.handle.0.queue
    }

    /// Waits for room for one item.
    ///
    /// # Backpressure
    /// Waits while the queue holds its budget (the consumer, or the network, is slower than the
    /// senders); holds nothing meanwhile, and cancelling the wait loses nothing. Fails with
    /// [`Error::Closed`] once the sender is closed or the connection has ended.
    pub async fn reserve(&self) -> Result<Permit<T>, Error> {
        let grant = self.queue().grant().await?;
        Ok(Permit {
            queue: self.queue().clone(),
            grant: Some(grant),
            _item: PhantomData,
        })
    }

    /// Room for one item now, or [`Error::Full`] (retryable) if the queue holds its budget, or
    /// [`Error::Closed`].
    pub fn try_reserve(&self) -> Result<Permit<T>, Error> {
        match self.queue().try_grant()? {
            Some(grant) => Ok(Permit {
                queue: self.queue().clone(),
                grant: Some(grant),
                _item: PhantomData,
            }),
            None => Err(Error::Full {
                queued_bytes: self.queue().queued_bytes(),
                budget: self.queue().budget(),
            }),
        }
    }

    /// Waits until every item accepted so far has been written to the transport (or the connection
    /// has ended; then `close` says why).
    pub async fn flush(&self) {
        self.queue().flush().await;
    }

    /// Stops taking items (for every clone), writes what was accepted, sends FIN, and waits for the
    /// consumer to close its end (`close_timeout`). Returns the connection's report, or the error
    /// that ended it, with how many frames were written and how many never sent.
    ///
    /// Only the first `close` of a connection gets its error; later ones get [`Error::Closed`] (a
    /// successful report is returned to every caller).
    pub async fn close(self) -> Result<Report, Error> {
        self.handle.0.close(None).await
    }

    /// Like [`close`](Self::close), but gives up at `deadline`: frames not written by then are never
    /// sent (the connection is reset and [`Error::Deadline`] says how many), and a consumer that has
    /// not closed its end by then leaves the report unconfirmed.
    pub async fn close_within(self, deadline: Duration) -> Result<Report, Error> {
        self.handle.0.close(Some(deadline)).await
    }

    /// Stops at once, for every handle: frames not yet written are never sent, the connection is
    /// reset, and the `close` in progress (or the next) returns [`Error::Deadline`] counting them.
    /// For a second Ctrl-C while a `close` is waiting. Never waits.
    pub fn abort(&self) {
        self.handle.0.abort();
    }

    /// `true` once the sender is closed or the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.queue().is_closed()
    }

    /// The connection's live counters.
    pub fn stats(&self) -> Stats {
        self.handle.0.stats.clone()
    }
}

impl<T: Serialize> Sender<T> {
    /// Waits for room, then takes `item`: [`reserve`](Self::reserve) and [`Permit::send`].
    pub async fn send(&self, item: T) -> Result<(), Error> {
        self.reserve().await?.send(item)
    }
}

impl<T: Serialize> Permit<T> {
    /// Takes `item`: serializes it (SPEC §1.4) and queues it, or adds it to the batch. Never waits.
    /// Fails with [`Error::Encode`] if it cannot be serialized or is over `max_frame_length`
    /// (nothing of it is sent; the connection goes on), or [`Error::Closed`].
    pub fn send(mut self, item: T) -> Result<(), Error> {
        let grant = self.grant.take().expect("a permit is used once");
        self.queue.send_json(grant, &item)
    }
}

impl<T> Drop for Permit<T> {
    fn drop(&mut self) {
        if let Some(grant) = self.grant.take() {
            self.queue.release(grant);
        }
    }
}

impl RawSender {
    pub(crate) fn new(handle: Arc<LastHandle>) -> Self {
        RawSender { handle }
    }

    fn queue(&self) -> &Arc<SendQueue> {
        &self.handle.0.queue
    }

    /// Waits for room for one body; as [`Sender::reserve`].
    pub async fn reserve(&self) -> Result<RawPermit, Error> {
        let grant = self.queue().grant().await?;
        Ok(RawPermit {
            queue: self.queue().clone(),
            grant: Some(grant),
        })
    }

    /// Room for one body now, or [`Error::Full`]; as [`Sender::try_reserve`].
    pub fn try_reserve(&self) -> Result<RawPermit, Error> {
        match self.queue().try_grant()? {
            Some(grant) => Ok(RawPermit {
                queue: self.queue().clone(),
                grant: Some(grant),
            }),
            None => Err(Error::Full {
                queued_bytes: self.queue().queued_bytes(),
                budget: self.queue().budget(),
            }),
        }
    }

    /// Waits for room, then takes `body`.
    pub async fn send(&self, body: Bytes) -> Result<(), Error> {
        self.reserve().await?.send(body)
    }

    /// As [`Sender::close`].
    pub async fn close(self) -> Result<Report, Error> {
        self.handle.0.close(None).await
    }

    /// As [`Sender::close_within`].
    pub async fn close_within(self, deadline: Duration) -> Result<Report, Error> {
        self.handle.0.close(Some(deadline)).await
    }

    /// As [`Sender::abort`].
    pub fn abort(&self) {
        self.handle.0.abort();
    }

    /// The connection's live counters.
    pub fn stats(&self) -> Stats {
        self.handle.0.stats.clone()
    }
}

impl RawPermit {
    /// Takes `body`, written after its 4-byte header without being copied. Never waits.
    pub fn send(mut self, body: Bytes) -> Result<(), Error> {
        let grant = self.grant.take().expect("a permit is used once");
        self.queue.send_raw(grant, body)
    }
}

impl Drop for RawPermit {
    fn drop(&mut self) {
        if let Some(grant) = self.grant.take() {
            self.queue.release(grant);
        }
    }
}

/// `StreamExt::forward` into a connection: `poll_ready` reserves room, `start_send` takes the item,
/// `poll_flush` waits until what was sent has been written, `poll_close` closes like
/// [`Sender::close`] (its error comes back from `poll_close`; a clone kept aside can still call
/// `close` for the report).
impl<T: Serialize> Sink<T> for Sender<T> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = &mut *self;
        if this.sink.permit.is_some() {
            return Poll::Ready(Ok(()));
        }
        let queue = this.queue().clone();
        let pending = this
            .sink
            .pending
            .get_or_insert_with(|| Box::pin(async move { queue.grant().await }));
        let grant = futures::ready!(pending.as_mut().poll(cx));
        this.sink.pending = None;
        this.sink.permit = Some(grant?);
        Poll::Ready(Ok(()))
    }

    fn start_send(mut self: Pin<&mut Self>, item: T) -> Result<(), Error> {
        let grant = self
            .sink
            .permit
            .take()
            .expect("poll_ready returns Ready before start_send");
        self.queue().send_json(grant, &item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let queue = self.queue().clone();
        let flushing = self.sink.flushing.get_or_insert_with(|| {
            Box::pin(async move {
                queue.flush().await;
                Ok(())
            })
        });
        let done = futures::ready!(flushing.as_mut().poll(cx));
        self.sink.flushing = None;
        Poll::Ready(done)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let shared = self.handle.0.clone();
        let closing = self
            .sink
            .flushing
            .get_or_insert_with(|| Box::pin(async move { shared.close(None).await.map(|_| ()) }));
        let done = futures::ready!(closing.as_mut().poll(cx));
        self.sink.flushing = None;
        Poll::Ready(done)
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // Room reserved through `poll_ready` and never used goes back to the queue.
        if let Some(grant) = self.sink.permit.take() {
            self.handle.0.queue.release(grant);
        }
    }
}
