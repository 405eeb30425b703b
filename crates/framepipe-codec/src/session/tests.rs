use bytes::{BufMut, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::limits::MAX_CONTROL_LENGTH;
use crate::{Builder, Error, FramePart, Notice};

fn hello() -> Control {
    Control::Hello(Hello {
        version: PROTOCOL_VERSION,
        session: SessionId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
        next: 7,
        max_frame_length: 16 << 20,
        pacing: Pacing {
            ack_every: 64,
            ack_interval_ms: 50,
            heartbeat_ms: 1000,
        },
        secret: None,
    })
}

fn welcome() -> Control {
    Control::Welcome(Welcome {
        version: PROTOCOL_VERSION,
        session: SessionId::from_u128(9),
        next: 5,
        pacing: Pacing {
            ack_every: 32,
            ack_interval_ms: 20,
            heartbeat_ms: 500,
        },
    })
}

fn every_kind() -> Vec<Control> {
    vec![
        hello(),
        welcome(),
        Control::Ack { next: u64::MAX },
        Control::Heartbeat,
        Control::Goodbye { next: 3 },
        Control::Notice(Notice::new("shutting_down", 4, 400, "bye")),
    ]
}

fn framer() -> SessionFramer {
    SessionFramer::new(Builder::new())
}

fn bad_control(err: Error) -> (u64, String) {
    match err {
        Error::BadControl { offset, what } => (offset, what),
        other => panic!("expected BadControl, got {other:?}"),
    }
}

#[test]
fn each_kind_round_trips_and_its_header_says_kind_and_length() {
    // SPEC §9.1.2, §9.3.
    for control in every_kind() {
        let wire = control.to_frame().unwrap();
        assert_eq!(wire[0], CONTROL_BIT | control.kind() as u8, "{control:?}");
        let len = u32::from_be_bytes(wire[..4].try_into().unwrap()) & 0xFF_FFFF;
        assert_eq!(len as usize, wire.len() - 4);
        let mut src = wire.clone();
        let unit = framer().next_unit(&mut src).unwrap();
        assert_eq!(unit, Some(Unit::Control { control, offset: 0 }));
        assert!(src.is_empty());
    }
}

#[test]
fn the_layouts_are_the_specified_sizes() {
    // SPEC §9.3: hello 48 (+ 16 with its secret, below), welcome 40, ack and goodbye 8, heartbeat 0.
    let sizes: Vec<usize> = every_kind()[..5]
        .iter()
        .map(|c| c.to_frame().unwrap().len() - 4)
        .collect();
    assert_eq!(sizes, [48, 40, 8, 0, 8]);
    let wire = hello().to_frame().unwrap();
    assert_eq!(&wire[4..8], b"FPS1");
    assert!(starts_session(wire[0]));
}

#[test]
fn data_frames_between_control_frames_keep_their_indices_and_true_offsets() {
    // SPEC §9.1.4: control frames are not counted as frames; offsets count every byte.
    let mut wire = BytesMut::new();
    hello().encode(&mut wire).unwrap();
    wire.put_slice(b"\x00\x00\x00\x02[]");
    Control::Heartbeat.encode(&mut wire).unwrap();
    wire.put_slice(b"\x00\x00\x00\x03[1]");
    let mut f = framer();
    let mut units = Vec::new();
    while let Some(unit) = f.next_unit(&mut wire).unwrap() {
        units.push(unit);
    }
    let Unit::Data(first) = &units[1] else {
        panic!("{units:?}")
    };
    assert_eq!((first.index, first.offset), (0, 52));
    assert_eq!(
        units[2],
        Unit::Control {
            control: Control::Heartbeat,
            offset: 58
        }
    );
    let Unit::Data(second) = &units[3] else {
        panic!("{units:?}")
    };
    assert_eq!((second.index, second.offset), (1, 62));
    assert_eq!((f.frames_seen(), f.bytes_consumed()), (2, 69));
}

#[test]
fn an_unknown_kind_is_refused_from_the_header() {
    // SPEC §9.1.3.
    let mut src = BytesMut::from(&b"\x00\x00\x00\x00\x87\x00\x00\x01"[..]);
    let mut f = framer();
    assert!(matches!(f.next_unit(&mut src), Ok(Some(Unit::Data(_)))));
    let (offset, what) = bad_control(f.next_unit(&mut src).unwrap_err());
    assert_eq!(offset, 4);
    assert!(what.contains("unknown control kind 7"), "{what}");
}

#[test]
fn a_payload_over_the_limit_is_refused_before_it_arrives() {
    // SPEC §9.1.2: checked from the 4 header bytes; nothing of the payload is awaited.
    let mut src = BytesMut::new();
    src.put_u32(0x8300_0000 | (MAX_CONTROL_LENGTH + 1));
    let err = framer().next_unit(&mut src).unwrap_err();
    let (_, what) = bad_control(err);
    assert!(what.contains("4097 payload bytes"), "{what}");
    assert_eq!(src.len(), 4, "nothing consumed");
}

#[test]
fn a_short_payload_is_refused_and_a_longer_one_is_read() {
    // SPEC §9.3: shorter than the layout is BadControl; extra bytes are ignored.
    let mut short = BytesMut::from(&b"\x83\x00\x00\x04\x00\x00\x00\x01"[..]);
    let (_, what) = bad_control(framer().next_unit(&mut short).unwrap_err());
    assert!(
        what.contains("ack frame needs 8 payload bytes, got 4"),
        "{what}"
    );
    let mut long = BytesMut::from(&b"\x83\x00\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x09\xff\xff"[..]);
    let unit = framer().next_unit(&mut long).unwrap();
    assert_eq!(
        unit,
        Some(Unit::Control {
            control: Control::Ack { next: 9 },
            offset: 0
        })
    );
}

#[test]
fn a_hello_without_the_magic_is_not_a_session() {
    // SPEC §9.2.4.
    let mut wire = hello().to_frame().unwrap();
    wire[4..8].copy_from_slice(b"GET ");
    let (offset, what) = bad_control(framer().next_unit(&mut wire).unwrap_err());
    assert_eq!(offset, 0);
    assert!(what.contains("\"GET \""), "{what}");
}

#[test]
fn a_notice_payload_must_be_a_notice() {
    let mut src = BytesMut::from(&b"\x86\x00\x00\x02[]"[..]);
    let (_, what) = bad_control(framer().next_unit(&mut src).unwrap_err());
    assert!(what.contains("string \"error\""), "{what}");
}

#[test]
fn a_notice_too_long_to_be_a_control_frame_is_not_written() {
    let notice = Notice {
        error: "x".repeat(5000),
        frame: 0,
        offset: 0,
        message: String::new(),
    };
    let mut dst = BytesMut::new();
    let err = Control::Notice(notice).encode(&mut dst).unwrap_err();
    assert!(
        matches!(err, Error::BodyTooLarge { max: 4096, .. }),
        "{err}"
    );
    assert!(dst.is_empty());
}

#[test]
fn a_stream_ending_inside_a_control_frame_is_truncated() {
    // SPEC §9.4, §3.4.
    let wire = hello().to_frame().unwrap();
    for cut in 1..wire.len() {
        let mut src = BytesMut::from(&wire[..cut]);
        let mut f = framer();
        assert_eq!(f.next_unit(&mut src).unwrap(), None, "cut at {cut}");
        assert_eq!(
            f.bytes_needed(&src),
            (wire.len() - cut) as u64 - u64::from(cut < 4) * 48
        );
        let Err(Error::Truncated { part, offset, .. }) = f.check_eof(&src) else {
            panic!("cut at {cut}")
        };
        assert_eq!(
            part,
            if cut < 4 {
                FramePart::Header
            } else {
                FramePart::Body
            }
        );
        assert_eq!(offset, 0);
    }
}

#[test]
fn data_frames_are_capped_below_the_control_bit() {
    // SPEC §9.1.1: a limit of 2^31 or more is read as 2^31 − 1.
    let f = SessionFramer::new(Builder::new().max_frame_length(u32::MAX));
    let mut src = BytesMut::from(&b"\x7f\xff\xff\xff"[..]);
    let mut f = f;
    assert_eq!(
        f.next_unit(&mut src).unwrap(),
        None,
        "2^31 − 1 is a data frame"
    );
}

#[test]
fn session_ids_show_as_hex() {
    let id = SessionId::from_u128(0xab);
    assert_eq!(id.to_hex(), format!("{:032x}", 0xab));
    assert_eq!(SessionId::from_u128(id.as_u128()), id);
}

fn arb_control() -> impl Strategy<Value = Control> {
    let pacing = (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(a, b, c)| Pacing {
        ack_every: a,
        ack_interval_ms: b,
        heartbeat_ms: c,
    });
    prop_oneof![
        (
            any::<u16>(),
            any::<u128>(),
            any::<u64>(),
            any::<u32>(),
            pacing.clone(),
            arb_secret(),
        )
            .prop_map(|(version, id, next, max_frame_length, pacing, secret)| {
                Control::Hello(Hello {
                    version,
                    session: SessionId::from_u128(id),
                    next,
                    max_frame_length,
                    pacing,
                    secret,
                })
            }),
        (any::<u16>(), any::<u128>(), any::<u64>(), pacing).prop_map(
            |(version, id, next, pacing)| Control::Welcome(Welcome {
                version,
                session: SessionId::from_u128(id),
                next,
                pacing,
            })
        ),
        any::<u64>().prop_map(|next| Control::Ack { next }),
        Just(Control::Heartbeat),
        any::<u64>().prop_map(|next| Control::Goodbye { next }),
        ("[a-z_]{1,20}", any::<u64>(), any::<u64>(), ".{0,100}").prop_map(
            |(code, frame, offset, msg)| Control::Notice(Notice::new(&code, frame, offset, msg))
        ),
    ]
}

fn arb_secret() -> impl Strategy<Value = Option<ResumeSecret>> {
    proptest::option::of(any::<[u8; SECRET_LEN]>().prop_map(ResumeSecret::from_bytes))
}

/// A session stream's units: data bodies (no control bit in their length) or control frames.
fn arb_units() -> impl Strategy<Value = Vec<Result<Vec<u8>, Control>>> {
    let unit = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Ok),
        arb_control().prop_map(Err),
    ];
    proptest::collection::vec(unit, 0..20)
}

