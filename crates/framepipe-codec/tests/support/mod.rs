//! Shared by the integration tests: the reference record type, the test vectors, and feeding helpers.
#![allow(dead_code, unreachable_pub)]

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use tokio_util::codec::Decoder;

/// `seed-frame-1.bin`: `uint32BE(len) + JSON.stringify([record])` from the JavaScript producer.
pub const SEED_FRAME_1: &[u8] = include_bytes!("../../../../fixtures/seed-frame-1.bin");
/// `seed-frame-50.bin`: the reference frame, 50 copies of the record.
pub const SEED_FRAME_50: &[u8] = include_bytes!("../../../../fixtures/seed-frame-50.bin");
/// The reference record, pretty-printed.
pub const SAMPLE_RECORD: &str = include_str!("../../../../fixtures/sample-record.json");

/// The reference record, fields in the order the JavaScript producer writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    #[serde(rename = "_id")]
    pub id: String,
    pub isactive: bool,
    pub balance: String,
    pub picture: String,
    pub age: u32,
    pub eyecolor: String,
    pub name: String,
    pub gender: String,
    pub company: String,
    pub email: String,
    pub phone: String,
    pub address: String,
    pub about: String,
    pub registered: String,
    pub latitude: f64,
    pub longitude: f64,
    pub tags: Vec<String>,
    pub friends: Vec<Friend>,
    pub greeting: String,
    pub favoritefruit: String,
}

/// One element of [`Record::friends`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Friend {
    pub id: u32,
    pub name: String,
}

pub fn record() -> Record {
    serde_json::from_str(SAMPLE_RECORD).expect("sample-record.json parses as Record")
}

pub fn batch(n: usize) -> Vec<Record> {
    vec![record(); n]
}

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
