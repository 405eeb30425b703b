//! Configuration shared by the framer and the raw and typed codecs.

use crate::limits::{DEFAULT_MAX_FRAME_LENGTH, DEFAULT_RETAINED_CAPACITY};
use crate::{Framer, JsonCodec, OversizePolicy, RawCodec};

/// Builds [`RawCodec`]s, [`JsonCodec`]s and [`Framer`]s with non-default limits.
///
/// Every setting has a default named in SPEC.md §2; [`Builder::default`] and [`Builder::new`] give
/// exactly those. The setters take and return the builder by value (it is `Copy`, a few words long), so a
/// configured builder can be stored in a variable, passed around and reused to make any number of
/// codecs, one per connection; a setter applied to a copy leaves the original as it was.
///
/// ```
/// use framepipe_codec::{Builder, OversizePolicy};
///
/// let config = Builder::new()
///     .max_frame_length(64 * 1024 * 1024)
///     .oversize_policy(OversizePolicy::Skip);
/// let codec = config.raw_codec();
/// assert_eq!(codec.config().get_max_frame_length(), 64 * 1024 * 1024);
/// let strict = config.oversize_policy(OversizePolicy::Close).json_codec::<serde_json::Value>();
/// assert_eq!(strict.config().get_oversize_policy(), OversizePolicy::Close);
/// assert_eq!(config.get_oversize_policy(), OversizePolicy::Skip); // unchanged
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builder {
    max_frame_length: u32,
    oversize_policy: OversizePolicy,
    retained_capacity: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            max_frame_length: DEFAULT_MAX_FRAME_LENGTH,
            oversize_policy: OversizePolicy::Close,
            retained_capacity: DEFAULT_RETAINED_CAPACITY,
        }
    }
}

impl Builder {
    /// A builder with every default (SPEC §2).
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest body, in bytes, that the codec decodes or encodes (default 16 MiB,
    /// [`DEFAULT_MAX_FRAME_LENGTH`]; at most [`FORMAT_MAX_FRAME_LENGTH`], 4 GiB − 1).
    ///
    /// Bounds the memory one frame can occupy in a decoder's read buffer: at most this plus the
    /// read-ahead (SPEC §2.2). Decoding a larger frame follows [`oversize_policy`](Self::oversize_policy);
    /// encoding one fails with [`Error::BodyTooLarge`](crate::Error::BodyTooLarge). Producer and
    /// consumer should agree on it.
    ///
    /// [`FORMAT_MAX_FRAME_LENGTH`]: crate::limits::FORMAT_MAX_FRAME_LENGTH
    #[must_use = "a setter returns the changed builder and leaves this one as it was"]
    pub fn max_frame_length(mut self, bytes: u32) -> Self {
        self.max_frame_length = bytes;
        self
    }

    /// What the decoder does with a frame over `max_frame_length` (default
    /// [`OversizePolicy::Close`]; SPEC §3.3).
    #[must_use = "a setter returns the changed builder and leaves this one as it was"]
    pub fn oversize_policy(mut self, policy: OversizePolicy) -> Self {
        self.oversize_policy = policy;
        self
    }

    /// Capacity a read or write buffer may keep between frames (default 256 KiB,
    /// [`DEFAULT_RETAINED_CAPACITY`]; SPEC §2.3).
    ///
    /// Bounds the memory an idle connection keeps after a large frame: at the first frame boundary
    /// after the buffer grew past this, it is replaced with a buffer of this size. Set it at least as
    /// large as your usual frame plus one read, or steady traffic will reallocate. Applied by the
    /// codecs only: a [`Framer`] never touches its caller's buffer.
    ///
    /// [`DEFAULT_RETAINED_CAPACITY`]: crate::limits::DEFAULT_RETAINED_CAPACITY
    #[must_use = "a setter returns the changed builder and leaves this one as it was"]
    pub fn retained_capacity(mut self, bytes: usize) -> Self {
        self.retained_capacity = bytes;
        self
    }

    /// The configured `max_frame_length`.
    pub fn get_max_frame_length(&self) -> u32 {
        self.max_frame_length
    }

    /// The configured oversize policy.
    pub fn get_oversize_policy(&self) -> OversizePolicy {
        self.oversize_policy
    }

    /// The configured retained capacity.
    pub fn get_retained_capacity(&self) -> usize {
        self.retained_capacity
    }

    /// A raw codec (items are `Bytes` bodies) with these settings.
    pub fn raw_codec(&self) -> RawCodec {
        RawCodec::with_config(*self)
    }

    /// A typed codec decoding `T` (and encoding any `Serialize` item) with these settings.
    pub fn json_codec<T>(&self) -> JsonCodec<T> {
        JsonCodec::with_config(*self)
    }

    /// A framer (the SPEC §3.1 state machine without any buffer policy) with these settings; it uses
    /// `max_frame_length` and `oversize_policy`, not `retained_capacity`.
    pub fn framer(&self) -> Framer {
        Framer::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_work_on_copies_and_a_stored_builder_is_reusable() {
        let base = Builder::new();
        let small = base.max_frame_length(5);
        // The setter returned a changed copy; the builder it was called on is as it was.
        assert_eq!(base.get_max_frame_length(), DEFAULT_MAX_FRAME_LENGTH);
        assert_eq!(small.get_max_frame_length(), 5);
        let skipping = small
            .oversize_policy(OversizePolicy::Skip)
            .retained_capacity(1024);
        assert_eq!(small.get_oversize_policy(), OversizePolicy::Close);
        assert_eq!(small.get_retained_capacity(), DEFAULT_RETAINED_CAPACITY);
        assert_eq!(skipping.get_oversize_policy(), OversizePolicy::Skip);
        assert_eq!(skipping.get_retained_capacity(), 1024);
        assert_eq!(skipping.get_max_frame_length(), 5);
        // A stored builder makes any number of codecs and framers, each with its settings.
        assert_eq!(*small.raw_codec().config(), small);
        assert_eq!(*small.json_codec::<u8>().config(), small);
        assert_eq!(*skipping.framer().config(), skipping);
        assert_eq!(*skipping.raw_codec().config(), skipping);
    }
}
