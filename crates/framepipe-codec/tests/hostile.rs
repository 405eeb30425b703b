//! Hostile and malformed input at codec level (SPEC §3, §4): every case ends in a clear, typed error,
//! and frame-local errors lose nothing but the offending frame.

mod support;

use bytes::{Bytes, BytesMut};
use framepipe_codec::{Builder, Error, FramePart, JsonCodec, Lenient, OversizePolicy, RawCodec};
use futures::executor::block_on;
use futures::StreamExt;
use serde_json::Value;
use support::{batch, Record, SEED_FRAME_1, SEED_FRAME_50};
use tokio_util::codec::{Decoder, FramedRead};

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Decodes one frame from `bytes` with a `Value` codec, as if the stream then ended.
fn decode_value(bytes: &[u8]) -> Result<Option<Value>, Error> {
    let mut buf = BytesMut::from(bytes);
    JsonCodec::<Value>::new().decode_eof(&mut buf)
}

#[test]
fn announced_length_u32_max_is_refused_before_any_body_arrives() {
    let mut buf = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF, b'x'][..]);
    let err = RawCodec::new().decode(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        Error::FrameTooLarge {
            frame: 0,
            offset: 0,
            length: 4_294_967_295,
            max: 16_777_216
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("4294967295") && msg.contains("raise max_frame_length"),
        "{msg}"
    );
}

/// SPEC §3.5: a stream that opens with another protocol is named as such, under either policy.
#[test]
fn an_http_request_is_not_a_framepipe_stream_rather_than_a_huge_frame() {
    for policy in [OversizePolicy::Close, OversizePolicy::Skip] {
        let mut codec = Builder::new().oversize_policy(policy).raw_codec();
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut buf = BytesMut::from(&request[..]);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotFramepipe {
                    looks_like: "an HTTP request",
                    header: [b'G', b'E', b'T', b' '],
                    length: 1_195_725_856,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("not a framepipe stream"),
            "{err}"
        );
        assert!(!err.is_frame_local());
        // Nothing was consumed or skipped.
        assert_eq!(buf.len(), request.len());
    }
    let mut tls = BytesMut::from(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]);
    let err = RawCodec::new().decode(&mut tls).unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    // JSON without headers.
    let mut json = BytesMut::from(&br#"{"id":1}"#[..]);
    let err = RawCodec::new().decode(&mut json).unwrap_err();
    assert!(err.to_string().contains("without length headers"), "{err}");
}

/// SPEC §3.5.3: only a stream's first header is classified; binary garbage is just too large.
#[test]
fn later_headers_and_binary_garbage_are_frame_too_large() {
    let mut codec = RawCodec::new();
    let mut buf = BytesMut::from(&frame(b"ok")[..]);
    buf.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(&codec.decode(&mut buf).unwrap().unwrap()[..], b"ok");
    assert!(matches!(
        codec.decode(&mut buf),
        Err(Error::FrameTooLarge {
            frame: 1,
            offset: 6,
            ..
        })
    ));
    let mut garbage = BytesMut::from(&[0xC3, 0x28, 0xA0, 0xA1, 0xE2][..]);
    assert!(matches!(
        RawCodec::new().decode(&mut garbage),
        Err(Error::FrameTooLarge { frame: 0, .. })
    ));
    // Within the limit, text-looking bytes are a length like any other.
    let mut codec = Builder::new().max_frame_length(u32::MAX).raw_codec();
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1"[..]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
}

#[test]
fn limit_plus_one_is_refused_and_limit_is_accepted() {
    let mut codec = Builder::new().max_frame_length(1000).raw_codec();
    let mut buf = BytesMut::from(&frame(&[b'a'; 1000])[..]);
    assert_eq!(codec.decode(&mut buf).unwrap().unwrap().len(), 1000);
    buf.extend_from_slice(&frame(&[b'a'; 1001]));
    assert!(matches!(
        codec.decode(&mut buf),
        Err(Error::FrameTooLarge {
            frame: 1,
            offset: 1004,
            length: 1001,
            max: 1000
        })
    ));
}

