//! Properties of the codecs (SPEC §1, §3): any sequence of frames, encoded and fed in any chunking,
//! decodes to the same sequence, and re-encoding what was decoded gives the same bytes.

mod support;

use bytes::{Bytes, BytesMut};
use framepipe_codec::{Builder, Error, JsonCodec, OversizePolicy, RawCodec};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};
use support::{chunked, decode_chunks};
use tokio_util::codec::{Decoder, Encoder};

/// Body sizes from 0 to 300 KiB, weighted towards small ones (most bugs live near boundaries).
fn body_len() -> impl Strategy<Value = usize> {
    prop_oneof![4 => 0usize..16, 3 => 0usize..4096, 1 => 0usize..300 * 1024]
}

/// A body of `len` pseudo-random bytes (cheap to generate at any size, unlike `vec(any::<u8>())`).
fn body(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..8, 1usize..70_000], 1..6)
}

/// Any JSON value serde_json can hold: finite numbers, any Unicode strings, nesting up to 4 deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Serde shapes a `Value` cannot hold: non-finite and `f32` floats, 128-bit and non-string map
/// keys, enums, chars, bytes, options, newtypes and tuples.
#[derive(Debug, Clone, serde::Serialize)]
enum Shape {
    Unit,
    Newtype(f32),
    Tuple(i128, char),
    Struct { bytes: Vec<u8>, u: u128 },
}

#[derive(Debug, Clone, serde::Serialize)]
struct Typed {
    float: f64,
    single: f32,
    text: String,
    keys: std::collections::BTreeMap<i32, Option<String>>,
    char_keys: std::collections::BTreeMap<char, bool>,
    shapes: Vec<Shape>,
    unit: (),
    pair: (u8, Option<u16>),
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Unit),
        any::<f32>().prop_map(Shape::Newtype),
        (any::<i128>(), any::<char>()).prop_map(|(i, c)| Shape::Tuple(i, c)),
        (any::<Vec<u8>>(), any::<u128>()).prop_map(|(bytes, u)| Shape::Struct { bytes, u }),
    ]
}

