//! Payloads to frames: typed items serialized into shared chunks, raw bodies framed without a copy,
//! and items gathered into batches (SPEC §6.1, §6.6).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use framepipe_codec::limits::HEADER_LEN;
use framepipe_codec::{frame_header, Builder as CodecBuilder, JsonCodec};
use framepipe_proto::producer::OutFrame;
use serde::Serialize;
use tokio_util::codec::Encoder;

/// Bytes of encoding buffer allocated at a time: 256 KiB (SPEC §6.1).
///
/// Typed frames are serialized one after another into a chunk of this size and split off without
/// copying, so small frames cost no allocation each; a frame larger than a chunk gets a buffer of its
/// own. Chunks are freed when the last frame in them has been written.
pub const ENCODE_CHUNK: usize = 256 * 1024;

/// Default most bytes of one batch frame when batching is on: 64 KiB (SPEC §6.6).
pub const DEFAULT_BATCH_BYTES: usize = 64 * 1024;
/// Default time the first item of a batch waits for others when batching is on: 5 ms (SPEC §6.6).
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);

/// Gathering items into one frame, a JSON array of them (SPEC §6.6): a frame is made when it
/// reaches `max_bytes` or when its first item has waited `linger`. Off unless set on the builder.
///
/// ```
/// use std::time::Duration;
/// use framepipe_producer::Batching;
///
/// let batching = Batching::new().max_bytes(16 * 1024).linger(Duration::from_millis(2));
/// assert_eq!(batching.get_linger(), Duration::from_millis(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    max_bytes: usize,
    linger: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_bytes: DEFAULT_BATCH_BYTES,
            linger: DEFAULT_LINGER,
        }
    }
}

impl Batching {
    /// [`DEFAULT_BATCH_BYTES`] and [`DEFAULT_LINGER`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch becomes a frame once its body reaches this many bytes (default 64 KiB; at least 2).
    /// The memory it bounds: the batch being gathered (plus one item).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes.max(2);
        self
    }

    /// A batch becomes a frame once its first item has waited this long (default 5 ms): the most
    /// batching adds to an item's latency.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// The size at which a batch is sent.
    pub fn get_max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The longest an item waits for others.
    pub fn get_linger(&self) -> Duration {
        self.linger
    }
}

/// The encode stage: payloads in, [`OutFrame`]s out. One per connection, shared by its senders.
#[derive(Debug)]
pub(crate) struct PayloadEncoder {
    max_frame_length: u32,
    json: JsonCodec<()>,
    chunk: BytesMut,
    /// Size of the last typed frame, used to decide when a new chunk is needed.
    last_len: usize,
    /// The batch being gathered: header placeholder, `[`, items separated by `,`.
    batch: BytesMut,
    batch_items: u64,
    scratch: Vec<u8>,
}

impl PayloadEncoder {
    pub(crate) fn new(max_frame_length: u32) -> Self {
        PayloadEncoder {
            max_frame_length,
            json: CodecBuilder::new()
                .max_frame_length(max_frame_length)
                .json_codec::<()>(),
            chunk: BytesMut::new(),
            last_len: 0,
            batch: BytesMut::new(),
            batch_items: 0,
            scratch: Vec::new(),
        }
    }

    /// Serializes `item` into the current chunk and splits the frame off (SPEC §1.4, §6.1).
    ///
    /// Costs one serialization; allocates only when the chunk has less room than the previous frame
    /// needed. On failure nothing is kept.
    pub(crate) fn encode_json<T: Serialize + ?Sized>(
        &mut self,
        item: &T,
    ) -> Result<OutFrame, framepipe_codec::Error> {
        if self.chunk.capacity() - self.chunk.len() < self.last_len + 64 {
            // The old chunk is shared with frames still queued; start a new one. A frame larger
            // than a chunk gets an allocation of its own (an eighth to spare, in case the next one
            // is a little larger), freed as soon as it has been written.
            let own = self.last_len + self.last_len / 8 + 64;
            self.chunk = BytesMut::with_capacity(ENCODE_CHUNK.max(own));
        }
        self.json.encode(item, &mut self.chunk)?;
        let frame = self.chunk.split().freeze();
        self.last_len = frame.len();
        Ok(OutFrame::framed(frame))
    }

    /// Frames a caller-owned body without copying it (SPEC §6.1).
    pub(crate) fn encode_raw(&self, body: Bytes) -> Result<OutFrame, framepipe_codec::Error> {
        let header = frame_header(body.len(), self.max_frame_length)?;
        Ok(OutFrame::with_header(header, body))
    }

