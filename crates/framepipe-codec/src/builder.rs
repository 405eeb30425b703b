//! Configuration shared by the raw and typed codecs.

use crate::limits::{DEFAULT_MAX_FRAME_LENGTH, DEFAULT_RETAINED_CAPACITY};
use crate::{JsonCodec, OversizePolicy, RawCodec};

/// Builds [`RawCodec`]s and [`JsonCodec`]s with non-default limits.
///
/// Every setting has a default named in SPEC.md §2; [`Builder::default`] and [`Builder::new`] give
/// exactly those. A builder can be reused to make any number of codecs, one per connection.
///
/// ```
/// use framepipe_codec::{Builder, OversizePolicy};
///
/// let codec = Builder::new()
///     .max_frame_length(64 * 1024 * 1024)
///     .oversize_policy(OversizePolicy::Skip)
///     .raw_codec();
/// assert_eq!(codec.config().get_max_frame_length(), 64 * 1024 * 1024);
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
    pub fn max_frame_length(&mut self, bytes: u32) -> &mut Self {
        self.max_frame_length = bytes;
        self
    }

    /// What the decoder does with a frame over `max_frame_length` (default
    /// [`OversizePolicy::Close`]; SPEC §3.3).
    pub fn oversize_policy(&mut self, policy: OversizePolicy) -> &mut Self {
        self.oversize_policy = policy;
        self
    }

    /// Capacity a read or write buffer may keep between frames (default 256 KiB,
    /// [`DEFAULT_RETAINED_CAPACITY`]; SPEC §2.3).
    ///
    /// Bounds the memory an idle connection keeps after a large frame: at the first frame boundary
    /// after the buffer grew past this, it is replaced with a buffer of this size. Set it at least as
    /// large as your usual frame plus one read, or steady traffic will reallocate.
    ///
    /// [`DEFAULT_RETAINED_CAPACITY`]: crate::limits::DEFAULT_RETAINED_CAPACITY
    pub fn retained_capacity(&mut self, bytes: usize) -> &mut Self {
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
}
