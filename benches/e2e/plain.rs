//! The `plain-tcp` stack (raw workload only): the same bytes copied through a loopback socket with
//! nothing else, the ceiling any framing layer on this machine works under.
//!
//! - Producer: builds the wire bytes (header and body) of [`BLOCK_FRAMES`] reference frames once,
//!   `write_all`s that buffer until all but the last `frames % BLOCK_FRAMES` frames are sent, then
//!   the remainder, then shuts down its sending direction.
//! - Consumer: reads into a [`READ_BUFFER`] buffer until end of stream, counting bytes, and checks the
//!   total is exactly `frames` frames' worth. It does not look at frame boundaries.
//!
//! Both sides use the sockets `TcpStream::connect` and `TcpListener::bind` give, untouched.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::child::{announce, Consumed, Produced, Tally};
use crate::workload::{body, Payload, Shape};

/// Frames in the producer's prebuilt buffer: 64 (3.9 MB of reference frames).
const BLOCK_FRAMES: u64 = 64;

/// The consumer's read buffer: 256 KiB.
const READ_BUFFER: usize = 256 * 1024;

/// Listens on an ephemeral loopback port, accepts one connection and reads it to the end.
pub(crate) async fn consume(shape: &Shape) -> Result<Consumed, String> {
    only_raw(shape)?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen: {e}"))?;
    announce(listener.local_addr().map_err(|e| e.to_string())?);
    let (mut stream, _) = listener
        .accept()
        .await
        .map_err(|e| format!("accept failed: {e}"))?;
    let started = Instant::now();
    let mut buf = vec![0u8; READ_BUFFER];
    let mut tally = Tally::default();
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read failed after {} frames: {e}", tally.frames()))?;
        if n == 0 {
            break;
        }
        tally.bytes(n, shape);
    }
    Ok(Consumed {
        tally,
        elapsed: started.elapsed(),
    })
}

/// Connects to `addr` and writes the stream.
pub(crate) async fn produce(shape: &Shape, addr: SocketAddr) -> Result<Produced, String> {
    only_raw(shape)?;
    let body = body(shape.records_per_frame);
    let header = u32::try_from(body.len())
        .map_err(|_| "the body is longer than a 4-byte length can say".to_string())?
        .to_be_bytes();
    let frame_len = header.len() + body.len();
    let mut block = Vec::with_capacity(frame_len * BLOCK_FRAMES as usize);
    for _ in 0..BLOCK_FRAMES {
        block.extend_from_slice(&header);
        block.extend_from_slice(&body);
    }
    let remainder = &block[..frame_len * (shape.frames % BLOCK_FRAMES) as usize];

    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let mut wire_bytes = 0u64;
    for _ in 0..shape.frames / BLOCK_FRAMES {
        stream
            .write_all(&block)
            .await
            .map_err(|e| format!("write failed after {wire_bytes} bytes: {e}"))?;
        wire_bytes += block.len() as u64;
    }
    stream
        .write_all(remainder)
        .await
        .map_err(|e| format!("write failed after {wire_bytes} bytes: {e}"))?;
    wire_bytes += remainder.len() as u64;
    stream
        .shutdown()
        .await
        .map_err(|e| format!("shutdown failed: {e}"))?;
    Ok(Produced {
        frames: wire_bytes / frame_len as u64,
        wire_bytes,
        elapsed: started.elapsed(),
    })
}

fn only_raw(shape: &Shape) -> Result<(), String> {
    match shape.payload {
        Payload::Raw => Ok(()),
        Payload::Typed | Payload::Prepared => {
            Err("plain-tcp carries only the raw workload".to_string())
        }
    }
}
