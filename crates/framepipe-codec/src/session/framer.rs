//! Reading a session stream: data frames and control frames, told apart at each frame boundary
//! (SPEC §9.4).

use bytes::{Buf, BytesMut};

use super::control::{Control, Kind, CONTROL_BIT};
use crate::limits::{HEADER_LEN, MAX_CONTROL_LENGTH, SESSION_MAX_FRAME_LENGTH};
use crate::{escape_preview, Builder, Error, Frame, FramePart, Framer};

/// One unit of a session stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// A data frame: its index counts data frames only (SPEC §9.1.4).
    Data(Frame),
    /// A control frame, and the byte offset of its header in the stream.
    Control {
        /// The decoded control frame.
        control: Control,
        /// Byte offset of its header.
        offset: u64,
    },
}

/// The framing state machine of a session stream (SPEC §9.4): a [`Framer`] for data frames, with
/// control frames recognised by the top bit of a header's first byte at each frame boundary.
///
/// Like [`Framer`] it owns no buffer: the caller reads into a `BytesMut` and calls
/// [`next_unit`](Self::next_unit). A control frame's length is checked against
/// [`MAX_CONTROL_LENGTH`] from its 4 header bytes, before its payload is awaited; data frames keep
/// every rule of the plain format, with `max_frame_length` capped at [`SESSION_MAX_FRAME_LENGTH`].
///
/// ```
/// use bytes::{Buf, BytesMut};
/// use framepipe_codec::session::{Control, SessionFramer, Unit};
/// use framepipe_codec::Builder;
///
/// let mut wire = BytesMut::new();
/// wire.extend_from_slice(b"\x00\x00\x00\x03[1]"); // a data frame, as in a plain stream
/// Control::Heartbeat.encode(&mut wire)?;
/// let mut framer = SessionFramer::new(Builder::new());
/// let Some(Unit::Data(frame)) = framer.next_unit(&mut wire)? else { panic!() };
/// assert_eq!((frame.index, &frame.body[..]), (0, &b"[1]"[..]));
/// let Some(Unit::Control { control, offset }) = framer.next_unit(&mut wire)? else { panic!() };
/// assert_eq!((control, offset), (Control::Heartbeat, 7));
/// framer.check_eof(&wire)?;
/// # Ok::<(), framepipe_codec::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SessionFramer {
    framer: Framer,
}

impl SessionFramer {
    /// A session framer with `config`'s limits, `max_frame_length` capped at
    /// [`SESSION_MAX_FRAME_LENGTH`] (SPEC §9.1.1).
    pub fn new(config: Builder) -> Self {
        let max = config.get_max_frame_length().min(SESSION_MAX_FRAME_LENGTH);
        SessionFramer {
            framer: config.max_frame_length(max).framer(),
        }
    }

    /// Splits the next whole unit off the front of `src`: a data frame without copying its body, or
    /// a decoded control frame.
    ///
    /// `Ok(None)`: more bytes are needed. Errors are those of [`Framer::next_frame`] for data
    /// frames, and [`Error::BadControl`] (fatal) for a control frame that is malformed.
    pub fn next_unit(&mut self, src: &mut BytesMut) -> Result<Option<Unit>, Error> {
        if let Some((kind, len)) = self.control_ahead(src)? {
            return self.next_control(src, kind, len);
        }
        Ok(self.framer.next_frame(src)?.map(Unit::Data))
    }

    /// At end of stream: `Ok(())` at a unit boundary with nothing buffered, else
    /// [`Error::Truncated`] naming the frame cut short (SPEC §3.4, §9.4).
    pub fn check_eof(&self, src: &BytesMut) -> Result<(), Error> {
        if !self.starts_control(src) {
            return self.framer.check_eof(src);
        }
        let buffered = src.len() as u64;
        let (part, expected, received) = match control_header(src) {
            None => (FramePart::Header, HEADER_LEN as u64, buffered),
            Some(header) => (
                FramePart::Body,
                u64::from(payload_len(header)),
                buffered - HEADER_LEN as u64,
            ),
        };
        Err(Error::Truncated {
            frame: self.framer.frames_seen(),
            offset: self.framer.bytes_consumed(),
            part,
            expected,
            received,
        })
    }

