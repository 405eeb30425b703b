//! Arbitrary bytes as one stream of typed frames (SPEC §1.2, §3.2), fed in chunks.
//!
//! Input: byte 0 = chunk size − 1; the rest is the stream. Asserts: no panic; a body that decodes as a
//! `serde_json::Value` also passes the validate-only parse (`IgnoredAny`); a decoded value re-encodes
//! to JSON that decodes to the same value. (Not the converse: validation checks syntax, and a number
//! such as `1e400` is valid JSON that no `f64` holds — found by this target, SPEC §7.2.)
#![no_main]

use bytes::BytesMut;
use framepipe_codec::{parse_json_body, JsonCodec, RawCodec};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let [chunk, stream @ ..] = data else {
        return;
    };
    let step = *chunk as usize + 1;
    let mut raw = RawCodec::new();
    let mut buf = BytesMut::new();
    for (i, piece) in stream.chunks(step).enumerate() {
        buf.extend_from_slice(piece);
        let last = (i + 1) * step >= stream.len();
        loop {
            let decoded = if last { raw.decode_eof(&mut buf) } else { raw.decode(&mut buf) };
            let body = match decoded {
                Ok(Some(body)) => body,
                Ok(None) | Err(_) => break,
            };
            let typed = parse_json_body::<Value>(&body, 0, 0);
            let validated = parse_json_body::<serde::de::IgnoredAny>(&body, 0, 0);
            assert!(typed.is_err() || validated.is_ok(), "{typed:?} / {validated:?}");
            if let Ok(value) = typed {
                let mut codec = JsonCodec::<Value>::new();
                let mut frame = BytesMut::new();
                codec.encode(&value, &mut frame).unwrap();
                assert_eq!(codec.decode(&mut frame).unwrap(), Some(value));
            }
        }
        if last {
            break;
        }
    }
});
