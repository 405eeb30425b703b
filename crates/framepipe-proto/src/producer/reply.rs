//! What the consumer sends back, read into one fixed buffer (SPEC §6.3).
//!
//! ```text
//!  +---------+---------------------------------+
//!  | len (4) | body (len ≤ MAX_NOTICE_LENGTH)  |   4 + 4,096 bytes, allocated once, never grown
//!  +---------+---------------------------------+
//!   len > MAX_NOTICE_LENGTH ──► not a notice (decided from the first 4 bytes)
//!   whole body not a notice ──► not a notice
//! ```
//!
//! Nothing is read once the reply is decided, so a peer that keeps sending costs at most this buffer
//! plus the socket's receive queue (SPEC §5.2). The rule itself is the codec's ([`Notice::read`]).

use framepipe_codec::limits::HEADER_LEN;
use framepipe_codec::{escape_preview, Notice, NoticeRead, MAX_NOTICE_LENGTH};

/// Most bytes of the consumer's reply held at once: a header and the longest notice body.
pub const REPLY_BUFFER: usize = HEADER_LEN + MAX_NOTICE_LENGTH as usize;

/// Bytes of an unexpected reply shown in the error (before escaping).
pub const PREVIEW_BYTES: usize = 32;

/// What the bytes read so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Undecided: read on.
    More,
    /// A whole notice.
    Notice(Notice),
    /// Bytes that cannot be a notice (or a stream that ended inside one): how many, and a preview.
    Unexpected { received: usize, preview: String },
    /// End of stream with nothing before it.
    Closed,
}

/// The consumer's reply, read into a buffer of [`REPLY_BUFFER`] bytes allocated once.
#[derive(Debug)]
pub(crate) struct ReplyReader {
    buf: Box<[u8]>,
    filled: usize,
    decided: bool,
}

impl ReplyReader {
    pub(crate) fn new() -> Self {
        ReplyReader {
            buf: vec![0; REPLY_BUFFER].into_boxed_slice(),
            filled: 0,
            decided: false,
        }
    }

    /// Where the next read goes; `None` once the reply is decided (nothing more is read).
    pub(crate) fn unfilled(&mut self) -> Option<&mut [u8]> {
        (!self.decided).then(|| &mut self.buf[self.filled..])
    }

    /// `n` bytes were read into [`unfilled`](Self::unfilled); `0` is the end of stream.
    pub(crate) fn handle(&mut self, n: usize) -> Reply {
        if self.decided {
            return Reply::More;
        }
        let verdict = if n == 0 {
            if self.filled == 0 {
                Reply::Closed
            } else {
                self.unexpected()
            }
        } else {
            self.filled += n;
            match Notice::read(&self.buf[..self.filled]) {
                NoticeRead::Incomplete => Reply::More,
                NoticeRead::Notice(notice) => Reply::Notice(notice),
                NoticeRead::NotNotice => self.unexpected(),
            }
        };
        self.decided = verdict != Reply::More;
        verdict
    }

    fn unexpected(&self) -> Reply {
        let bytes = &self.buf[..self.filled];
        Reply::Unexpected {
            received: bytes.len(),
            preview: escape_preview(bytes, PREVIEW_BYTES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(reader: &mut ReplyReader, bytes: &[u8]) -> Reply {
        let buf = reader.unfilled().expect("undecided");
        buf[..bytes.len()].copy_from_slice(bytes);
        reader.handle(bytes.len())
    }

    #[test]
    fn a_notice_in_two_reads_is_decided_by_the_second_and_then_nothing_more_is_read() {
        let notice = Notice::new("frame_too_large", 3, 312, "too large");
        let wire = notice.to_frame();
        let mut reader = ReplyReader::new();
        assert_eq!(feed(&mut reader, &wire[..5]), Reply::More);
        assert_eq!(feed(&mut reader, &wire[5..]), Reply::Notice(notice));
        assert!(reader.unfilled().is_none());
    }

    #[test]
    fn end_of_stream_is_a_close_with_nothing_before_it_and_unexpected_inside_a_notice() {
        assert_eq!(ReplyReader::new().handle(0), Reply::Closed);
        let mut reader = ReplyReader::new();
        assert_eq!(feed(&mut reader, &[0, 0, 0, 9, b'{']), Reply::More);
        assert_eq!(
            reader.handle(0),
            Reply::Unexpected {
                received: 5,
                preview: r"\x00\x00\x00\t{".into()
            }
        );
    }

    #[test]
    fn another_protocol_is_unexpected_from_its_first_four_bytes() {
        let mut reader = ReplyReader::new();
        match feed(&mut reader, b"HTTP/1.1 400 Bad Request\r\n\r\n") {
            Reply::Unexpected { received, preview } => {
                assert_eq!(received, 28);
                assert_eq!(preview, r"HTTP/1.1 400 Bad Request\r\n\r\n");
            }
            other => panic!("{other:?}"),
        }
    }
}
