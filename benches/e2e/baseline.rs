//! The comparison stack, `tokio-util+serde_json`: what a Rust user would write instead of framepipe,
//! with the crates everyone already has.
//!
//! - Producer: a generator task takes the same items framepipe's producer is given
//!   (`generator::reference_frames`: one shared `Arc<Vec<Record>>` batch per frame) and sends them
//!   through a bounded `tokio::sync::mpsc` channel (capacity 16) to a writer, which for each item does
//!   `serde_json::to_vec(&batch)` and `SinkExt::send(Bytes::from(vec))` on a
//!   `FramedWrite<TcpStream, LengthDelimitedCodec>`, then `close()`s the sink (flush and FIN). Raw
//!   payloads are the serialized batch as `Bytes`, cloned per frame, sent as they are.
//! - Consumer: `FramedRead<TcpStream, LengthDelimitedCodec>`, `while let Some(frame) =
//!   framed.next().await`, then `serde_json::from_slice::<Vec<Record>>(&frame)` (typed) or nothing
//!   (raw).
//! - The codec on both sides: 4-byte big-endian length, max frame length 16 MiB (framepipe's default
//!   limit), so the bytes on the wire are identical to framepipe's.
//!
//! Why it is a fair comparison: it carries the same stream (same `Record` type and serde derive, same
//! serializer and parser — framepipe uses serde_json too unless its opt-in `sonic` feature is on —
//! byte-identical frames), in the same shape (a source feeding a writer through a bounded queue; one
//! current-thread Tokio runtime per process, like every stack here), checked by the same consumer
//! tally. Nothing is handicapped: sockets keep the defaults `TcpStream::connect` and
//! `TcpListener::bind` give (framepipe sets its own documented defaults, SPEC §5.2), each frame is
//! sent with `send` as tokio-util's documentation shows, and the code is the short, obvious version,
//! not a strawman. It is also not hand-tuned (no `feed` batching, no buffer reuse, no vectored
//! writes): such tuning is what framepipe packages, and what a user would otherwise have to write.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use framepipe::producer::generator;
use framepipe::reference::Record;
use futures::{SinkExt, Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::child::{announce, Consumed, Produced, Tally};
use crate::workload::{body, Payload, Shape, HEADER_LEN};

/// Items in flight between the generator task and the writer.
const CHANNEL_CAPACITY: usize = 16;

/// Largest frame either side accepts: 16 MiB, framepipe's default `max_frame_length`.
const MAX_FRAME_LENGTH: usize = 16 * 1024 * 1024;

/// The codec both sides use: 4-byte big-endian length, then the body.
fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(HEADER_LEN as usize)
        .big_endian()
        .max_frame_length(MAX_FRAME_LENGTH)
        .new_codec()
}

/// Listens on an ephemeral loopback port, accepts one connection and reads it to the end.
pub(crate) async fn consume(shape: &Shape) -> Result<Consumed, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    announce(listener.local_addr().map_err(|e| e.to_string())?);
    let (stream, _) = listener
        .accept()
        .await
        .map_err(|e| format!("accept failed: {e}"))?;
    let started = Instant::now();
    let mut framed = FramedRead::new(stream, codec());
    let mut tally = Tally::default();
    while let Some(frame) = framed.next().await {
        let frame = frame.map_err(|e| format!("frame {}: {e}", tally.frames()))?;
        let wire_len = frame.len() + HEADER_LEN as usize;
        match shape.payload {
            Payload::Typed | Payload::Prepared => {
                let batch: Vec<Record> = serde_json::from_slice(&frame)
                    .map_err(|e| format!("frame {}: {e}", tally.frames()))?;
                tally.typed(&batch, wire_len);
            }
            Payload::Raw => tally.raw(&frame, wire_len),
        }
    }
    Ok(Consumed {
        tally,
        elapsed: started.elapsed(),
    })
}

/// Connects to `addr` and sends the stream.
pub(crate) async fn produce(shape: &Shape, addr: SocketAddr) -> Result<Produced, String> {
    match shape.payload {
        Payload::Typed => {
            let started = Instant::now();
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let source = generator::reference_frames(shape.frames, shape.records_per_frame);
            let (frames, wire_bytes) = send_all(stream, source, |batch| {
                serde_json::to_vec(&**batch).map(Bytes::from)
            })
            .await?;
            Ok(Produced {
                frames,
                wire_bytes,
                elapsed: started.elapsed(),
            })
        }
        Payload::Raw | Payload::Prepared => {
            let body = Bytes::from(body(shape.records_per_frame));
            let started = Instant::now();
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let source = futures::stream::iter((0..shape.frames).map(move |_| body.clone()));
            let (frames, wire_bytes) = send_all(stream, source, |body| {
                Ok::<_, serde_json::Error>(body.clone())
            })
            .await?;
            Ok(Produced {
                frames,
                wire_bytes,
                elapsed: started.elapsed(),
            })
        }
    }
}

/// The generator task feeds `source` through the channel; this task encodes each item into a body
/// with `encode` and sends it as one frame. Returns the frames and wire bytes sent.
async fn send_all<T, S, E>(
    stream: TcpStream,
    source: S,
    encode: impl Fn(&T) -> Result<Bytes, E>,
) -> Result<(u64, u64), String>
where
    T: Send + 'static,
    S: Stream<Item = T> + Send + Unpin + 'static,
    E: std::fmt::Display,
{
    let (tx, mut rx) = mpsc::channel::<T>(CHANNEL_CAPACITY);
    let generator = tokio::spawn(async move {
        let mut source = source;
        while let Some(item) = source.next().await {
            if tx.send(item).await.is_err() {
                break; // the writer failed; it says why
            }
        }
    });
    let mut framed = FramedWrite::new(stream, codec());
    let (mut frames, mut wire_bytes) = (0u64, 0u64);
    while let Some(item) = rx.recv().await {
        let body = encode(&item).map_err(|e| format!("frame {frames}: {e}"))?;
        let len = body.len() as u64;
        framed
            .send(body)
            .await
            .map_err(|e| format!("sending frame {frames}: {e}"))?;
        frames += 1;
        wire_bytes += HEADER_LEN + len;
    }
    SinkExt::<Bytes>::close(&mut framed)
        .await
        .map_err(|e| format!("closing after {frames} frames: {e}"))?;
    generator
        .await
        .map_err(|e| format!("the generator task failed: {e}"))?;
    Ok((frames, wire_bytes))
}
