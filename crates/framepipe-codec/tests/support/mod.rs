//! Shared by the integration tests: the reference record type, the test vectors, and feeding helpers.
#![allow(dead_code, unreachable_pub, unused_imports)] // each test binary uses part of this module

use bytes::BytesMut;
use tokio_util::codec::Decoder;

/// `seed-frame-1.bin`: `uint32BE(len) + JSON.stringify([record])` from the JavaScript producer.
pub const SEED_FRAME_1: &[u8] = include_bytes!("../../../../fixtures/seed-frame-1.bin");
/// `seed-frame-50.bin`: the reference frame, 50 copies of the record.
pub const SEED_FRAME_50: &[u8] = include_bytes!("../../../../fixtures/seed-frame-50.bin");
/// The reference record type, compiled from the producer crate's own source so there is one definition.
#[path = "../../../framepipe-producer/src/reference.rs"]
mod reference;
pub use reference::{reference_batch as batch, Record};

/// Feeds `chunks` to `codec` one at a time, decoding after each, then signals end of stream.
/// Returns every item (or the first error) in order.
pub fn decode_chunks<D, I>(codec: &mut D, chunks: I) -> Result<Vec<D::Item>, D::Error>
where
    D: Decoder,
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk.as_ref());
        while let Some(item) = codec.decode(&mut buf)? {
            out.push(item);
        }
    }
    while let Some(item) = codec.decode_eof(&mut buf)? {
        out.push(item);
    }
    Ok(out)
}

/// Splits `bytes` into pieces of the given sizes (cycled; 0 is taken as 1).
pub fn chunked<'a>(bytes: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = bytes;
    let mut i = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = sizes[i % sizes.len()].max(1).min(rest.len());
        i += 1;
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}
