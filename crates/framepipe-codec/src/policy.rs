//! What a decoder does with a frame whose announced length exceeds its limit.

/// What a decoder does when a frame header announces more than
/// [`max_frame_length`](crate::Builder::max_frame_length) bytes (SPEC §3.3).
///
/// Either way the decoder never buffers the oversized body and reports the frame with a typed error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OversizePolicy {
    /// Report [`Error::FrameTooLarge`](crate::Error::FrameTooLarge) and stop: the stream cannot
    /// continue. The default, because a length over the limit usually means the peer is not speaking
    /// this protocol or is misconfigured, and closing tells it so at once.
    ///
    /// The decoder does not consume the offending header, so decoding again reports the same error.
    #[default]
    Close,
    /// Report [`Error::FrameSkipped`](crate::Error::FrameSkipped) (a frame-local error), then discard
    /// the body's bytes as they arrive, without buffering them, and carry on with the next frame.
    ///
    /// Costs no memory beyond the read buffer, but the connection stays busy until the peer has sent
    /// the whole announced length (up to 4 GiB).
    Skip,
}
