//! The reader stage: socket → frames → queue, one task per connection (SPEC §7.1).

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use framepipe_codec::limits::HEADER_LEN;
use framepipe_codec::{Notice, RawCodec};
use framepipe_flow::queue::Sender;
use framepipe_flow::{MemoryPool, Reservation};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use crate::read_buffer::ReadBuffer;
use crate::stats::Stats;
use crate::Error;

/// A frame as it travels through the queue: the body as it arrived, where it was in the stream, and
/// its bytes' share of the consumer's memory limit (given back when the frame is dropped).
#[derive(Debug)]
pub(crate) struct RawFrame {
    pub(crate) body: Bytes,
    pub(crate) frame: u64,
    pub(crate) offset: u64,
    pub(crate) memory: Reservation,
}

impl RawFrame {
    pub(crate) fn wire_len(&self) -> usize {
        self.body.len() + HEADER_LEN
    }
}

/// What the reader hands to the handler side, in stream order.
pub(crate) type Msg = Result<RawFrame, Error>;

/// Settings the reader needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReaderConfig {
    pub(crate) codec: framepipe_codec::Builder,
    pub(crate) read_chunk: usize,
    /// Most bytes of retired read buffers kept for reuse: the queue budget.
    pub(crate) spare_bytes: usize,
    pub(crate) drain_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) frame_timeout: Option<Duration>,
}

/// Keeps the `reading` gauge equal to the bytes this connection holds in its read buffer.
struct ReadingGauge<'a> {
    stats: &'a Stats,
    shown: usize,
}

impl ReadingGauge<'_> {
    fn set(&mut self, now: usize) {
        let gauge = self.stats.reading_gauge();
        if now > self.shown {
            gauge.grow(now - self.shown);
        } else {
            gauge.shrink(self.shown - now);
        }
        self.shown = now;
    }
}

impl Drop for ReadingGauge<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// How reading a connection ended.
enum Ending {
    /// The peer closed at a frame boundary, or the handler side went away.
    Done,
    /// A fatal error; `notice`: tell the producer and drain before closing (SPEC §6.3).
    Fatal { err: Error, notice: bool },
}

/// Reads frames from `stream` into `tx` until the peer closes, an error ends the connection, or the
/// handler side goes away.
///
/// # Backpressure
/// While `tx` is full this task does not read: the socket's receive queue fills, the TCP window
/// closes, and the producer's writes stop. Memory held here is the read buffer: at most one frame
/// (the one waiting for room in the queue) plus one block (`read_chunk`) read past it, all of it
/// reserved from `memory` before it was read (SPEC §7.6).
pub(crate) async fn read_frames(
    stream: Arc<TcpStream>,
    peer: SocketAddr,
    tx: Sender<Msg>,
    config: ReaderConfig,
    stats: Stats,
    memory: MemoryPool,
) {
    // Every buffer is dropped when `read_until_end` returns, before the notice and the drain.
    match read_until_end(&stream, peer, &tx, &config, &stats, &memory).await {
        Ending::Done => {}
        Ending::Fatal { err, notice } => {
            if notice {
                send_notice(&stream, &err.notice()).await;
            }
            let _ = tx.send(Err(err), 0).await;
            if notice {
                drain(&stream, config.drain_timeout).await;
            }
        }
    }
}

