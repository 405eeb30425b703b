//! Frames as the producer's core writes them, and the I/O slices a write is gathered into (SPEC §6.1).

use std::io::IoSlice;

use bytes::Bytes;
use framepipe_codec::limits::HEADER_LEN;

/// One frame ready to write: either header and body in one buffer (typed frames are serialized
/// behind their header), or a separate header and a caller-owned body (raw frames, written with one
/// vectored write without copying the body).
#[derive(Debug, Clone)]
pub struct OutFrame {
    header: [u8; HEADER_LEN],
    /// `true` if `header` is written before `bytes`.
    separate_header: bool,
    bytes: Bytes,
}

impl OutFrame {
    /// A frame whose `bytes` already start with their 4-byte header.
    pub fn framed(bytes: Bytes) -> Self {
        debug_assert!(bytes.len() >= HEADER_LEN);
        OutFrame {
            header: [0; HEADER_LEN],
            separate_header: false,
            bytes,
        }
    }

    /// A frame of `header` (from [`framepipe_codec::frame_header`]) and a body written after it.
    pub fn with_header(header: [u8; HEADER_LEN], body: Bytes) -> Self {
        OutFrame {
            header,
            separate_header: true,
            bytes: body,
        }
    }

    /// Bytes this frame puts on the wire.
    pub fn wire_len(&self) -> usize {
        self.bytes.len() + if self.separate_header { HEADER_LEN } else { 0 }
    }

    /// The frame's bytes in one buffer: a copy, for tests and diagnostics.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut iov = IoVecs::new();
        self.push_slices(0, &mut iov);
        iov.as_slices()
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect()
    }

    /// Appends this frame's unwritten bytes, after the first `skip`, to `iov` (at most two slices;
    /// fewer if `iov` fills up).
    pub(crate) fn push_slices<'a>(&'a self, skip: usize, iov: &mut IoVecs<'a>) {
        let mut skip = skip;
        if self.separate_header {
            if skip < HEADER_LEN {
                iov.push(&self.header[skip..]);
                skip = 0;
            } else {
                skip -= HEADER_LEN;
            }
        }
        if skip < self.bytes.len() {
            iov.push(&self.bytes[skip..]);
        }
    }
}

/// Most slices handed to one vectored write: 128 (well under Linux's `IOV_MAX` of 1,024).
pub const MAX_IOV: usize = 128;

/// A fixed array of I/O slices on the stack, so gathering a write allocates nothing.
pub struct IoVecs<'a> {
    slices: [IoSlice<'a>; MAX_IOV],
    len: usize,
}

impl std::fmt::Debug for IoVecs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoVecs").field("len", &self.len).finish()
    }
}

impl Default for IoVecs<'_> {
    fn default() -> Self {
        IoVecs {
            slices: [IoSlice::new(&[]); MAX_IOV],
            len: 0,
        }
    }
}

impl<'a> IoVecs<'a> {
    /// No slices.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, bytes: &'a [u8]) {
        if self.len < MAX_IOV && !bytes.is_empty() {
            self.slices[self.len] = IoSlice::new(bytes);
            self.len += 1;
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len + 2 > MAX_IOV
    }

    /// The slices gathered, for `write_vectored`.
    pub fn as_slices(&self) -> &[IoSlice<'a>] {
        &self.slices[..self.len]
    }

    /// Bytes in all the slices.
    pub fn total(&self) -> usize {
        self.as_slices().iter().map(|s| s.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gather(frame: &OutFrame, skip: usize) -> Vec<u8> {
        let mut iov = IoVecs::new();
        frame.push_slices(skip, &mut iov);
        iov.as_slices().iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn framed_and_separate_headers_put_the_same_bytes_on_the_wire() {
        let framed = OutFrame::framed(Bytes::from_static(b"\x00\x00\x00\x07[1,2,3]"));
        let raw = OutFrame::with_header([0, 0, 0, 7], Bytes::from_static(b"[1,2,3]"));
        assert_eq!(gather(&framed, 0), b"\x00\x00\x00\x07[1,2,3]");
        assert_eq!((framed.wire_len(), raw.wire_len()), (11, 11));
        for skip in 0..=11 {
            assert_eq!(gather(&raw, skip), gather(&framed, skip), "skip {skip}");
        }
    }
}
