//! Arbitrary bytes, fed to the session framer in chunks of arbitrary size (SPEC §9).
//!
//! Input: byte 0 = chunk size − 1; bytes 1–2 = max_frame_length (big-endian, so small limits are
//! exercised); the rest is the stream. Asserts: no panic; every data body is within the limit;
//! control and data units come back in stream order with true offsets; until the first error,
//! re-encoding the units gives back exactly the bytes consumed when every control frame was in its
//! canonical form (a notice's JSON, a hello's flags or a payload longer than its layout are read
//! but not re-encoded byte for byte).
#![no_main]

use bytes::{BufMut, BytesMut};
use framepipe_codec::session::{SessionFramer, Unit};
use framepipe_codec::Builder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [chunk, hi, lo, stream @ ..] = data else {
        return;
    };
    let step = *chunk as usize + 1;
    let max = u32::from(u16::from_be_bytes([*hi, *lo]));
    let mut framer = SessionFramer::new(Builder::new().max_frame_length(max));
    let (mut buf, mut again) = (BytesMut::new(), BytesMut::new());
    let mut canonical = true;
    // Where the next unit starts: until the first error, every byte consumed belongs to a unit.
    let mut next_offset = 0u64;
    for piece in stream.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match framer.next_unit(&mut buf) {
                Ok(Some(Unit::Data(frame))) => {
                    assert!(frame.body.len() as u64 <= u64::from(max));
                    assert_eq!(frame.offset, next_offset);
                    next_offset += frame.wire_len() as u64;
                    again.put_u32(frame.body.len() as u32);
                    again.put_slice(&frame.body);
                }
                Ok(Some(Unit::Control { control, offset })) => {
                    assert_eq!(offset, next_offset);
                    next_offset = framer.bytes_consumed();
                    let wire = control
                        .to_frame()
                        .expect("a decoded control frame re-encodes");
                    canonical &= wire[..] == stream[offset as usize..next_offset as usize];
                    again.put_slice(&wire);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    if canonical {
        assert_eq!(&again[..], &stream[..again.len()]);
    }
});