    /// Adds `item` to the batch (SPEC §6.6). Returns whether this item opened it, and the finished
    /// frame if the batch reached `max_bytes`. An item that cannot be
    /// serialized, or would take the batch over `max_frame_length`, is refused and the batch is
    /// left as it was (a batch that would overflow is sent first and the item starts the next).
    pub(crate) fn batch_json<T: Serialize + ?Sized>(
        &mut self,
        item: &T,
        max_bytes: usize,
    ) -> Result<Batched, framepipe_codec::Error> {
        self.scratch.clear();
        serde_json::to_writer(&mut self.scratch, item)
            .map_err(framepipe_codec::Error::Serialize)?;
        let item_len = self.scratch.len();
        // The body with this item: `[` + items + `,` + item + `]`.
        let body_len = |batch: &BytesMut| batch.len().saturating_sub(HEADER_LEN) + 1 + item_len + 1;
        frame_header(1 + item_len + 1, self.max_frame_length)?;
        let mut sent = None;
        if self.batch_items > 0 && body_len(&self.batch) > self.max_frame_length as usize {
            sent = self.take_batch();
        }
        let opened = self.batch_items == 0;
        if opened {
            self.batch.reserve(HEADER_LEN + 1 + item_len + 1);
            self.batch.put_slice(&[0; HEADER_LEN]);
            self.batch.put_u8(b'[');
        } else {
            self.batch.put_u8(b',');
        }
        self.batch.put_slice(&self.scratch);
        self.batch_items += 1;
        if sent.is_none() && self.batch.len() - HEADER_LEN + 1 >= max_bytes {
            sent = self.take_batch();
        }
        Ok(Batched { opened, sent })
    }

    /// The batch as a frame, if it holds any item: `]` appended and the length patched in.
    pub(crate) fn take_batch(&mut self) -> Option<(OutFrame, u64)> {
        if self.batch_items == 0 {
            return None;
        }
        self.batch.put_u8(b']');
        let len = (self.batch.len() - HEADER_LEN) as u32;
        self.batch[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        let items = std::mem::take(&mut self.batch_items);
        Some((OutFrame::framed(self.batch.split().freeze()), items))
    }

    /// Bytes held by the batch being gathered.
    pub(crate) fn batch_bytes(&self) -> usize {
        self.batch.len()
    }
}

/// What adding an item to the batch did.
#[derive(Debug)]
pub(crate) struct Batched {
    /// The item opened a new batch: its linger starts now.
    pub(crate) opened: bool,
    /// A batch finished by this item (it reached `max_bytes`, or had no room for the item), with
    /// the number of items in it.
    pub(crate) sent: Option<(OutFrame, u64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_share_a_chunk_and_typed_and_raw_frames_match() {
        let mut enc = PayloadEncoder::new(1 << 20);
        let a = enc.encode_json(&"a").unwrap();
        let b = enc.encode_json(&vec![1, 2, 3]).unwrap();
        assert_eq!(a.to_vec(), b"\x00\x00\x00\x03\"a\"");
        let raw = enc.encode_raw(Bytes::from_static(b"[1,2,3]")).unwrap();
        assert_eq!(b.to_vec(), raw.to_vec());
        assert_eq!(b.to_vec(), b"\x00\x00\x00\x07[1,2,3]");
    }

    #[test]
    fn over_limit_payloads_are_refused_and_leave_nothing_behind() {
        let mut enc = PayloadEncoder::new(8);
        assert!(enc.encode_json(&"this is too long").is_err());
        assert!(enc.encode_raw(Bytes::from_static(&[0; 9])).is_err());
        let ok = enc.encode_json(&"ok").unwrap();
        assert_eq!(ok.to_vec(), b"\x00\x00\x00\x04\"ok\"");
    }

    #[test]
    fn a_batch_is_a_json_array_of_its_items_and_is_sent_at_its_size() {
        let mut enc = PayloadEncoder::new(1 << 20);
        let first = enc.batch_json(&1, 9).unwrap();
        assert!(first.opened && first.sent.is_none());
        assert_eq!(enc.batch_bytes(), HEADER_LEN + 2);
        let second = enc.batch_json(&[2, 3], 9).unwrap();
        assert!(!second.opened);
        let (frame, items) = second.sent.expect("9 bytes reached: [1,[2,3]]");
        assert_eq!(items, 2);
        assert_eq!(frame.to_vec(), b"\x00\x00\x00\x09[1,[2,3]]");
        assert!(enc.take_batch().is_none());
        assert_eq!(enc.batch_bytes(), 0);
    }

    #[test]
    fn a_batch_that_would_overflow_the_frame_limit_is_sent_before_the_item() {
        let mut enc = PayloadEncoder::new(10);
        assert!(enc.batch_json(&"abc", 1000).unwrap().sent.is_none()); // ["abc"] is 7
        let next = enc.batch_json(&"def", 1000).unwrap(); // ["abc","def"] would be 13
        let (frame, items) = next.sent.expect("the first batch went out");
        assert_eq!(
            (frame.to_vec(), items),
            (b"\x00\x00\x00\x07[\"abc\"]".to_vec(), 1)
        );
        let (frame, _) = enc.take_batch().unwrap();
        assert_eq!(frame.to_vec(), b"\x00\x00\x00\x07[\"def\"]");
        assert!(enc.batch_json(&"far too long", 1000).is_err());
    }
}
