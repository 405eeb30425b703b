//! A stream of reference payloads: the workload the demo, the example binaries and the benchmarks send.

use std::sync::Arc;

use futures::Stream;

use crate::reference::Record;

/// `frames` payloads, each a batch of `records_per_frame` copies of the reference record
/// (`fixtures/sample-record.json`, embedded at build time).
///
/// The batch is built once and shared (`Arc`), so the stream itself costs nothing per item: what is
/// measured is the producer. Serialized, a 50-record batch is the reference frame, byte-identical to
/// the JavaScript producer's (60,901 bytes of body).
pub fn reference_frames(
    frames: u64,
    records_per_frame: usize,
) -> impl Stream<Item = Arc<Vec<Record>>> + Send + Unpin + 'static {
    let batch = Arc::new(vec![Record::reference(); records_per_frame]);
    futures::stream::iter((0..frames).map(move |_| batch.clone()))
}
