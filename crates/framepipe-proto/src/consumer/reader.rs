//! The consumer core's framer: a plain stream's, or a session stream's once its first byte says so
//! (SPEC §9.2).

use bytes::BytesMut;
use framepipe_codec::session::{SessionFramer, Unit};
use framepipe_codec::{Builder, Error, Framer};

/// Frames a plain stream (§3) or a session stream (§9.4).
#[derive(Debug, Clone)]
pub(super) enum Reader {
    Plain(Framer),
    Session(SessionFramer),
}

impl Reader {
    pub(super) fn plain(config: Builder) -> Self {
        Reader::Plain(config.framer())
    }

    /// Reads the rest of the stream as a session stream. Called before anything is consumed.
    pub(super) fn switch_to_session(&mut self, config: Builder) {
        debug_assert_eq!(self.bytes_consumed(), 0);
        *self = Reader::Session(SessionFramer::new(config));
    }

    /// The next whole unit off the front of `src` (a plain stream yields data frames only).
    pub(super) fn next(&mut self, src: &mut BytesMut) -> Result<Option<Unit>, Error> {
        match self {
            Reader::Plain(f) => Ok(f.next_frame(src)?.map(Unit::Data)),
            Reader::Session(f) => f.next_unit(src),
        }
    }

    pub(super) fn check_eof(&self, src: &BytesMut) -> Result<(), Error> {
        match self {
            Reader::Plain(f) => f.check_eof(src),
            Reader::Session(f) => f.check_eof(src),
        }
    }

    pub(super) fn bytes_needed(&self, src: &BytesMut) -> u64 {
        match self {
            Reader::Plain(f) => f.bytes_needed(src.len()),
            Reader::Session(f) => f.bytes_needed(src),
        }
    }

    /// A unit is in progress given what `src` holds.
    pub(super) fn mid_frame(&self, src: &BytesMut) -> bool {
        match self {
            Reader::Plain(f) => f.mid_frame(src.len()),
            Reader::Session(f) => f.mid_unit(src),
        }
    }

    /// A data frame's header has been consumed and its body is awaited or skipped: the header's
    /// bytes are no longer in the buffer but still count against the frame's memory.
    pub(super) fn header_consumed(&self) -> bool {
        let empty = BytesMut::new();
        match self {
            Reader::Plain(f) => f.mid_frame(0),
            Reader::Session(f) => f.mid_unit(&empty),
        }
    }

    pub(super) fn is_skipping(&self) -> bool {
        match self {
            Reader::Plain(f) => f.is_skipping(),
            Reader::Session(f) => f.is_skipping(),
        }
    }

    pub(super) fn frames_seen(&self) -> u64 {
        match self {
            Reader::Plain(f) => f.frames_seen(),
            Reader::Session(f) => f.frames_seen(),
        }
    }

    pub(super) fn bytes_consumed(&self) -> u64 {
        match self {
            Reader::Plain(f) => f.bytes_consumed(),
            Reader::Session(f) => f.bytes_consumed(),
        }
    }

    pub(super) fn frame_in_progress(&self) -> u64 {
        match self {
            Reader::Plain(f) => f.frame_in_progress(),
            Reader::Session(f) => f.frame_in_progress(),
        }
    }
}
