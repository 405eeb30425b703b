//! The reader stage: socket → frames → queue, one task per connection (SPEC §7.1).

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use framepipe_codec::limits::HEADER_LEN;
use framepipe_codec::{Notice, RawCodec};
use framepipe_flow::queue::Sender;
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use crate::read_buffer::ReadBuffer;
use crate::stats::Stats;
use crate::Error;

/// A frame as it travels through the queue: the body as it arrived, and where it was in the stream.
#[derive(Debug)]
pub(crate) struct RawFrame {
    pub(crate) body: Bytes,
    pub(crate) frame: u64,
    pub(crate) offset: u64,
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

/// Reads frames from `stream` into `tx` until the peer closes, an error ends the connection, or the
/// handler side goes away.
///
/// # Backpressure
/// While `tx` is full this task does not read: the socket's receive queue fills, the TCP window
/// closes, and the producer's writes stop. Memory held here is the read buffer: at most one frame
/// (the one waiting for room in the queue) plus the rest of its block (`read_chunk`).
pub(crate) async fn read_frames(
    stream: Arc<TcpStream>,
    peer: SocketAddr,
    tx: Sender<Msg>,
    config: ReaderConfig,
    stats: Stats,
) {
    // The read buffer manages its memory itself (SPEC §7.1.5): the codec must not replace it after
    // a large frame (SPEC §2.3), or the buffer could not be reused.
    let mut codec: RawCodec = config
        .codec
        .clone()
        .retained_capacity(usize::MAX)
        .raw_codec();
    let mut rbuf = ReadBuffer::new(config.read_chunk, config.spare_bytes);
    let mut gauge = ReadingGauge {
        stats: &stats,
        shown: 0,
    };
    let mut eof = false;
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
                    let offset = codec.bytes_decoded() - (body.len() + HEADER_LEN) as u64;
                    let raw = RawFrame {
                        body,
                        frame,
                        offset,
                    };
                    let len = raw.wire_len();
                    // Until the queue takes it, the frame counts as read-buffer bytes.
                    gauge.set(rbuf.len() + len);
                    let sent = tx.send(Ok(raw), len).await;
                    gauge.set(rbuf.len());
                    if sent.is_err() {
                        return; // the handler side is gone
                    }
                }
                Ok(None) if eof => return,
                Ok(None) => break,
                Err(source) if source.is_frame_local() => {
                    let _ = tx.send(Err(Error::Frame { peer, source }), 0).await;
                }
                Err(source) => {
                    let notice = !eof;
                    let err = Error::Frame { peer, source };
                    if notice {
                        if let Error::Frame { source, .. } = &err {
                            send_notice(&stream, source).await;
                        }
                    }
                    gauge.set(0);
                    let _ = tx.send(Err(err), 0).await;
                    if notice {
                        drain(&stream, config.drain_timeout).await;
                    }
                    return;
                }
            }
        }
        gauge.set(rbuf.len());
        let limit = rbuf.prepare_read(codec.bytes_needed(rbuf.len()));
        match read_some(&stream, &mut rbuf, limit).await {
            Ok(0) => eof = true,
            Ok(n) => {
                stats.add_read(n);
                gauge.set(rbuf.len());
            }
            Err(source) => {
                gauge.set(0);
                let _ = tx.send(Err(Error::Io { peer, source }), 0).await;
                return;
            }
        }
    }
}

/// Reads once, at most `limit` bytes, waiting until the socket is readable.
async fn read_some(stream: &TcpStream, buf: &mut ReadBuffer, limit: usize) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match buf.read_with(limit, |b| stream.try_read_buf(b)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// Tells the producer why the connection is being closed (SPEC §6.3), then ends our direction.
async fn send_notice(stream: &TcpStream, err: &framepipe_codec::Error) {
    let frame = Notice::from_error(err).to_frame();
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
async fn drain(stream: &TcpStream, timeout: Duration) {
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
