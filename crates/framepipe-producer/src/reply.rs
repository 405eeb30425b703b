//! What the consumer sends back: nothing until it closes, one rejection notice, or bytes that
//! cannot be one (SPEC §6.3).
//!
//! The producer reads its socket throughout (SPEC §6.2.4) into one fixed buffer:
//!
//! ```text
//!  +---------+---------------------------------+
//!  | len (4) | body (len ≤ MAX_NOTICE_LENGTH)  |   4 + 4,096 bytes, allocated once, never grown
//!  +---------+---------------------------------+
//!   len > MAX_NOTICE_LENGTH ──► not a notice (decided from the first 4 bytes)
//!   whole body not a notice ──► not a notice
//! ```
//!
//! Nothing is read once the reply is decided, so a peer that keeps sending costs at most this
//! buffer plus the socket's receive queue (`SO_RCVBUF`, SPEC §5.2).

use std::io;

use framepipe_codec::limits::HEADER_LEN;
use framepipe_codec::{Notice, MAX_NOTICE_LENGTH};
use serde::Deserialize;
use tokio::net::TcpStream;

/// Most bytes of the consumer's reply held at once: a header and the longest notice body.
pub(crate) const REPLY_BUFFER: usize = HEADER_LEN + MAX_NOTICE_LENGTH as usize;

/// Bytes of an unexpected reply shown in the error (before escaping).
const PREVIEW_BYTES: usize = 32;

/// What the consumer said back, if anything.
#[derive(Debug)]
pub(crate) enum PeerSaid {
    /// One well-formed notice: the consumer refused a frame (or the connection) and says why.
    Notice(Notice),
    /// End of stream with nothing before it: the consumer read everything and closed, or closed
    /// its sending direction only.
    Closed,
    /// Reading failed (usually `ECONNRESET`) before a whole notice arrived.
    Failed(io::Error),
    /// Bytes that cannot be a notice.
    Unexpected(Unexpected),
}

/// Bytes the consumer sent that are not a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unexpected {
    /// Bytes read before deciding (at most [`REPLY_BUFFER`]).
    pub(crate) received: usize,
    /// The first of them, escaped for display (see [`preview`]).
    pub(crate) preview: String,
}

/// What the bytes read so far are.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// A prefix of a notice: read on.
    More,
    /// A whole notice (anything after it is ignored).
    Notice(Notice),
    /// Not a notice, whatever follows.
    NotNotice,
}

/// A notice as read: `error` is required, the rest default, unknown fields are ignored, so a
/// consumer newer than this producer (a notice with a code or field it does not know, such as
/// `connection_limit` without a frame index) still reads as a rejection.
#[derive(Deserialize)]
struct WireNotice {
    error: String,
    #[serde(default)]
    frame: u64,
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    message: String,
}

/// Decides what `bytes`, the first bytes the consumer sent, are (SPEC §6.3.3). Looks at no more
/// than [`REPLY_BUFFER`] bytes.
fn classify(bytes: &[u8]) -> Verdict {
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Verdict::More;
    };
    let len = u32::from_be_bytes(header.try_into().expect("4 bytes"));
    if len > MAX_NOTICE_LENGTH {
        return Verdict::NotNotice;
    }
    let end = HEADER_LEN + len as usize;
    let Some(body) = bytes.get(HEADER_LEN..end) else {
        return Verdict::More;
    };
    match serde_json::from_slice::<WireNotice>(body) {
        Ok(n) => Verdict::Notice(Notice {
            error: n.error,
            frame: n.frame,
            offset: n.offset,
            message: n.message,
        }),
        Err(_) => Verdict::NotNotice,
    }
}

/// The first [`PREVIEW_BYTES`] of `bytes` for an error message: printable ASCII as is, anything
/// else escaped (`\r`, `\n`, `\x00`, `\"`), and `…` if `bytes` is longer.
pub(crate) fn preview(bytes: &[u8]) -> String {
    let mut out: String = bytes
        .iter()
        .take(PREVIEW_BYTES)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    if bytes.len() > PREVIEW_BYTES {
        out.push('…');
    }
    out
}

fn unexpected(bytes: &[u8]) -> PeerSaid {
    PeerSaid::Unexpected(Unexpected {
        received: bytes.len(),
        preview: preview(bytes),
    })
}

