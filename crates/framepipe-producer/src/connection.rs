//! One producer connection: source stream → encode → queue → writer → socket (SPEC §6.2).

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use framepipe_flow::socket::{buffer_sizes, BufferSizes};
use framepipe_flow::SocketSet;
use framepipe_flow::{probe, queue};
use futures::{Stream, StreamExt};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::builder::Builder;
use crate::frame::{Frame, FrameEncoder};
use crate::reply::{watch_peer, PeerSaid, Unexpected};
use crate::stats::{Report, Stats};
use crate::writer::{write_frames, WriteError};
use crate::Error;

/// A connected producer. Send one stream with [`Connection::send_json`] or [`Connection::send_raw`].
#[derive(Debug)]
pub struct Connection {
    stream: Arc<TcpStream>,
    peer: SocketAddr,
    config: Builder,
    stats: Stats,
}

impl Connection {
    pub(crate) fn new(
        stream: Arc<TcpStream>,
        peer: SocketAddr,
        config: Builder,
        sockets: SocketSet,
    ) -> Self {
        Connection {
            stream,
            peer,
            config,
            stats: Stats::new(sockets),
        }
    }

    /// A live view of this connection's counters and stages, for reporting while it runs.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// The consumer's address (as connected; errors name it too).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }

    /// The socket buffer sizes the kernel granted.
    pub fn buffer_sizes(&self) -> io::Result<BufferSizes> {
        buffer_sizes(&self.stream)
    }

    /// Sends every item of `source` as one typed frame (compact JSON, SPEC §1.4), then closes the
    /// connection and waits for the consumer to close its end.
    ///
    /// # Backpressure and memory
    /// `source` is polled only while the queue has room: when the consumer is slow, the socket stops
    /// being writable, the writer stops taking frames, the queue fills, and this stops polling
    /// `source`. Memory held is at most the queue's budget plus one frame being encoded, the write
    /// batch, and one 256 KiB encoding chunk (SPEC §6.1).
    ///
    /// # Errors
    /// See [`Error`]; every error after connecting says how many frames were written.
    pub async fn send_json<S, T>(self, source: S) -> Result<Report, Error>
    where
        S: Stream<Item = T>,
        T: Serialize,
    {
        let mut encoder = FrameEncoder::new(self.config.max_frame_length);
        let stats = self.stats.clone();
        let frames = source.map(move |item| {
            stats.add_pulled();
            encoder.encode_json(&item)
        });
        self.run(frames).await
    }

    /// Sends every item of `source` as one frame whose body is the item's bytes, unchanged, then
    /// closes like [`Connection::send_json`].
    ///
    /// The bodies are not copied: each is written with its 4-byte header in one vectored write.
    pub async fn send_raw<S>(self, source: S) -> Result<Report, Error>
    where
        S: Stream<Item = Bytes>,
    {
        let encoder = FrameEncoder::new(self.config.max_frame_length);
        let stats = self.stats.clone();
        let frames = source.map(move |body| {
            stats.add_pulled();
            encoder.encode_raw(body)
        });
        self.run(frames).await
    }

