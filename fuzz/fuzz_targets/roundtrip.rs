//! Encode → decode round trip of arbitrary frames, raw and typed, fed back in arbitrary chunks
//! (SPEC §1): what is decoded equals what was encoded, and re-encoding it gives the same bytes.
#![no_main]

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use framepipe_codec::{JsonCodec, RawCodec};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

#[derive(Debug, Clone, PartialEq, Arbitrary, Serialize, Deserialize)]
enum Item {
    Text(String),
    Number(i64),
    Float(Finite),
    Flag(bool),
    List(Vec<Item>),
    Record { name: String, tags: Vec<String>, score: Option<u32> },
}

impl Item {
    fn depth(&self) -> usize {
        match self {
            Item::List(items) => 1 + items.iter().map(Item::depth).max().unwrap_or(0),
            _ => 1,
        }
    }
}

/// A finite float: JSON has no NaN or infinity (serde_json writes them as `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Finite(f64);

impl<'a> Arbitrary<'a> for Finite {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let f = f64::arbitrary(u)?;
        Ok(Finite(if f.is_finite() { f } else { 0.0 }))
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    raw: Vec<Vec<u8>>,
    typed: Vec<Item>,
    step: u16,
}

fn feed<D: Decoder>(codec: &mut D, wire: &[u8], step: usize) -> Vec<D::Item>
where
    D::Error: std::fmt::Debug,
{
    let (mut buf, mut out) = (BytesMut::new(), Vec::new());
    for piece in wire.chunks(step) {
        buf.extend_from_slice(piece);
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            out.push(item);
        }
    }
    assert!(codec.decode_eof(&mut buf).unwrap().is_none());
    out
}

fuzz_target!(|input: Input| {
    // A framepipe decoder refuses nesting deeper than 128 (SPEC §1.2.4), which the encoder does not
    // check (§1.4.4; found by this target). Each `Item` level is two JSON levels (enum tag object and
    // array), plus the record's own; 120 leaves a margin below serde_json's exact cut-off.
    if input.typed.iter().any(|item| 2 * item.depth() + 1 > 120) {
        return;
    }
    let step = usize::from(input.step) + 1;
    let bodies: Vec<Bytes> = input.raw.into_iter().map(Bytes::from).collect();
    let mut wire = BytesMut::new();
    for body in &bodies {
        RawCodec::new().encode(body.clone(), &mut wire).unwrap();
    }
    let decoded = feed(&mut RawCodec::new(), &wire, step);
    assert_eq!(decoded, bodies);

    let mut codec = JsonCodec::<Item>::new();
    let mut wire = BytesMut::new();
    for item in &input.typed {
        codec.encode(item, &mut wire).unwrap();
    }
    let decoded = feed(&mut JsonCodec::<Item>::new(), &wire, step);
    // Floats survive exactly (serde_json's float_roundtrip): the values compare equal.
    assert_eq!(decoded, input.typed);
    let mut again = BytesMut::new();
    for item in &decoded {
        codec.encode(item, &mut again).unwrap();
    }
    assert_eq!(again, wire);
});