    /// Bytes still to arrive before the unit in progress is whole, given what `src` holds after
    /// [`next_unit`](Self::next_unit) returned `Ok(None)`.
    pub fn bytes_needed(&self, src: &BytesMut) -> u64 {
        if !self.starts_control(src) {
            return self.framer.bytes_needed(src.len());
        }
        let whole = control_header(src).map_or(HEADER_LEN as u64, |h| {
            HEADER_LEN as u64 + u64::from(payload_len(h))
        });
        whole.saturating_sub(src.len() as u64)
    }

    /// `true` if a unit is in progress (part of it is buffered, or a data frame's body is awaited or
    /// being skipped), given what `src` holds after [`next_unit`](Self::next_unit) returned
    /// `Ok(None)`; `false` at a unit boundary with nothing buffered.
    pub fn mid_unit(&self, src: &BytesMut) -> bool {
        self.framer.mid_frame(src.len())
    }

    /// `true` while an oversized data frame's body is being discarded (SPEC §3.3).
    pub fn is_skipping(&self) -> bool {
        self.framer.is_skipping()
    }

    /// Index of the data frame in progress, or of the next one at a boundary (SPEC §3.1.3).
    pub fn frame_in_progress(&self) -> u64 {
        self.framer.frame_in_progress()
    }

    /// Data frames seen so far (SPEC §9.1.4: control frames are not counted).
    pub fn frames_seen(&self) -> u64 {
        self.framer.frames_seen()
    }

    /// Bytes of the stream consumed so far, control frames included.
    pub fn bytes_consumed(&self) -> u64 {
        self.framer.bytes_consumed()
    }

    /// `true` if the next unit in `src` is a control frame: at a frame boundary, a first byte with
    /// its top bit set.
    fn starts_control(&self, src: &BytesMut) -> bool {
        self.framer.at_boundary() && src.first().is_some_and(|b| b & CONTROL_BIT != 0)
    }

    /// The kind and payload length of a control frame whose header is buffered, checked (SPEC
    /// §9.1.2, §9.1.3); `None` if the next unit is not a control frame or its header is not whole.
    fn control_ahead(&self, src: &BytesMut) -> Result<Option<(Kind, usize)>, Error> {
        if !self.starts_control(src) {
            return Ok(None);
        }
        let Some(header) = control_header(src) else {
            return Ok(None);
        };
        let bad = |what: String| Error::BadControl {
            offset: self.framer.bytes_consumed(),
            what,
        };
        let Some(kind) = Kind::from_first_byte(header[0]) else {
            return Err(bad(format!(
                "unknown control kind {} (header \"{}\")",
                header[0] & !CONTROL_BIT,
                escape_preview(&header, HEADER_LEN)
            )));
        };
        let len = payload_len(header);
        if len > MAX_CONTROL_LENGTH {
            return Err(bad(format!(
                "a {} frame announces {len} payload bytes, over MAX_CONTROL_LENGTH {MAX_CONTROL_LENGTH}",
                kind.name()
            )));
        }
        Ok(Some((kind, len as usize)))
    }

    fn next_control(
        &mut self,
        src: &mut BytesMut,
        kind: Kind,
        len: usize,
    ) -> Result<Option<Unit>, Error> {
        if src.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let offset = self.framer.bytes_consumed();
        let control = Control::decode(kind, &src[HEADER_LEN..HEADER_LEN + len], offset)?;
        src.advance(HEADER_LEN + len);
        self.framer.consume_between_frames(HEADER_LEN + len);
        Ok(Some(Unit::Control { control, offset }))
    }
}

/// The first 4 bytes of `src`, if buffered.
fn control_header(src: &BytesMut) -> Option<[u8; HEADER_LEN]> {
    src.get(..HEADER_LEN)?.try_into().ok()
}

/// The 24-bit payload length of a control frame header (SPEC §9.1.2).
fn payload_len(header: [u8; HEADER_LEN]) -> u32 {
    u32::from_be_bytes(header) & 0x00FF_FFFF
}