proptest! {
    /// Any mix of data and control frames, cut into any pieces, reads back as the same units, with
    /// data frames numbered among themselves and every offset true (SPEC §9.1.4, §9.4).
    #[test]
    fn any_session_stream_in_any_pieces_reads_back(units in arb_units(), cuts in proptest::collection::vec(1usize..64, 1..40)) {
        let mut wire = BytesMut::new();
        let mut offsets = Vec::new();
        for unit in &units {
            offsets.push(wire.len() as u64);
            match unit {
                Ok(body) => { wire.put_u32(body.len() as u32); wire.put_slice(body); }
                Err(control) => control.encode(&mut wire).unwrap(),
            }
        }
        let mut f = framer();
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        let (mut at, mut cut) = (0, cuts.iter().cycle());
        while at < wire.len() || !src.is_empty() {
            let step = (*cut.next().unwrap()).min(wire.len() - at);
            src.extend_from_slice(&wire[at..at + step]);
            at += step;
            while let Some(unit) = f.next_unit(&mut src).unwrap() {
                got.push(unit);
            }
            if step == 0 { break; }
        }
        f.check_eof(&src).unwrap();
        prop_assert_eq!(got.len(), units.len());
        let mut data_index = 0;
        for ((unit, got), offset) in units.iter().zip(&got).zip(&offsets) {
            match (unit, got) {
                (Ok(body), Unit::Data(frame)) => {
                    prop_assert_eq!(&frame.body[..], &body[..]);
                    prop_assert_eq!((frame.index, frame.offset), (data_index, *offset));
                    data_index += 1;
                }
                (Err(control), Unit::Control { control: c, offset: o }) => {
                    // A notice's text is read with its control characters escaped (SPEC §6.3.3).
                    let control = match control {
                        Control::Notice(n) => Control::Notice(Notice {
                            message: crate::escape_text(&n.message).into_owned(),
                            error: crate::escape_text(&n.error).into_owned(),
                            ..n.clone()
                        }),
                        other => other.clone(),
                    };
                    prop_assert_eq!(c, &control);
                    prop_assert_eq!(o, offset);
                }
                (want, got) => prop_assert!(false, "wanted {:?}, got {:?}", want, got),
            }
        }
    }
}