#[test]
fn skip_policy_reports_the_oversized_frame_and_delivers_the_next() {
    let mut codec = Builder::new()
        .max_frame_length(1000)
        .oversize_policy(OversizePolicy::Skip)
        .raw_codec();
    let stream = [frame(&[1; 1001]), frame(b"after")].concat();
    let mut buf = BytesMut::from(&stream[..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(err.is_frame_local());
    assert!(matches!(
        err,
        Error::FrameSkipped {
            frame: 0,
            length: 1001,
            ..
        }
    ));
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Bytes::from_static(b"after"))
    );
}

#[test]
fn truncated_header_and_body_are_reported_at_eof() {
    let mut buf = BytesMut::from(&SEED_FRAME_1[..3]);
    let err = RawCodec::new().decode_eof(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        Error::Truncated {
            part: FramePart::Header,
            expected: 4,
            received: 3,
            ..
        }
    ));
    assert!(
        err.to_string().contains("stream ended inside frame 0"),
        "{err}"
    );

    let mut buf = BytesMut::from(&SEED_FRAME_50[..30_000]);
    let err = JsonCodec::<Vec<Record>>::new()
        .decode_eof(&mut buf)
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Truncated {
            part: FramePart::Body,
            expected: 60_901,
            received: 29_996,
            ..
        }
    ));
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[test]
fn invalid_utf8_is_invalid_json() {
    let err = decode_value(&frame(b"[\"\xff\xfe\"]")).unwrap_err();
    match &err {
        Error::InvalidJson { line, column, .. } => assert_eq!((*line, *column), (1, 3)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("not valid JSON"), "{err}");
    assert!(err.to_string().contains("invalid UTF-8"), "{err}");

    // Located on later lines too, like serde_json's own errors.
    let err = decode_value(&frame(b"[1,\n \"ok\",\n  \"\xc3\"]")).unwrap_err();
    match &err {
        Error::InvalidJson { line, column, .. } => assert_eq!((*line, *column), (3, 4)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn invalid_utf8_is_rejected_even_where_the_value_is_ignored() {
    // serde_json's slice reader skips ignored strings without checking their UTF-8; SPEC §3.2 says
    // every body is UTF-8, so a field the type ignores must not smuggle invalid bytes through.
    #[derive(serde::Deserialize, Debug)]
    struct OnlyA {
        #[allow(dead_code)]
        a: u32,
    }
    let body: &[u8] = b"{\"a\":1,\"skipped\":\"\xff\"}";
    let err = JsonCodec::<OnlyA>::new()
        .decode(&mut BytesMut::from(&frame(body)[..]))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidJson { .. }), "{err:?}");
    let err = framepipe_codec::parse_json_body::<serde::de::IgnoredAny>(body, 0, 0).unwrap_err();
    assert!(
        matches!(err, Error::InvalidJson { column: 19, .. }),
        "{err:?}"
    );
}

#[test]
fn non_json_body_names_line_and_column() {
    let err = decode_value(&frame(b"{\"a\":1,\n nope}")).unwrap_err();
    match err {
        Error::InvalidJson {
            frame: 0,
            length: 14,
            line: 2,
            column,
            ..
        } => assert!(column > 0),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn nesting_ten_thousand_deep_is_an_error_not_a_stack_overflow() {
    let body = [vec![b'['; 10_000], vec![b']'; 10_000]].concat();
    let err = decode_value(&frame(&body)).unwrap_err();
    assert!(matches!(err, Error::InvalidJson { .. }), "{err:?}");
    assert!(err.to_string().contains("recursion limit"), "{err}");
    // Same for a typed target whose Deserialize recurses.
    let mut buf = BytesMut::from(&frame(&body)[..]);
    assert!(JsonCodec::<Vec<Record>>::new().decode(&mut buf).is_err());
}

#[test]
fn trailing_garbage_after_the_value_is_refused_but_whitespace_is_fine() {
    let err = decode_value(&frame(b"[1,2] [3]")).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidJson {
                line: 1,
                column: 7,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("trailing characters"), "{err}");
    assert_eq!(
        decode_value(&frame(b" [1,2]\r\n\t ")).unwrap(),
        Some(serde_json::json!([1, 2]))
    );
}

#[test]
fn empty_frame_in_typed_mode_is_a_frame_local_error() {
    let err = decode_value(&frame(b"")).unwrap_err();
    assert!(matches!(
        err,
        Error::EmptyFrame {
            frame: 0,
            offset: 0
        }
    ));
    assert!(err.is_frame_local());
    assert!(err.to_string().contains("use the raw codec"), "{err}");
}

#[test]
fn wrong_shape_is_unexpected_json_with_position() {
    let mut buf = BytesMut::from(&frame(br#"[{"_id": 5}]"#)[..]);
    let err = JsonCodec::<Vec<Record>>::new()
        .decode(&mut buf)
        .unwrap_err();
    match &err {
        Error::UnexpectedJson {
            line: 1, column, ..
        } => assert!(*column > 0),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string().contains("does not match the expected type"),
        "{err}"
    );
}

/// SPEC §4.1: after a frame-local error the very next frame decodes normally.
#[test]
fn invalid_json_is_frame_local_when_driving_the_decoder() {
    let stream = [
        SEED_FRAME_1.to_vec(),
        frame(b"{not json"),
        frame(b""),
        frame(br#"{"wrong":"shape"}"#),
        SEED_FRAME_1.to_vec(),
    ]
    .concat();
    let mut codec = JsonCodec::<Vec<Record>>::new();
    let mut buf = BytesMut::from(&stream[..]);
    let mut outcomes = Vec::new();
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(items)) => outcomes.push(Ok(items.len())),
            Ok(None) => break,
            Err(e) => {
                assert!(e.is_frame_local(), "{e}");
                outcomes.push(Err(e.frame_index().unwrap()));
            }
        }
    }
    assert_eq!(outcomes, [Ok(1), Err(1), Err(2), Err(3), Ok(1)]);
}

/// `FramedRead` ends its stream at the first error; `Lenient` keeps it going past frame-local ones,
/// while a fatal error still ends it.
#[test]
fn lenient_framed_read_continues_after_bad_frames_and_stops_at_fatal_ones() {
    let stream = [
        SEED_FRAME_50.to_vec(),
        frame(b"[{\"_id\""), // cut-off JSON: a syntax error, not a type mismatch
        SEED_FRAME_1.to_vec(),
        vec![0, 0, 0], // truncated header at EOF
    ]
    .concat();
    let plain: Vec<_> =
        block_on(FramedRead::new(&stream[..], JsonCodec::<Vec<Record>>::new()).collect::<Vec<_>>());
    assert_eq!(
        plain.len(),
        2,
        "plain FramedRead stops after the first error"
    );
    assert!(plain[1].is_err());

    let lenient: Vec<_> = block_on(
        FramedRead::new(&stream[..], Lenient::new(JsonCodec::<Vec<Record>>::new()))
            .collect::<Vec<_>>(),
    );
    assert_eq!(lenient.len(), 4, "{lenient:?}");
    assert!(*lenient[0].as_ref().unwrap().as_ref().unwrap() == batch(50));
    assert!(matches!(
        lenient[1],
        Ok(Err(Error::InvalidJson { frame: 1, .. }))
    ));
    assert!(*lenient[2].as_ref().unwrap().as_ref().unwrap() == batch(1));
    assert!(matches!(
        lenient[3],
        Err(Error::Truncated {
            frame: 3,
            part: FramePart::Header,
            ..
        })
    ));
}

#[test]
fn encoder_refuses_what_the_limit_forbids_and_writes_nothing() {
    use tokio_util::codec::Encoder;
    let mut codec = Builder::new().max_frame_length(100).json_codec::<Value>();
    let mut dst = BytesMut::new();
    let err = codec.encode(vec!["x".repeat(200)], &mut dst).unwrap_err();
    assert!(
        matches!(
            err,
            Error::BodyTooLarge {
                length: 204, // ["x"×200]: 200 + 2 quotes + 2 brackets
                max: 100
            }
        ),
        "{err:?}"
    );
    assert!(dst.is_empty());
    // A map with non-string keys cannot be JSON.
    let bad: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
    let err = codec.encode(&bad, &mut dst).unwrap_err();
    assert!(matches!(err, Error::Serialize(_)), "{err:?}");
    assert!(dst.is_empty());
}
