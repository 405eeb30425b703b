//! Byte compatibility with the JavaScript producer (SPEC §1.3): the checked-in frames it wrote must be
//! what the typed codec writes for the same batch, and must decode to that batch however they are split.

mod support;

use bytes::{Bytes, BytesMut};
use framepipe_codec::{JsonCodec, RawCodec};
use support::{batch, chunked, decode_chunks, Record, SEED_FRAME_1, SEED_FRAME_50};
use tokio_util::codec::{Decoder, Encoder};

fn vectors() -> [(&'static [u8], usize); 2] {
    [(SEED_FRAME_1, 1), (SEED_FRAME_50, 50)]
}

#[test]
fn vectors_have_the_documented_shape() {
    // shared/fixtures/README.md: 0x000004C3 = 1219-byte body; the reference body is 60,901 bytes.
    assert_eq!(SEED_FRAME_1.len(), 1223);
    assert_eq!(&SEED_FRAME_1[..4], &[0, 0, 0x04, 0xC3]);
    assert_eq!(SEED_FRAME_50.len(), 60_905);
    assert_eq!(
        u32::from_be_bytes(SEED_FRAME_50[..4].try_into().unwrap()),
        60_901
    );
}

#[test]
fn typed_encoding_is_byte_identical_to_the_javascript_producer() {
    for (vector, records) in vectors() {
        let mut codec = JsonCodec::<Vec<Record>>::new();
        let mut out = BytesMut::new();
        codec.encode(&batch(records), &mut out).unwrap();
        assert_eq!(out.len(), vector.len(), "{records}-record frame length");
        assert!(&out[..] == vector, "{records}-record frame bytes differ");
    }
}

#[test]
fn raw_encoding_of_the_body_reproduces_the_frame() {
    for (vector, _) in vectors() {
        let mut out = BytesMut::new();
        RawCodec::new().encode(&vector[4..], &mut out).unwrap();
        assert!(&out[..] == vector);
    }
}

/// SPEC §3.1: every split point, for both modes; the frame must appear only once the last byte is in.
#[test]
fn one_record_vector_decodes_when_split_at_every_offset() {
    check_every_split(SEED_FRAME_1, 1);
}

#[test]
fn reference_vector_decodes_when_split_at_every_offset() {
    check_every_split(SEED_FRAME_50, 50);
}

fn check_every_split(vector: &[u8], records: usize) {
    let expected = batch(records);
    let body = Bytes::copy_from_slice(&vector[4..]);
    for split in 0..=vector.len() {
        let (a, b) = vector.split_at(split);

        let mut raw = RawCodec::new();
        let mut buf = BytesMut::from(a);
        let first = raw.decode(&mut buf).unwrap();
        assert_eq!(first.is_some(), split == vector.len(), "raw split {split}");
        buf.extend_from_slice(b);
        let got = first.or_else(|| raw.decode(&mut buf).unwrap());
        assert_eq!(got.as_ref(), Some(&body), "raw split {split}");
        assert!(buf.is_empty());
        assert_eq!(raw.decode_eof(&mut buf).unwrap(), None);

        let mut typed = JsonCodec::<Vec<Record>>::new();
        let mut buf = BytesMut::from(a);
        let first = typed.decode(&mut buf).unwrap();
        assert_eq!(
            first.is_some(),
            split == vector.len(),
            "typed split {split}"
        );
        buf.extend_from_slice(b);
        let got = first.or_else(|| typed.decode(&mut buf).unwrap());
        assert!(got.as_ref() == Some(&expected), "typed split {split}");
        assert_eq!(typed.decode_eof(&mut buf).unwrap(), None);
    }
}

#[test]
fn vectors_decode_fed_one_byte_at_a_time() {
    for (vector, records) in vectors() {
        let items = decode_chunks(&mut RawCodec::new(), chunked(vector, &[1])).unwrap();
        assert_eq!(items, vec![Bytes::copy_from_slice(&vector[4..])]);
        let items =
            decode_chunks(&mut JsonCodec::<Vec<Record>>::new(), chunked(vector, &[1])).unwrap();
        assert!(items == vec![batch(records)]);
    }
}

#[test]
fn a_stream_of_vectors_decodes_in_order_with_offsets_counted() {
    let mut stream = Vec::new();
    for _ in 0..3 {
        stream.extend_from_slice(SEED_FRAME_1);
        stream.extend_from_slice(SEED_FRAME_50);
    }
    let mut codec = JsonCodec::<Vec<Record>>::new();
    let items = decode_chunks(&mut codec, chunked(&stream, &[4096, 7, 65_536, 1])).unwrap();
    let lens: Vec<usize> = items.iter().map(Vec::len).collect();
    assert_eq!(lens, [1, 50, 1, 50, 1, 50]);
    assert_eq!(codec.frames_decoded(), 6);
    assert_eq!(codec.bytes_decoded(), stream.len() as u64);
}
