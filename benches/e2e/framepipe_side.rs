//! The `framepipe` stack: both sides written the way the crates' documentation shows, with every
//! default (budgets, socket options, write batching, sampling) and no tuning.
//!
//! - Producer: `Producer::builder().connect(addr)`, then `send_json` of
//!   `generator::reference_frames(frames, records_per_frame)` (typed), or `send_raw` of one
//!   serialized batch as `Bytes`, cloned per frame (raw: a reference count, not a copy). Both return
//!   once the consumer has closed its end, which confirms it read everything.
//!   Prepared payloads (`payload`, `parallel`) are sent like raw ones.
//! - Consumer: `Consumer::builder().bind(..)`, then `accept` with `Json::<Vec<Record>>` (typed and
//!   prepared) or `Raw`, and the connection consumed as a `Stream` of deliveries. Any error item
//!   fails the run. `framepipe-decode-2` is the same with `.decode_workers(2)` (SPEC §7.8).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use framepipe::consumer::{Consumer, Json, Raw};
use framepipe::producer::{generator, Producer};
use framepipe::reference::Record;
use futures::StreamExt;

use crate::child::{announce, Consumed, Produced, Tally};
use crate::workload::{body, Payload, Shape};

/// Listens on an ephemeral loopback port, accepts one connection and consumes it to the end.
pub(crate) async fn consume(shape: &Shape, decode_workers: usize) -> Result<Consumed, String> {
    let mut consumer = Consumer::builder()
        .decode_workers(decode_workers)
        .bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    announce(consumer.local_addr().map_err(|e| e.to_string())?);
    let mut tally = Tally::default();
    let started;
    match shape.payload {
        Payload::Typed | Payload::Prepared => {
            let mut conn = consumer
                .accept(Json::<Vec<Record>>::new())
                .await
                .map_err(|e| format!("accept failed: {e}"))?;
            started = Instant::now();
            while let Some(delivery) = conn.next().await {
                let delivery = delivery.map_err(|e| e.to_string())?;
                tally.typed(&delivery.item, delivery.wire_bytes);
            }
        }
        Payload::Raw => {
            let mut conn = consumer
                .accept(Raw)
                .await
                .map_err(|e| format!("accept failed: {e}"))?;
            started = Instant::now();
            while let Some(delivery) = conn.next().await {
                let delivery = delivery.map_err(|e| e.to_string())?;
                tally.raw(&delivery.item, delivery.wire_bytes);
            }
        }
    }
    Ok(Consumed {
        tally,
        elapsed: started.elapsed(),
    })
}

/// Connects to `addr` and sends the stream.
pub(crate) async fn produce(shape: &Shape, addr: SocketAddr) -> Result<Produced, String> {
    let frames = shape.frames;
    // The raw body is the workload, not the work: built before the clock starts, by every stack.
    let raw_body = match shape.payload {
        Payload::Raw | Payload::Prepared => Some(Bytes::from(body(shape.records_per_frame))),
        Payload::Typed => None,
    };
    let started = Instant::now();
    let conn = Producer::builder()
        .connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let report = match raw_body {
        None => {
            conn.send_json(generator::reference_frames(frames, shape.records_per_frame))
                .await
        }
        Some(body) => {
            conn.send_raw(futures::stream::iter(
                (0..frames).map(move |_| body.clone()),
            ))
            .await
        }
    }
    .map_err(|e| e.to_string())?;
    if !report.confirmed {
        return Err(format!(
            "all {} frames were written but the consumer did not confirm by closing",
            report.snapshot.frames_written
        ));
    }
    Ok(Produced {
        frames: report.snapshot.frames_written,
        wire_bytes: report.snapshot.bytes_written,
        elapsed: started.elapsed(),
    })
}
