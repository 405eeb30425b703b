//! Unit tests of the framer: the SPEC §3 state machine, scripted byte by byte.

use super::*;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn framer(max: u32, policy: OversizePolicy) -> Framer {
    Builder::new()
        .max_frame_length(max)
        .oversize_policy(policy)
        .framer()
}

/// Splits off every complete frame in `src`.
fn drain(framer: &mut Framer, src: &mut BytesMut) -> Result<Vec<Frame>, Error> {
    let mut out = Vec::new();
    while let Some(frame) = framer.next_frame(src)? {
        out.push(frame);
    }
    Ok(out)
}

fn bodies(frames: &[Frame]) -> Vec<&[u8]> {
    frames.iter().map(|f| &f.body[..]).collect()
}

#[test]
fn zero_length_frames_are_frames() {
    // SPEC §1.1: N = 0 is a valid frame with an empty body.
    let mut framer = Framer::new(Builder::new());
    let mut src = BytesMut::from(&[frame(b""), frame(b"x"), frame(b"")].concat()[..]);
    let frames = drain(&mut framer, &mut src).unwrap();
    assert_eq!(bodies(&frames), [&b""[..], b"x", b""]);
    assert_eq!(framer.frames_seen(), 3);
    assert_eq!(framer.bytes_consumed(), 13);
    assert!(framer.check_eof(&src).is_ok());
}

#[test]
fn frames_carry_their_index_offset_and_wire_length() {
    // SPEC §3.1.3: indexes count skipped frames; offsets are those of the headers.
    let mut framer = framer(5, OversizePolicy::Skip);
    let stream = [frame(b"ab"), frame(b"toolong"), frame(b""), frame(b"cde")].concat();
    let mut src = BytesMut::from(&stream[..]);
    let first = framer.next_frame(&mut src).unwrap().unwrap();
    assert!(matches!(
        framer.next_frame(&mut src),
        Err(Error::FrameSkipped {
            frame: 1,
            offset: 6,
            ..
        })
    ));
    let rest = drain(&mut framer, &mut src).unwrap();
    let got: Vec<(u64, u64, usize)> = [first]
        .iter()
        .chain(&rest)
        .map(|f| (f.index, f.offset, f.wire_len()))
        .collect();
    assert_eq!(got, [(0, 0, 6), (2, 17, 4), (3, 21, 7)]);
    assert_eq!(&rest[1].body[..], b"cde");
    assert_eq!(framer.bytes_consumed(), stream.len() as u64);
}

#[test]
fn frames_split_at_every_offset_come_out_the_same() {
    let stream = [frame(b"one"), frame(b""), frame(&[7; 40]), frame(b"four")].concat();
    let whole = drain(
        &mut Framer::new(Builder::new()),
        &mut BytesMut::from(&stream[..]),
    )
    .unwrap();
    assert_eq!(whole.len(), 4);
    for cut in 0..=stream.len() {
        let mut framer = Framer::new(Builder::new());
        let mut src = BytesMut::from(&stream[..cut]);
        let mut got = drain(&mut framer, &mut src).unwrap();
        assert_eq!(framer.mid_frame(src.len()), framer.check_eof(&src).is_err());
        src.extend_from_slice(&stream[cut..]);
        got.extend(drain(&mut framer, &mut src).unwrap());
        assert_eq!(got, whole, "cut at {cut}");
        assert!(framer.check_eof(&src).is_ok());
    }
}

#[test]
fn close_policy_reports_index_offset_and_repeats() {
    // SPEC §3.3, §4: two good frames (9 + 4 bytes), then one announcing max + 1.
    let mut framer = framer(5, OversizePolicy::Close);
    let bytes = [
        frame(b"hello"),
        frame(b""),
        6u32.to_be_bytes().to_vec(),
        b"abc".to_vec(),
    ]
    .concat();
    let mut src = BytesMut::from(&bytes[..]);
    let err = drain(&mut framer, &mut src).unwrap_err();
    match err {
        Error::FrameTooLarge {
            frame,
            offset,
            length,
            max,
        } => assert_eq!((frame, offset, length, max), (2, 13, 6, 5)),
        other => panic!("unexpected {other:?}"),
    }
    // The header is not consumed: the same error comes back, nothing was buffered for the body.
    assert_eq!(src.len(), 7);
    assert!(matches!(
        framer.next_frame(&mut src),
        Err(Error::FrameTooLarge { frame: 2, .. })
    ));
    assert_eq!(framer.frame_in_progress(), 2);
}