#[test]
fn a_secret_rides_after_the_hellos_layout_with_its_flag_and_a_short_one_is_bad_control() {
    // SPEC §9.3: flag bit 0, then 16 bytes after the hello's 48.
    let secret = ResumeSecret::from_bytes(*b"0123456789abcdef");
    let Control::Hello(h) = hello() else {
        unreachable!()
    };
    let with_secret = Control::Hello(Hello {
        secret: Some(secret),
        ..h
    });
    let wire = with_secret.to_frame().unwrap();
    assert_eq!(&wire[..4], &[0x81, 0, 0, 64]);
    assert_eq!(&wire[10..12], &FLAG_SECRET.to_be_bytes());
    assert_eq!(&wire[52..], b"0123456789abcdef");
    let decoded = Control::decode(Kind::Hello, &wire[4..], 0).unwrap();
    assert_eq!(decoded, with_secret);
    // The flag without the 16 bytes.
    let (offset, what) = bad_control(Control::decode(Kind::Hello, &wire[4..60], 9).unwrap_err());
    assert_eq!(offset, 9);
    assert!(what.contains("resume secret"), "{what}");
    // Without the flag, bytes after the layout are ignored (a later version's fields).
    let mut unflagged = wire[4..].to_vec();
    unflagged[6..8].copy_from_slice(&[0, 0]);
    let Control::Hello(read) = Control::decode(Kind::Hello, &unflagged, 0).unwrap() else {
        unreachable!()
    };
    assert_eq!(read.secret, None);
}

#[test]
fn logs_see_a_fingerprint_and_never_the_whole_id_or_the_secret() {
    // SPEC §10.4.6.
    let id = SessionId::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
    assert_eq!(id.to_string(), "01234567");
    assert_eq!(format!("{id:?}"), "SessionId(01234567…)");
    assert_eq!(id.to_hex(), "0123456789abcdef0011223344556677");
    let secret = ResumeSecret::from_bytes(*b"0123456789abcdef");
    assert_eq!(format!("{secret:?}"), "ResumeSecret(…)");
    assert!(secret.matches(&ResumeSecret::from_bytes(*b"0123456789abcdef")));
    assert!(!secret.matches(&ResumeSecret::from_bytes(*b"0123456789abcdeF")));
}
