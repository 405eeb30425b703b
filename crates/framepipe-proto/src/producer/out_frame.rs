//! Frames as the writer sees them, and the encode stage that makes them (SPEC §6.1).

use std::io::IoSlice;

use bytes::{Bytes, BytesMut};
use framepipe_codec::{frame_header, Builder as CodecBuilder, JsonCodec};
use serde::Serialize;
use tokio_util::codec::Encoder;

/// Bytes of encoding buffer allocated at a time: 256 KiB (SPEC §6.1).
///
/// Typed frames are serialized one after another into a chunk of this size and split off without
/// copying, so small frames cost no allocation each; a frame larger than a chunk gets a buffer of its
/// own. Chunks are freed when the last frame in them has been written.
pub const ENCODE_CHUNK: usize = 256 * 1024;

/// One frame ready to write: either header and body in one buffer (typed mode), or a separate
/// header and a caller-owned body (raw mode, sent with one vectored write without copying the body).
#[derive(Debug)]
pub(crate) struct Frame {
    header: [u8; 4],
    /// `true` if `header` is to be written before `body` (raw mode).
    separate_header: bool,
    body: Bytes,
}

impl Frame {
    /// Bytes this frame puts on the wire.
    pub(crate) fn wire_len(&self) -> usize {
        self.body.len() + if self.separate_header { 4 } else { 0 }
    }

    /// Appends this frame's unwritten bytes, after the first `skip`, to `iov` (at most two slices;
    /// fewer if `iov` fills up).
    pub(crate) fn push_slices<'a>(&'a self, skip: usize, iov: &mut IoVecs<'a>) {
        let mut skip = skip;
        if self.separate_header {
            if skip < 4 {
                iov.push(&self.header[skip..]);
                skip = 0;
            } else {
                skip -= 4;
            }
        }
        if skip < self.body.len() {
            iov.push(&self.body[skip..]);
        }
    }
}

/// Most slices handed to one vectored write: 128 (well under Linux's `IOV_MAX` of 1,024).
pub(crate) const MAX_IOV: usize = 128;

/// A fixed array of I/O slices on the stack, so gathering a write allocates nothing.
pub(crate) struct IoVecs<'a> {
    slices: [IoSlice<'a>; MAX_IOV],
    len: usize,
}

impl<'a> IoVecs<'a> {
    pub(crate) fn new() -> Self {
        IoVecs {
            slices: [IoSlice::new(&[]); MAX_IOV],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &'a [u8]) {
        if self.len < MAX_IOV && !bytes.is_empty() {
            self.slices[self.len] = IoSlice::new(bytes);
            self.len += 1;
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len + 2 > MAX_IOV
    }

    pub(crate) fn as_slices(&self) -> &[IoSlice<'a>] {
        &self.slices[..self.len]
    }
}

/// The encode stage: payloads in, [`Frame`]s out.
#[derive(Debug)]
pub(crate) struct FrameEncoder {
    max_frame_length: u32,
    json: JsonCodec<()>,
    chunk: BytesMut,
    /// Size of the last typed frame, used to decide when a new chunk is needed.
    last_len: usize,
}

impl FrameEncoder {
    pub(crate) fn new(max_frame_length: u32) -> Self {
        let json = CodecBuilder::new()
            .max_frame_length(max_frame_length)
            .json_codec::<()>();
        FrameEncoder {
            max_frame_length,
            json,
            chunk: BytesMut::new(),
            last_len: 0,
        }
    }

    /// Serializes `item` into the current chunk and splits the frame off (SPEC §1.4, §6.1).
    ///
    /// Costs one serialization; allocates only when the chunk has less room than the previous frame
    /// needed. On failure nothing is kept.
    pub(crate) fn encode_json<T: Serialize>(
        &mut self,
        item: &T,
    ) -> Result<Frame, framepipe_codec::Error> {
        if self.chunk.capacity() - self.chunk.len() < self.last_len + 64 {
            // The old chunk is shared with frames still queued; start a new one.
            // A frame larger than a chunk gets an allocation of its own (an eighth to spare, in case
            // the next one is a little larger), freed as soon as it has been written.
            let own = self.last_len + self.last_len / 8 + 64;
            self.chunk = BytesMut::with_capacity(ENCODE_CHUNK.max(own));
        }
        self.json.encode(item, &mut self.chunk)?;
        let body = self.chunk.split().freeze();
        self.last_len = body.len();
        Ok(Frame {
            header: [0; 4],
            separate_header: false,
            body,
        })
    }

    /// Frames a caller-owned body without copying it (SPEC §6.1).
    pub(crate) fn encode_raw(&self, body: Bytes) -> Result<Frame, framepipe_codec::Error> {
        let header = frame_header(body.len(), self.max_frame_length)?;
        Ok(Frame {
            header,
            separate_header: true,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(frame: &Frame, skip: usize) -> Vec<u8> {
        let mut iov = IoVecs::new();
        frame.push_slices(skip, &mut iov);
        iov.as_slices().iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn typed_and_raw_frames_put_the_same_bytes_on_the_wire() {
        let mut enc = FrameEncoder::new(1 << 20);
        let typed = enc.encode_json(&vec![1, 2, 3]).unwrap();
        let raw = enc.encode_raw(Bytes::from_static(b"[1,2,3]")).unwrap();
        assert_eq!(gather(&typed, 0), b"\x00\x00\x00\x07[1,2,3]");
        assert_eq!(gather(&raw, 0), gather(&typed, 0));
        assert_eq!((typed.wire_len(), raw.wire_len()), (11, 11));
        for skip in 0..=11 {
            assert_eq!(gather(&raw, skip), gather(&typed, skip), "skip {skip}");
        }
    }

    #[test]
    fn small_frames_share_a_chunk_and_stay_independent() {
        let mut enc = FrameEncoder::new(1 << 20);
        let a = enc.encode_json(&"a").unwrap();
        let b = enc.encode_json(&"bb").unwrap();
        // Both live in the first chunk: b starts where a ends.
        assert_eq!(a.body.as_ptr().wrapping_add(a.body.len()), b.body.as_ptr());
        assert_eq!(&a.body[..], b"\x00\x00\x00\x03\"a\"");
        assert_eq!(&b.body[..], b"\x00\x00\x00\x04\"bb\"");
    }

    #[test]
    fn over_limit_payloads_are_refused_and_leave_nothing_behind() {
        let mut enc = FrameEncoder::new(8);
        assert!(enc.encode_json(&"this is too long").is_err());
        assert!(enc.encode_raw(Bytes::from_static(&[0; 9])).is_err());
        let ok = enc.encode_json(&"ok").unwrap();
        assert_eq!(&ok.body[..], b"\x00\x00\x00\x04\"ok\"");
    }
}
