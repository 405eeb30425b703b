//! Writing frames into a destination buffer: header placeholder, body, length patch.

use bytes::{BufMut, BytesMut};

use crate::limits::HEADER_LEN;
use crate::{Builder, Error};

/// The 4-byte header for a body of `len` bytes, checked against `max_frame_length` (SPEC §1.1, §2.1).
///
/// For writers that send the header and an existing body with one vectored write instead of copying
/// the body into a buffer.
///
/// ```
/// let header = framepipe_codec::frame_header(1219, 16 * 1024 * 1024).unwrap();
/// assert_eq!(header, [0x00, 0x00, 0x04, 0xC3]);
/// assert!(framepipe_codec::frame_header(17, 16).is_err());
/// ```
pub fn frame_header(len: usize, max_frame_length: u32) -> Result<[u8; HEADER_LEN], Error> {
    if len > max_frame_length as usize {
        return Err(Error::BodyTooLarge {
            length: len as u64,
            max: max_frame_length,
        });
    }
    // `len <= max_frame_length <= u32::MAX`.
    Ok((len as u32).to_be_bytes())
}

/// Appends frames to a destination buffer and keeps that buffer from pinning memory.
#[derive(Debug, Clone)]
pub(crate) struct FrameWriter {
    config: Builder,
    /// A frame over the retained capacity went into the buffer, which may have grown to fit it.
    oversized_pending: bool,
    /// The last frame written was over the retained capacity: more such frames may follow, and they
    /// would need the large buffer again (SPEC §2.3.2).
    last_oversized: bool,
}

impl FrameWriter {
    pub(crate) fn new(config: Builder) -> Self {
        FrameWriter {
            config,
            oversized_pending: false,
            last_oversized: false,
        }
    }

    /// Appends `body` as one frame: one copy of the body into `dst`.
    pub(crate) fn encode_slice(&mut self, body: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        let header = frame_header(body.len(), self.config.get_max_frame_length())?;
        self.before_frame(dst);
        dst.reserve(HEADER_LEN + body.len());
        dst.put_slice(&header);
        dst.put_slice(body);
        self.after_frame(body.len());
        Ok(())
    }

    /// Appends one frame whose body `write` produces directly in `dst` (no intermediate buffer):
    /// reserves the header, lets `write` append the body, then patches the length in (SPEC §1.4).
    ///
    /// If `write` fails or the body exceeds `max_frame_length`, `dst` is restored to its previous
    /// length, so no partial frame is ever left behind.
    pub(crate) fn encode_with<E>(
        &mut self,
        dst: &mut BytesMut,
        write: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), Error>
    where
        Error: From<E>,
    {
        self.before_frame(dst);
        let start = dst.len();
        dst.put_slice(&[0; HEADER_LEN]);
        if let Err(e) = write(dst) {
            dst.truncate(start);
            return Err(e.into());
        }
        let len = dst.len() - start - HEADER_LEN;
        match frame_header(len, self.config.get_max_frame_length()) {
            Ok(header) => {
                dst[start..start + HEADER_LEN].copy_from_slice(&header);
                self.after_frame(len);
                Ok(())
            }
            Err(e) => {
                dst.truncate(start);
                Err(e)
            }
        }
    }

    /// SPEC §2.3: once a buffer that held an oversized frame has been written out, drop it.
    /// SPEC §2.3.2: once a smaller frame has followed a large one and the buffer has drained, the
    /// buffer is replaced by one of the retained capacity. A run of large frames keeps reusing the
    /// large buffer instead of regrowing it for every frame.
    fn before_frame(&mut self, dst: &mut BytesMut) {
        if self.oversized_pending && !self.last_oversized && dst.is_empty() {
            *dst = BytesMut::with_capacity(self.config.get_retained_capacity());
            self.oversized_pending = false;
        }
    }

    fn after_frame(&mut self, body_len: usize) {
        self.last_oversized = HEADER_LEN + body_len > self.config.get_retained_capacity();
        self.oversized_pending |= self.last_oversized;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(max: u32, retained: usize) -> FrameWriter {
        FrameWriter::new(
            Builder::new()
                .max_frame_length(max)
                .retained_capacity(retained),
        )
    }

    #[test]
    fn refused_bodies_leave_the_buffer_untouched() {
        let mut enc = encoder(4, 1024);
        let mut dst = BytesMut::from(&b"prior"[..]);
        assert!(matches!(
            enc.encode_slice(b"12345", &mut dst),
            Err(Error::BodyTooLarge { length: 5, max: 4 })
        ));
        // A body produced in place is rolled back too, whether too long or failed midway.
        assert!(matches!(
            enc.encode_with(&mut dst, |d| {
                d.put_slice(b"123456");
                Ok::<(), Error>(())
            }),
            Err(Error::BodyTooLarge { length: 6, .. })
        ));
        let failed = enc.encode_with(&mut dst, |d| {
            d.put_slice(b"12");
            Err(Error::BodyTooLarge { length: 0, max: 0 })
        });
        assert!(failed.is_err());
        assert_eq!(&dst[..], b"prior");
        enc.encode_slice(b"1234", &mut dst).unwrap();
        assert_eq!(&dst[..], b"prior\x00\x00\x00\x041234");
    }

    #[test]
    fn buffer_that_held_an_oversized_frame_is_dropped_once_drained() {
        // SPEC §2.3, write side.
        let mut enc = encoder(u32::MAX, 1024);
        let mut dst = BytesMut::new();
        enc.encode_slice(&[0; 100_000], &mut dst).unwrap();
        enc.encode_slice(b"small", &mut dst).unwrap(); // not drained yet: kept
        assert!(dst.capacity() >= 100_000);
        dst.clear(); // written out
        enc.encode_slice(b"small", &mut dst).unwrap();
        assert_eq!(dst.capacity(), 1024);
        assert_eq!(&dst[..], b"\x00\x00\x00\x05small");
    }

    #[test]
    fn a_run_of_oversized_frames_reuses_the_large_buffer() {
        // SPEC §2.3.2: regrowing for every large frame would cost an allocation and page faults each.
        let mut enc = encoder(u32::MAX, 1024);
        let mut dst = BytesMut::new();
        enc.encode_slice(&[1; 100_000], &mut dst).unwrap();
        let allocation = dst.as_ptr();
        for _ in 0..3 {
            dst.clear(); // written out
            enc.encode_slice(&[2; 100_000], &mut dst).unwrap();
            assert_eq!(dst.as_ptr(), allocation);
        }
        // The first small frame after the run still uses it; once that has drained, it goes.
        dst.clear();
        enc.encode_slice(b"small", &mut dst).unwrap();
        assert_eq!(dst.as_ptr(), allocation);
        dst.clear();
        enc.encode_slice(b"small", &mut dst).unwrap();
        assert_eq!(dst.capacity(), 1024);
    }

    #[test]
    fn header_is_big_endian_and_checked() {
        assert_eq!(frame_header(0, 0).unwrap(), [0; 4]);
        assert_eq!(frame_header(0x0102_0304, u32::MAX).unwrap(), [1, 2, 3, 4]);
        assert!(frame_header(1, 0).is_err());
    }
}
