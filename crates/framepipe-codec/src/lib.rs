//! Length-prefixed JSON framing for framepipe: the wire format and nothing else.
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +---------------------------------------------------------------+
//! |             body length N (u32, big-endian)                   |
//! +---------------------------------------------------------------+
//! |             body: N bytes (one JSON value in typed mode)  ... |
//! +---------------------------------------------------------------+
//! ```
//!
//! This crate turns bytes into frames and frames into bytes. It has no sockets, tasks or clocks: it
//! implements `tokio_util::codec::{Decoder, Encoder}`, so it plugs into `FramedRead`, `FramedWrite` and
//! `Framed`, and anything else (the framepipe producer and consumer, fuzzers, tests) drives it over a
//! `BytesMut`.
//!
//! - [`RawCodec`]: bodies as [`bytes::Bytes`], split off the read buffer without copying
//!   ([`RawCodec::decode_frame`] also gives each [`Frame`]'s index and byte offset).
//! - [`JsonCodec<T>`]: bodies parsed into `T` with serde_json, and any `Serialize` item encoded straight
//!   into the output buffer. [`parse_json_body`] parses one body the same way, borrowing from it if
//!   `T` does.
//! - [`Framer`]: the framing state machine alone (SPEC §3.1), for readers that manage their own
//!   buffers; the codecs are a framer plus the read-buffer policy of SPEC §2.2 and §2.3.
//! - [`Builder`]: every limit, with the defaults of SPEC.md §2 ([`limits`]).
//! - [`Error`]: one error type; every decoding error names the frame index and byte offset.
//! - [`Lenient`]: keeps a `FramedRead` going after frame-local errors such as one invalid JSON body.
//! - [`Notice`]: the rejection notice a consumer may send back, and [`Notice::read`], the one rule
//!   for reading it (SPEC §6.3).
//! - [`escape_preview`]: how bytes from the wire are shown in messages; [`escape_text`]: how text
//!   from a peer is.
//! - [`session`]: the bytes of session mode (SPEC §9): control frames between data frames, and the
//!   [`SessionFramer`](session::SessionFramer) that reads them.
//!
//! Untrusted lengths are checked against `max_frame_length` before anything is reserved, and the read
//! buffer grows with the bytes that actually arrive: a peer that announces 4 GiB and sends 10 bytes
//! costs about 10 bytes.
//!
//! ```
//! use bytes::BytesMut;
//! use framepipe_codec::{Error, JsonCodec};
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let mut codec = JsonCodec::<serde_json::Value>::new();
//! let mut wire = BytesMut::new();
//! codec.encode(serde_json::json!([{"id": 1}]), &mut wire)?;
//! assert_eq!(&wire[..4], &[0, 0, 0, 10]); // [{"id":1}] is 10 bytes
//!
//! // Bytes may arrive in any pieces; the decoder waits for whole frames.
//! let mut rx = BytesMut::from(&wire[..7]);
//! assert_eq!(codec.decode(&mut rx)?, None);
//! rx.extend_from_slice(&wire[7..]);
//! assert_eq!(codec.decode(&mut rx)?, Some(serde_json::json!([{"id": 1}])));
//! # Ok::<(), Error>(())
//! ```
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod builder;
mod error;
mod escape_preview;
mod frame_writer;
mod framer;
mod json;
mod lenient;
pub mod limits;
mod notice;
mod policy;
mod raw;
mod read_policy;
pub mod session;

pub use builder::Builder;
pub use error::{Error, FramePart};
pub use escape_preview::{escape_preview, escape_text};
pub use frame_writer::frame_header;
pub use framer::{Frame, Framer};
pub use json::{parse_json_body, JsonCodec};
pub use lenient::Lenient;
pub use notice::{Notice, NoticeRead, MAX_NOTICE_LENGTH};
pub use policy::OversizePolicy;
pub use raw::RawCodec;