    async fn run<S>(self, frames: S) -> Result<Report, Error>
    where
        S: Stream<Item = Result<Frame, framepipe_codec::Error>>,
    {
        let Connection {
            stream,
            peer: peer_addr,
            config,
            stats,
        } = self;
        let (tx, mut rx) = queue::channel(config.queue, stats.queue_gauge().clone());
        let fail = Fail {
            stream: &stream,
            peer: peer_addr,
            stats: &stats,
        };

        // Stage 1: poll the source only when the previous frame has entered the queue.
        let produce = async {
            let tx = tx; // dropped when this stage ends, so the writer drains and stops
            let encoded = stats.encoded_gauge();
            let mut frames = std::pin::pin!(frames);
            let mut index = 0u64;
            while let Some(frame) = frames.next().await {
                let frame = frame.map_err(|e| (index, e))?;
                let len = frame.wire_len();
                stats.add_encoded(len);
                encoded.add(len);
                let sent = tx.send(frame, len).await;
                encoded.remove(len);
                if sent.is_err() {
                    break; // the writer failed; it reports why
                }
                index += 1;
            }
            Ok::<(), (u64, framepipe_codec::Error)>(())
        };
        // Stage 2: the writer.
        let write = async {
            let result = write_frames(
                &stream,
                &mut rx,
                config.write_batch_bytes,
                config.stall_timeout,
                &stats,
            )
            .await;
            drop(rx); // a failed writer releases the producer stage at once
            result
        };
        let work = async { tokio::join!(produce, write) };

        let mut peer = std::pin::pin!(watch_peer(&stream));
        let mut watching = true;
        let mut work = std::pin::pin!(work);
        let mut ticker = tokio::time::interval(config.sample_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (produced, written) = loop {
            tokio::select! {
                done = &mut work => break done,
                said = &mut peer, if watching => match said {
                    PeerSaid::Closed => watching = false,
                    said => return Err(fail.peer_said(said)),
                },
                _ = ticker.tick() => {
                    stats.snapshot();
                }
            }
        };

        if let Err(e) = written {
            // The consumer may have said why before closing: give its reply a moment to arrive.
            if watching {
                if let Ok(said @ (PeerSaid::Notice(_) | PeerSaid::Unexpected(_))) =
                    tokio::time::timeout(REPLY_GRACE, &mut peer).await
                {
                    return Err(fail.peer_said(said));
                }
            }
            return Err(match e {
                WriteError::Io(source) => fail.io(source),
                WriteError::Stalled { waited } => fail.stalled(waited),
            });
        }

        // Everything taken was written: send FIN, then wait for the consumer to close its end.
        let _ = socket2::SockRef::from(&*stream).shutdown(Shutdown::Write);
        let mut confirmed = false;
        if watching {
            let close = tokio::time::sleep(config.close_timeout);
            let mut close = std::pin::pin!(close);
            let mut acked = AckProgress::new();
            loop {
                tokio::select! {
                    said = &mut peer => match said {
                        PeerSaid::Closed => {
                            confirmed = true;
                            break;
                        }
                        said => return Err(fail.peer_said(said)),
                    },
                    _ = &mut close => break,
                    _ = ticker.tick() => {
                        stats.snapshot();
                        // SPEC §6.2.3: the kernel still holds bytes the consumer has not taken.
                        if let (Some(limit), Ok(unacked)) =
                            (config.stall_timeout, probe::unsent_bytes(&*stream))
                        {
                            if let Some(waited) = acked.stalled(unacked, limit) {
                                return Err(fail.stalled(waited));
                            }
                        }
                    }
                }
            }
        }
        if let Err((frame, source)) = produced {
            return Err(Error::Encode {
                frame,
                frames_written: stats.frames_written(),
                source,
            });
        }
        if !confirmed {
            tracing::warn!(
                frames = stats.frames_written(),
                "the consumer did not close its end within {:?}; every frame was written, \
                 but that it read them all is not confirmed",
                config.close_timeout
            );
        }
        Ok(Report {
            snapshot: stats.snapshot(),
            confirmed,
        })
    }
}

/// How long to wait, after a write failed, for the consumer's reply that may say why.
const REPLY_GRACE: Duration = Duration::from_millis(200);

/// Builds the errors that end a connection early, with the counters at that moment.
struct Fail<'a> {
    stream: &'a TcpStream,
    peer: SocketAddr,
    stats: &'a Stats,
}

impl Fail<'_> {
    /// The error for what the consumer said, other than a clean end of stream.
    fn peer_said(&self, said: PeerSaid) -> Error {
        let frames_written = self.stats.frames_written();
        match said {
            PeerSaid::Notice(notice) => Error::Rejected {
                frames_written,
                notice,
            },
            PeerSaid::Unexpected(Unexpected { received, preview }) => {
                self.reset();
                Error::UnexpectedReply {
                    peer: self.peer,
                    frames_written,
                    received,
                    preview,
                }
            }
            PeerSaid::Failed(source) => self.io(source),
            PeerSaid::Closed => self.io(io::ErrorKind::UnexpectedEof.into()),
        }
    }

    fn io(&self, source: io::Error) -> Error {
        Error::from_io(
            source,
            self.peer,
            self.stats.frames_written(),
            self.stats.bytes_written(),
        )
    }

    fn stalled(&self, waited: Duration) -> Error {
        self.reset();
        Error::Stalled {
            peer: self.peer,
            frames_written: self.stats.frames_written(),
            bytes_written: self.stats.bytes_written(),
            waited,
        }
    }

    /// Makes the coming close a reset (`SO_LINGER` 0): the kernel drops what it still holds for
    /// this peer at once instead of trying to deliver it to a consumer that is not taking it.
    fn reset(&self) {
        let _ = socket2::SockRef::from(self.stream).set_linger(Some(Duration::ZERO));
    }
}

/// Whether the consumer is acknowledging what the kernel holds for it, after the last write
/// (SPEC §6.2.3): `SIOCOUTQ` not going down for `stall_timeout` while not zero is a stall.
struct AckProgress {
    unacked: usize,
    since: Instant,
}

impl AckProgress {
    fn new() -> Self {
        AckProgress {
            unacked: 0,
            since: Instant::now(),
        }
    }

    /// Records a reading of the bytes not yet acknowledged; returns how long nothing was if that
    /// is at least `limit`.
    fn stalled(&mut self, unacked: usize, limit: Duration) -> Option<Duration> {
        let now = Instant::now();
        if unacked == 0 || unacked < self.unacked {
            self.since = now;
        }
        self.unacked = unacked;
        let waited = now.duration_since(self.since);
        (unacked > 0 && waited >= limit).then_some(waited)
    }
}
