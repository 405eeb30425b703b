//! Arbitrary bytes, fed to the raw decoder in chunks of arbitrary size (SPEC §2, §3).
//!
//! Input: byte 0 = chunk size − 1; byte 1 bit 0 = `OversizePolicy::Skip`; bytes 2–3 = max_frame_length
//! (big-endian, so small limits are exercised); the rest is the stream. Asserts: no panic; every body
//! is within the limit; until the first error, re-encoding the bodies gives back exactly the bytes
//! consumed; the buffer never holds much more than what has arrived (no allocation in proportion to
//! an announced length, SPEC §2.2).
#![no_main]

use bytes::BytesMut;
use framepipe_codec::limits::RESERVE_STEP;
use framepipe_codec::{Builder, OversizePolicy, RawCodec};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let [chunk, flags, hi, lo, stream @ ..] = data else {
        return;
    };
    let step = *chunk as usize + 1;
    let max = u32::from(u16::from_be_bytes([*hi, *lo]));
    let policy = if flags & 1 == 1 { OversizePolicy::Skip } else { OversizePolicy::Close };
    let mut codec = Builder::new().max_frame_length(max).oversize_policy(policy).raw_codec();
    let (mut buf, mut again) = (BytesMut::new(), BytesMut::new());
    let mut clean = true;
    for (i, piece) in stream.chunks(step).enumerate() {
        buf.extend_from_slice(piece);
        let last = (i + 1) * step >= stream.len();
        loop {
            let decoded = if last { codec.decode_eof(&mut buf) } else { codec.decode(&mut buf) };
            match decoded {
                Ok(Some(body)) => {
                    assert!(body.len() as u64 <= u64::from(max));
                    RawCodec::new().encode(body, &mut again).unwrap();
                }
                Ok(None) => break,
                Err(e) if e.is_frame_local() => clean = false,
                Err(_) => return,
            }
        }
        assert!(buf.capacity() <= 4 * (buf.len() + step) + 4 * RESERVE_STEP + 64);
    }
    if clean {
        assert_eq!(&again[..], &stream[..again.len()]);
    }
});