/// The reader's loop; returns how it ended, with every buffer it used dropped.
async fn read_until_end(
    stream: &TcpStream,
    peer: SocketAddr,
    tx: &Sender<Msg>,
    config: &ReaderConfig,
    stats: &Stats,
    memory: &MemoryPool,
) -> Ending {
    // The read buffer manages its memory itself (SPEC §7.1.5): the codec must not replace it after
    // a large frame (SPEC §2.3), or the buffer could not be reused.
    let mut codec: RawCodec = config
        .codec
        .clone()
        .retained_capacity(usize::MAX)
        .raw_codec();
    let mut rbuf = ReadBuffer::new(
        config.read_chunk,
        config.spare_bytes,
        Some(memory.reservation()),
    );
    // Covers the bytes in `rbuf`, and the rest of the frame in progress once its length is known.
    let mut held = memory.reservation();
    let mut gauge = ReadingGauge { stats, shown: 0 };
    let mut eof = false;
    // SPEC §7.6: when the frame in progress began, and by when it must be complete.
    let mut frame_began: Option<(Instant, Option<Instant>)> = None;
    let mut idle_since = Instant::now();
    loop {
        // Frame everything already buffered.
        loop {
            let buf = rbuf.bytes_mut();
            let decoded = if eof {
                codec.decode_eof(buf)
            } else {
                codec.decode(buf)
            };
            match decoded {
                Ok(Some(body)) => {
                    stats.add_framed();
                    let frame = codec.frames_decoded() - 1;
                    let len = body.len() + HEADER_LEN;
                    let offset = codec.bytes_decoded() - len as u64;
                    // The frame's bytes were reserved before they were read; they go with it.
                    let memory = held.split(len.min(held.bytes()));
                    let raw = RawFrame {
                        body,
                        frame,
                        offset,
                        memory,
                    };
                    // Until the queue takes it, the frame counts as read-buffer bytes.
                    gauge.set(rbuf.len() + len);
                    let sent = tx.send(Ok(raw), len).await;
                    gauge.set(rbuf.len());
                    if sent.is_err() {
                        return Ending::Done; // the handler side is gone
                    }
                    // The next frame's time starts once the reader comes back to it, so time spent
                    // waiting for queue room is not counted against the peer (SPEC §7.6).
                    frame_began = None;
                    idle_since = Instant::now();
                }
                Ok(None) if eof => return Ending::Done,
                Ok(None) => break,
                Err(source) if source.is_frame_local() => {
                    let _ = tx.send(Err(Error::Frame { peer, source }), 0).await;
                }
                Err(source) => {
                    return Ending::Fatal {
                        err: Error::Frame { peer, source },
                        notice: !eof,
                    };
                }
            }
        }
        gauge.set(rbuf.len());
        let buffered = rbuf.len();
        let needed = codec.bytes_needed(buffered);
        // What the frame in progress still requires of the memory limit (SPEC §7.6): all of it (a
        // body being skipped needs only a block at a time). Read-ahead taken for the last read is
        // given back before waiting for the peer.
        let due = usize::try_from(needed).unwrap_or(usize::MAX).max(1);
        let due = if codec.is_skipping() {
            due.min(config.read_chunk)
        } else {
            due
        };
        let required = buffered.saturating_add(due).min(memory.limit());
        held.shrink_to(required);
        let now = Instant::now();
        let deadline = if codec.mid_frame(buffered) {
            let (_, deadline) =
                *frame_began.get_or_insert_with(|| (now, config.frame_timeout.map(|t| now + t)));
            deadline
        } else {
            frame_began = None;
            config.idle_timeout.map(|t| idle_since + t)
        };

        // Wait for the peer, at most until the deadline.
        let ready = match deadline {
            Some(at) => match tokio::time::timeout_at(at.into(), stream.readable()).await {
                Ok(ready) => ready,
                Err(_) => {
                    let err = match frame_began {
                        Some((began, _)) => Error::FrameTimeout {
                            peer,
                            // The header of a frame whose body is due has been counted.
                            frame: codec.frames_decoded() - u64::from(codec.mid_frame(0)),
                            buffered: buffered as u64,
                            missing: needed,
                            waited: began.elapsed(),
                        },
                        None => Error::IdleTimeout {
                            peer,
                            idle: idle_since.elapsed(),
                        },
                    };
                    return Ending::Fatal { err, notice: true };
                }
            },
            None => stream.readable().await,
        };
        if let Err(source) = ready {
            return Ending::Fatal {
                err: Error::Io { peer, source },
                notice: false,
            };
        }

        // Reserve before reading (SPEC §7.6): the whole frame in progress, waiting if need be, then
        // up to a block more if that leaves room for a frame.
        let waited = held.grow_to(required).await;
        if let Some((_, Some(deadline))) = &mut frame_began {
            *deadline += waited;
        }
        let limit = rbuf.prepare_read(needed);
        held.try_grow_keeping(buffered.saturating_add(limit));
        let limit = limit.min(held.bytes() - buffered);
        match rbuf.read_with(limit, |b| stream.try_read_buf(b)) {
            Ok(0) => eof = true,
            Ok(n) => {
                stats.add_read(n);
                gauge.set(rbuf.len());
                idle_since = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(source) => {
                return Ending::Fatal {
                    err: Error::Io { peer, source },
                    notice: false,
                }
            }
        }
    }
}

/// Tells the producer why the connection is being closed (SPEC §6.3), then ends our direction.
async fn send_notice(stream: &TcpStream, notice: &Notice) {
    let frame = notice.to_frame();
    let mut written = 0;
    // A notice is under 4 KiB and the producer reads continuously; give up after a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while written < frame.len() {
        let ready = tokio::time::timeout_at(deadline, stream.writable()).await;
        if !matches!(ready, Ok(Ok(()))) {
            return;
        }
        match stream.try_write(&frame[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
    }
    let _ = socket2::SockRef::from(stream).shutdown(Shutdown::Write);
}

/// Reads and discards what the producer still sends, for up to `timeout` or until it closes, so
/// closing with unread bytes does not reset the connection before the notice is read (SPEC §6.3).
pub(crate) async fn drain(stream: &TcpStream, timeout: Duration) {
    let mut sink = [0u8; 16 * 1024];
    let _ = tokio::time::timeout(timeout, async {
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}
