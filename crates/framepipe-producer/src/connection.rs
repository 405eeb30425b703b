//! One producer connection: a source stream, or senders, into frames on any transport (SPEC §6.2).

use std::sync::Arc;

use bytes::Bytes;
use framepipe_flow::socket::{buffer_sizes, BufferSizes};
use framepipe_flow::{PeerAddr, Sampler, SocketProbe, SocketSet};
use framepipe_proto::producer::{ProducerConfig, ProducerConn};
use futures::Stream;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::builder::Builder;
use crate::driver::Driver;
use crate::queue::{Grant, SendQueue};
use crate::sender::{spawn_driver, LastHandle, RawSender, Sender};
use crate::stats::{Report, Stats};
use crate::Error;

/// A connected producer, on transport `T`. Send one stream with [`Connection::send_json`] or
/// [`Connection::send_raw`], or items as they come through a [`Sender`] ([`Connection::sender`]).
pub struct Connection<T> {
    io: T,
    peer: PeerAddr,
    probe: Option<Arc<dyn SocketProbe>>,
    config: Builder,
    stats: Stats,
    sampler: Sampler,
    /// Kept while the connection lives: its place in the socket set.
    _registration: Option<framepipe_flow::Unprobed>,
}

impl<T> std::fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("probed", &self.probe.is_some())
            .field("config", &self.config)
            .finish()
    }
}

impl<T> Connection<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    pub(crate) fn new(
        io: T,
        peer: PeerAddr,
        probe: Option<Arc<dyn SocketProbe>>,
        config: Builder,
    ) -> Self {
        let sockets = SocketSet::new();
        let registration = match &probe {
            Some(probe) => {
                sockets.register(probe.clone());
                None
            }
            None => Some(sockets.register_unprobed()),
        };
        let stats = Stats::new(sockets);
        let sampler = stats.monitor().spawn_sampler(config.sample_interval);
        Connection {
            io,
            peer,
            probe,
            config,
            stats,
            sampler,
            _registration: registration,
        }
    }

    /// A live view of this connection's counters and stages, for reporting while it runs.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The consumer's address (as connected; errors name it too).
    pub fn peer_addr(&self) -> &PeerAddr {
        &self.peer
    }

    fn split(self) -> (Arc<SendQueue>, Driver<T>) {
        let queue = SendQueue::new(
            self.config.queue.get_max_bytes(),
            self.config.queue.get_max_items(),
            self.config.max_frame_length,
            self.config.batching,
            self.stats.clone(),
        );
        let core_config = ProducerConfig {
            write_batch_bytes: self.config.write_batch_bytes,
            stall_timeout: self.config.stall_timeout,
            close_timeout: self.config.close_timeout,
            probe_interval: self.probe.as_ref().map(|_| self.config.sample_interval),
        };
        let now = tokio::time::Instant::now();
        let driver = Driver {
            io: self.io,
            core: ProducerConn::new(core_config, now.into_std()),
            queue: queue.clone(),
            stats: self.stats,
            peer: self.peer,
            probe: self.probe,
            sleep: Box::pin(tokio::time::sleep_until(now)),
            writing_shown: 0,
            finished: false,
            _sampler: self.sampler,
            _registration: self._registration,
        };
        (queue, driver)
    }

    /// Sends every item of `source` as one typed frame (compact JSON, SPEC §1.4), or gathered into
    /// batches if batching is on, then closes the connection and waits for the consumer to close
    /// its end.
    ///
    /// # Backpressure and memory
    /// `source` is polled only once the queue has room: when the consumer is slow, the transport
    /// stops taking bytes, the writer stops taking frames, the queue fills, and this stops polling
    /// `source`. Memory held is at most the queue's budget plus one frame, the write batch, and one
    /// 256 KiB encoding chunk (SPEC §6.1).
    ///
    /// # Errors
    /// See [`Error`]; every error after connecting says how many frames were written and how many
    /// were never sent. An item that cannot be encoded stops the stream: the frames before it are
    /// written and the connection closed cleanly, then [`Error::Encode`] is returned.
    pub async fn send_json<S>(self, source: S) -> Result<Report, Error>
    where
        S: Stream,
        S::Item: Serialize,
    {
        self.send_stream(source, |queue, grant, item| queue.send_json(grant, &item))
            .await
    }

    /// Sends every item of `source` as one frame whose body is the item's bytes, unchanged, then
    /// closes like [`Connection::send_json`]. The bodies are not copied: each is written with its
    /// 4-byte header in one vectored write.
    pub async fn send_raw<S>(self, source: S) -> Result<Report, Error>
    where
        S: Stream<Item = Bytes>,
    {
        self.send_stream(source, |queue, grant, body| queue.send_raw(grant, body))
            .await
    }

    /// Runs the driver and, in the same task, a loop that takes the next item of `source` only once
    /// a permit for it is granted (SPEC §6.2.1) and queues it with `send`.
    async fn send_stream<S, F>(self, source: S, send: F) -> Result<Report, Error>
    where
        S: Stream,
        F: Fn(&SendQueue, Grant, S::Item) -> Result<(), Error>,
    {
        let (queue, driver) = self.split();
        let produce = crate::queue::pump(&queue, source, send);
        // The driver may end first (the consumer went away) while the source waits for its next
        // item: the stream then ends at once, without waiting for the source (SPEC §6.2.6).
        let mut produce = std::pin::pin!(produce);
        let mut driver = std::pin::pin!(driver);
        tokio::select! {
            biased;
            produced = &mut produce => finish(produced, driver.await),
            sent = &mut driver => finish(Ok(()), sent),
        }
    }

    /// A handle for sending typed items as they come (SPEC §6.7). The connection's driver runs in a
    /// task of its own from now on; the connection closes when [`Sender::close`] is called or every
    /// handle is dropped. Must be called inside a Tokio runtime.
    pub fn sender<I: Serialize>(self) -> Sender<I> {
        Sender::new(self.spawn())
    }

    /// A handle for sending raw bodies as they come; like [`Connection::sender`].
    pub fn raw_sender(self) -> RawSender {
        RawSender::new(self.spawn())
    }

    fn spawn(self) -> Arc<LastHandle> {
        let stats = self.stats.clone();
        let (queue, driver) = self.split();
        spawn_driver(queue, stats, driver)
    }
}

impl Connection<framepipe_flow::Shared<TcpStream>> {
    /// The socket buffer sizes the kernel granted (SPEC §5.2).
    pub fn buffer_sizes(&self) -> std::io::Result<BufferSizes> {
        buffer_sizes(&**self.io.get_ref())
    }
}

/// The outcome of a stream: the driver's error first; else the source's (an item that could not be
/// encoded, reported with the frames written before the connection closed).
fn finish(produced: Result<(), Error>, sent: Result<Report, Error>) -> Result<Report, Error> {
    let report = sent?;
    match produced {
        Ok(()) => Ok(report),
        Err(Error::Encode { frame, source, .. }) => Err(Error::Encode {
            frame,
            frames_written: report.snapshot.frames_written,
            source,
        }),
        Err(e) => Err(e),
    }
}