#[test]
fn limit_is_inclusive() {
    let mut framer = framer(5, OversizePolicy::Close);
    let mut src = BytesMut::from(&frame(b"12345")[..]);
    let frames = drain(&mut framer, &mut src).unwrap();
    assert_eq!(bodies(&frames), [b"12345"]);
}

#[test]
fn another_protocol_at_byte_zero_is_named_under_either_policy() {
    // SPEC §3.5: only the first header of a stream is classified.
    for policy in [OversizePolicy::Close, OversizePolicy::Skip] {
        let mut framer = framer(100, policy);
        let mut src = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(
            framer.next_frame(&mut src),
            Err(Error::NotFramepipe {
                looks_like: "an HTTP request",
                ..
            })
        ));
        assert_eq!(src.len(), 16, "nothing consumed or skipped");
    }
    let mut framer = framer(100, OversizePolicy::Close);
    let mut src = BytesMut::from(&[frame(b"x"), b"GET ".to_vec()].concat()[..]);
    assert!(matches!(
        drain(&mut framer, &mut src),
        Err(Error::FrameTooLarge {
            frame: 1,
            offset: 5,
            ..
        })
    ));
}

#[test]
fn skip_policy_discards_without_buffering_and_continues() {
    // SPEC §3.3: a 100-byte frame over a 10-byte limit, arriving in 7-byte pieces.
    let mut framer = framer(10, OversizePolicy::Skip);
    let stream = [frame(b"a"), frame(&[b'z'; 100]), frame(b"b")].concat();
    let mut src = BytesMut::new();
    let mut delivered = Vec::new();
    let mut skipped = Vec::new();
    let mut seen_skipping = false;
    for chunk in stream.chunks(7) {
        src.extend_from_slice(chunk);
        loop {
            match drain(&mut framer, &mut src) {
                Ok(frames) => {
                    delivered.extend(frames);
                    break;
                }
                Err(e) => {
                    assert!(e.is_frame_local());
                    skipped.push((e.frame_index(), e.offset()));
                }
            }
        }
        if framer.is_skipping() {
            seen_skipping = true;
            assert!(src.is_empty());
            assert!(framer.mid_frame(0));
            assert_eq!(framer.frame_in_progress(), 1);
        }
        // Never more than one piece plus a partial header is held.
        assert!(src.len() < 7 + HEADER_LEN, "held {} bytes", src.len());
    }
    assert!(seen_skipping);
    assert_eq!(bodies(&delivered), [b"a", b"b"]);
    assert_eq!(
        delivered.iter().map(|f| f.index).collect::<Vec<_>>(),
        [0, 2]
    );
    assert_eq!(skipped, [(Some(1), Some(5))]);
    assert_eq!(framer.frames_seen(), 3);
    assert_eq!(framer.bytes_consumed(), stream.len() as u64);
    assert!(framer.check_eof(&src).is_ok());
}

#[test]
fn eof_between_frames_is_clean_and_inside_one_is_truncated() {
    // SPEC §3.4.
    let cases: [(&[u8], FramePart, u64, u64, u64); 4] = [
        (&[0, 0], FramePart::Header, 0, 4, 2),
        (&[0, 0, 0, 9, b'a', b'b'], FramePart::Body, 0, 9, 2),
        (&[0, 0, 0, 1, b'a', 0, 0, 0], FramePart::Header, 5, 4, 3),
        (&[0, 0, 0, 1, b'a', 0, 0, 0, 3], FramePart::Body, 5, 3, 0),
    ];
    for (bytes, want_part, want_offset, want_expected, want_received) in cases {
        let mut framer = Framer::new(Builder::new());
        let mut src = BytesMut::from(bytes);
        drain(&mut framer, &mut src).unwrap();
        assert!(framer.mid_frame(src.len()));
        match framer.check_eof(&src) {
            Err(Error::Truncated {
                part,
                offset,
                expected,
                received,
                ..
            }) => assert_eq!(
                (part, offset, expected, received),
                (want_part, want_offset, want_expected, want_received),
                "{bytes:?}"
            ),
            other => panic!("{bytes:?}: unexpected {other:?}"),
        }
    }
}

