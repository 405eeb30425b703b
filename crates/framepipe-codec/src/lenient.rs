//! An adapter that turns frame-local decoding errors into items.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::Error;

/// Wraps a codec so that frame-local errors ([`Error::is_frame_local`]) are yielded as `Err` items
/// and decoding continues with the next frame; fatal errors still end the stream (SPEC §4.1).
///
/// `tokio_util::codec::FramedRead` stops after the first error its decoder returns. A consumer that
/// should log a malformed frame and keep serving the connection wraps its codec in `Lenient`.
/// Encoding is passed through unchanged.
///
/// ```
/// use bytes::BytesMut;
/// use framepipe_codec::{JsonCodec, Lenient};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = Lenient::new(JsonCodec::<Vec<u32>>::new());
/// let mut buf = BytesMut::from(&b"\x00\x00\x00\x03[1]\x00\x00\x00\x02{]\x00\x00\x00\x03[2]"[..]);
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap().unwrap(), vec![1]);
/// assert!(codec.decode(&mut buf).unwrap().unwrap().is_err()); // frame 1 is not JSON
/// assert_eq!(codec.decode(&mut buf).unwrap().unwrap().unwrap(), vec![2]);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Lenient<C> {
    inner: C,
}

impl<C> Lenient<C> {
    /// Wraps `inner`.
    pub fn new(inner: C) -> Self {
        Lenient { inner }
    }

    /// The wrapped codec.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped codec, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// Unwraps the codec.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

fn lenient<T>(result: Result<Option<T>, Error>) -> Result<Option<Result<T, Error>>, Error> {
    match result {
        Ok(item) => Ok(item.map(Ok)),
        Err(e) if e.is_frame_local() => Ok(Some(Err(e))),
        Err(e) => Err(e),
    }
}

impl<C: Decoder<Error = Error>> Decoder for Lenient<C> {
    type Item = Result<C::Item, Error>;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        lenient(self.inner.decode(src))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Error> {
        lenient(self.inner.decode_eof(src))
    }
}

impl<I, C: Encoder<I>> Encoder<I> for Lenient<C> {
    type Error = C::Error;

    fn encode(&mut self, item: I, dst: &mut BytesMut) -> Result<(), C::Error> {
        self.inner.encode(item, dst)
    }
}
