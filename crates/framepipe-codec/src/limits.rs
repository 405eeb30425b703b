//! Every limit and default of the wire format and the codecs, in one place.
//!
//! Each constant is normative: SPEC.md §2 names it, and the builder setter that overrides it says what
//! memory it bounds. Code that enforces one of these cites the SPEC section it implements.

/// Size of the frame header: a 4-byte big-endian unsigned body length (SPEC §1.1).
pub const HEADER_LEN: usize = 4;

/// The largest body the format can describe: `2^32 - 1` bytes (SPEC §1.1).
///
/// [`Builder::max_frame_length`](crate::Builder::max_frame_length) cannot be raised above this.
pub const FORMAT_MAX_FRAME_LENGTH: u32 = u32::MAX;

/// Default largest body a codec accepts or produces: 16 MiB (SPEC §2.1).
///
/// Bounds the memory one frame can occupy in a decoder's read buffer.
pub const DEFAULT_MAX_FRAME_LENGTH: u32 = 16 * 1024 * 1024;

/// Default capacity a read or write buffer may keep between frames: 256 KiB (SPEC §2.3).
///
/// After a frame larger than this has passed through, the buffer is replaced by one of this size at the
/// next frame boundary, so one large frame does not pin its memory for the rest of the connection. The
/// reference frame (60.9 KB) and its read-ahead fit under it, so steady traffic never reallocates.
pub const DEFAULT_RETAINED_CAPACITY: usize = 256 * 1024;

/// Most a decoder reserves ahead of the bytes it has received for the current body: 8 KiB, or as many
/// body bytes as have already arrived if that is more (SPEC §2.2).
///
/// The announced length is untrusted, so the decoder never reserves it up front; growing by at most the
/// bytes already received keeps the read buffer within `2 × received + 8 KiB` while still needing only
/// a logarithmic number of reallocations for a large frame.
pub const RESERVE_STEP: usize = 8 * 1024;

/// Largest payload of a session control frame: 4 KiB (SPEC §9.1.2). Checked from the control frame's
/// 4 header bytes, before its payload is awaited; it bounds what one control frame holds in a read
/// buffer.
pub const MAX_CONTROL_LENGTH: u32 = 4096;

/// Largest data frame body in a session stream: 2^31 − 1 bytes (SPEC §9.1.1), since a header with
/// its top bit set is a control frame. A session reader given a larger `max_frame_length` uses this.
pub const SESSION_MAX_FRAME_LENGTH: u32 = 0x7FFF_FFFF;