fn typed() -> impl Strategy<Value = Typed> {
    (
        // Every bit pattern: NaN and infinities (written as `null`), subnormals, -0.0.
        any::<u64>().prop_map(f64::from_bits),
        any::<u32>().prop_map(f32::from_bits),
        any::<String>(),
        any::<std::collections::BTreeMap<i32, Option<String>>>(),
        any::<std::collections::BTreeMap<char, bool>>(),
        prop::collection::vec(shape(), 0..4),
        (any::<u8>(), any::<Option<u16>>()),
    )
        .prop_map(
            |(float, single, text, keys, char_keys, shapes, pair)| Typed {
                float,
                single,
                text,
                keys,
                char_keys,
                shapes,
                unit: (),
                pair,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// SPEC §1.4: the typed encoder writes exactly the bytes `serde_json::to_vec` gives, whichever
    /// serializer is compiled in (serde_json, or sonic-rs under the `sonic` feature).
    #[test]
    fn typed_items_encode_exactly_as_serde_json(items in prop::collection::vec(typed(), 1..4)) {
        let mut codec = JsonCodec::<()>::new();
        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        for item in &items {
            codec.encode(item, &mut wire).unwrap();
            let json = serde_json::to_vec(item).unwrap();
            expected.extend_from_slice(&(json.len() as u32).to_be_bytes());
            expected.extend_from_slice(&json);
        }
        prop_assert!(wire == expected, "{}", String::from_utf8_lossy(&wire));
    }

    #[test]
    fn raw_frames_survive_any_chunking(
        frames in prop::collection::vec((body_len(), any::<u64>()), 0..8),
        sizes in chunk_sizes(),
    ) {
        let bodies: Vec<Bytes> = frames.iter().map(|&(len, seed)| body(len, seed)).collect();
        let mut codec = RawCodec::new();
        let mut wire = BytesMut::new();
        for b in &bodies {
            codec.encode(b.clone(), &mut wire).unwrap();
        }
        let decoded = decode_chunks(&mut RawCodec::new(), chunked(&wire, &sizes)).unwrap();
        prop_assert_eq!(&decoded, &bodies);
        let mut again = BytesMut::new();
        for b in decoded {
            codec.encode(b, &mut again).unwrap();
        }
        prop_assert!(again == wire);
    }

    #[test]
    fn json_values_survive_any_chunking(
        values in prop::collection::vec(json_value(), 0..8),
        sizes in chunk_sizes(),
    ) {
        let mut codec = JsonCodec::<Value>::new();
        let mut wire = BytesMut::new();
        for v in &values {
            codec.encode(v, &mut wire).unwrap();
        }
        let decoded = decode_chunks(&mut JsonCodec::<Value>::new(), chunked(&wire, &sizes)).unwrap();
        prop_assert_eq!(&decoded, &values);
        let mut again = BytesMut::new();
        for v in &decoded {
            codec.encode(v, &mut again).unwrap();
        }
        prop_assert!(again == wire);
        // The typed encoder writes exactly what serde_json would, behind the header.
        let mut expected = Vec::new();
        for v in &values {
            let json = serde_json::to_vec(v).unwrap();
            expected.extend_from_slice(&(json.len() as u32).to_be_bytes());
            expected.extend_from_slice(&json);
        }
        prop_assert!(wire == expected);
    }

    /// Arbitrary bytes never panic the raw decoder, and whatever it decoded re-encodes to exactly
    /// the prefix of the input it came from, until the first error.
    #[test]
    fn arbitrary_bytes_decode_to_a_faithful_prefix_or_a_typed_error(
        input in prop::collection::vec(any::<u8>(), 0..2048),
        max in 0u32..64,
        skip in any::<bool>(),
        sizes in chunk_sizes(),
    ) {
        let policy = if skip { OversizePolicy::Skip } else { OversizePolicy::Close };
        let config = Builder::new().max_frame_length(max).oversize_policy(policy);
        let mut raw = config.raw_codec();
        let mut reencoded = BytesMut::new();
        let mut buf = BytesMut::new();
        let mut first_error = None;
        'feed: for chunk in chunked(&input, &sizes) {
            buf.extend_from_slice(chunk);
            loop {
                match Decoder::decode(&mut raw, &mut buf) {
                    Ok(Some(b)) if first_error.is_none() => {
                        config.raw_codec().encode(b, &mut reencoded).unwrap()
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        let fatal = !e.is_frame_local();
                        first_error.get_or_insert(e);
                        if fatal {
                            break 'feed;
                        }
                    }
                }
            }
        }
        prop_assert!(input[..reencoded.len()] == reencoded[..]);
        match first_error {
            None => {}
            Some(Error::FrameSkipped { frame, .. }) => prop_assert!(skip && frame < input.len() as u64),
            Some(Error::FrameTooLarge { length, max: m, .. }) => prop_assert!(!skip && length > u64::from(m)),
            Some(Error::NotFramepipe { length, max: m, .. }) => prop_assert!(length > u64::from(m) && reencoded.is_empty()),
            Some(other) => prop_assert!(false, "unexpected error {:?}", other),
        }
    }

    /// Arbitrary bytes never panic the typed decoder; it ends with a clean EOF or a typed error, and
    /// frame-local errors let it go on.
    #[test]
    fn arbitrary_bytes_never_panic_the_typed_decoder(
        input in prop::collection::vec(any::<u8>(), 0..2048),
        max in 0u32..64,
        skip in any::<bool>(),
    ) {
        let policy = if skip { OversizePolicy::Skip } else { OversizePolicy::Close };
        let mut typed = Builder::new().max_frame_length(max).oversize_policy(policy).json_codec::<Value>();
        let mut buf = BytesMut::from(&input[..]);
        for _ in 0..=input.len() {
            match Decoder::decode_eof(&mut typed, &mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) if e.is_frame_local() => prop_assert!(e.frame_index().is_some()),
                Err(e) => {
                    prop_assert!(
                        matches!(e, Error::FrameTooLarge { .. } | Error::NotFramepipe { .. } | Error::Truncated { .. }),
                        "unexpected fatal error {:?}", e
                    );
                    break;
                }
            }
        }
    }
}