/// Reads what the consumer sends back until it is decided (SPEC §6.3).
///
/// Holds one buffer of [`REPLY_BUFFER`] bytes, allocated once; stops reading as soon as the reply
/// is decided, however much more the consumer sends.
pub(crate) async fn watch_peer(stream: &TcpStream) -> PeerSaid {
    let mut buf = vec![0u8; REPLY_BUFFER];
    let mut got = 0;
    loop {
        if let Err(e) = stream.readable().await {
            return PeerSaid::Failed(e);
        }
        // SPEC §6.3.3: a verdict is always reached by the time the buffer is full (a header
        // announcing at most MAX_NOTICE_LENGTH fits it whole), so `buf[got..]` is never empty here.
        match stream.try_read(&mut buf[got..]) {
            Ok(0) if got == 0 => return PeerSaid::Closed,
            // The stream ended inside what would have been a notice.
            Ok(0) => return unexpected(&buf[..got]),
            Ok(n) => {
                got += n;
                match classify(&buf[..got]) {
                    Verdict::More => debug_assert!(got < buf.len()),
                    Verdict::Notice(notice) => return PeerSaid::Notice(notice),
                    Verdict::NotNotice => return unexpected(&buf[..got]),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return PeerSaid::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(error: &str) -> Notice {
        Notice {
            error: error.into(),
            frame: 3,
            offset: 312,
            message: "frame 3 at byte 312 announces 5000 bytes".into(),
        }
    }

    /// `bytes` fed in two reads split at every offset: the verdict is `More` until the end (or
    /// until the bytes decide), then the same as for the whole.
    fn verdict_at_every_split(bytes: &[u8]) -> Verdict {
        let whole = classify(bytes);
        for cut in 0..bytes.len() {
            match classify(&bytes[..cut]) {
                Verdict::More => {}
                early => {
                    assert_eq!(early, whole, "decided at {cut} of {}", bytes.len());
                }
            }
        }
        whole
    }

    #[test]
    fn a_whole_notice_is_a_notice_whatever_its_code() {
        for code in [
            "frame_too_large",
            "connection_limit",
            "a_code_from_the_future",
        ] {
            let n = notice(code);
            let wire = n.to_frame();
            assert_eq!(verdict_at_every_split(&wire), Verdict::Notice(n));
        }
    }

    #[test]
    fn a_notice_with_missing_or_extra_fields_still_reads_as_one() {
        let body = br#"{"error":"connection_limit","message":"busy","retry_ms":500}"#;
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(body);
        assert_eq!(
            verdict_at_every_split(&wire),
            Verdict::Notice(Notice {
                error: "connection_limit".into(),
                frame: 0,
                offset: 0,
                message: "busy".into(),
            })
        );
    }

    #[test]
    fn bytes_after_a_whole_notice_are_ignored() {
        let n = notice("truncated");
        let mut wire = n.to_frame().to_vec();
        wire.extend_from_slice(b"trailing");
        assert_eq!(classify(&wire), Verdict::Notice(n));
    }

    #[test]
    fn a_header_over_the_notice_limit_is_decided_from_four_bytes() {
        assert_eq!(classify(b"HTT"), Verdict::More);
        assert_eq!(classify(b"HTTP"), Verdict::NotNotice);
        assert_eq!(
            verdict_at_every_split(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            Verdict::NotNotice
        );
        let over = (MAX_NOTICE_LENGTH + 1).to_be_bytes();
        assert_eq!(classify(&over), Verdict::NotNotice);
        assert_eq!(classify(&MAX_NOTICE_LENGTH.to_be_bytes()), Verdict::More);
    }

    #[test]
    fn a_whole_frame_that_is_not_a_notice_is_not_one() {
        for body in [
            &b""[..],
            b"{}",
            b"[1,2,3]",
            br#"{"error":7}"#,
            b"\xff\xfe not json",
        ] {
            let mut wire = (body.len() as u32).to_be_bytes().to_vec();
            wire.extend_from_slice(body);
            assert_eq!(
                verdict_at_every_split(&wire),
                Verdict::NotNotice,
                "{body:?}"
            );
        }
    }

    #[test]
    fn the_longest_notice_fits_the_buffer() {
        let body = format!(
            r#"{{"error":"x","frame":0,"offset":0,"message":"{}"}}"#,
            "m".repeat(MAX_NOTICE_LENGTH as usize - 47)
        );
        assert_eq!(body.len(), MAX_NOTICE_LENGTH as usize);
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(body.as_bytes());
        assert_eq!(wire.len(), REPLY_BUFFER);
        assert!(matches!(classify(&wire), Verdict::Notice(_)));
        assert_eq!(classify(&wire[..REPLY_BUFFER - 1]), Verdict::More);
    }

    #[test]
    fn the_preview_escapes_and_is_short() {
        assert_eq!(
            preview(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            r"HTTP/1.1 400 Bad Request\r\n\r\n"
        );
        assert_eq!(preview(b"\x00\xff\"a"), r#"\x00\xff\"a"#);
        let long = preview(&[b'a'; 1000]);
        assert_eq!(long, format!("{}…", "a".repeat(PREVIEW_BYTES)));
    }
}