#[test]
fn eof_while_skipping_is_truncated() {
    let mut framer = framer(1, OversizePolicy::Skip);
    let mut src = BytesMut::from(&[0, 0, 0, 50, 1, 2, 3][..]);
    assert!(matches!(
        framer.next_frame(&mut src),
        Err(Error::FrameSkipped { length: 50, .. })
    ));
    assert!(matches!(framer.next_frame(&mut src), Ok(None)));
    assert_eq!(framer.bytes_needed(src.len()), 47);
    assert!(matches!(
        framer.check_eof(&src),
        Err(Error::Truncated {
            expected: 50,
            received: 3,
            part: FramePart::Body,
            ..
        })
    ));
}

#[test]
fn progress_is_reported_for_headers_and_bodies() {
    let mut framer = Framer::new(Builder::new());
    let mut src = BytesMut::new();
    assert!(!framer.mid_frame(0));
    assert_eq!(framer.bytes_needed(0), 4);
    src.extend_from_slice(&[0, 0]);
    assert_eq!(framer.next_frame(&mut src).unwrap(), None);
    assert_eq!(framer.bytes_needed(src.len()), 2);
    assert_eq!(framer.frame_in_progress(), 0);
    src.extend_from_slice(&[0, 10, b'h', b'i']);
    assert_eq!(framer.next_frame(&mut src).unwrap(), None);
    assert_eq!(framer.bytes_needed(src.len()), 8);
    assert_eq!(framer.frame_in_progress(), 0);
    assert_eq!(framer.frames_seen(), 1, "the header has been read");
    src.extend_from_slice(b"01234567");
    assert_eq!(framer.next_frame(&mut src).unwrap().unwrap().index, 0);
    assert_eq!(framer.frame_in_progress(), 1);
    assert!(!framer.mid_frame(0));
}

#[test]
fn the_callers_buffer_is_never_grown_or_replaced() {
    // The framer has no buffer policy: announce 4 GiB - 1 under the format's own limit, send a
    // little, and the buffer keeps its allocation and capacity; a body that fills it exactly is
    // split off without the rest of the buffer moving.
    let mut framer = framer(u32::MAX, OversizePolicy::Close);
    let mut src = BytesMut::with_capacity(64);
    src.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3]);
    let (ptr, capacity) = (src.as_ptr(), src.capacity());
    for _ in 0..3 {
        assert_eq!(framer.next_frame(&mut src).unwrap(), None);
        assert_eq!(
            (src.as_ptr(), src.capacity()),
            (ptr.wrapping_add(4), capacity - 4)
        );
    }
    assert_eq!(framer.bytes_needed(src.len()), u64::from(u32::MAX) - 3);

    // A large body (over the codecs' 256 KiB retained capacity) is handed over in place, and the
    // bytes after it stay where they are.
    let mut framer = Framer::new(Builder::new().max_frame_length(1 << 20));
    let stream = [frame(&vec![9; 1 << 19]), vec![0, 0]].concat();
    let mut src = BytesMut::with_capacity(stream.len());
    src.extend_from_slice(&stream);
    let ptr = src.as_ptr();
    let frame = framer.next_frame(&mut src).unwrap().unwrap();
    assert_eq!(frame.body.as_ptr(), ptr.wrapping_add(HEADER_LEN));
    assert_eq!(src.as_ptr(), ptr.wrapping_add(frame.wire_len()));
    assert_eq!(src.capacity(), 2);
    assert_eq!(framer.next_frame(&mut src).unwrap(), None);
    assert_eq!(src.capacity(), 2);
}
