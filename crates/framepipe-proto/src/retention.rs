//! A session producer's unacknowledged frames, kept to be sent again after a reconnect (SPEC §10.2).

use std::collections::VecDeque;

use crate::producer::OutFrame;
use crate::Error;

/// What an ack or a resume released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Frames released.
    pub frames: u64,
    /// Their bytes on the wire.
    pub bytes: usize,
}

/// The frames a session's producer has accepted and the consumer has not acknowledged, numbered,
/// in order (SPEC §10.2). **It is the producer's byte budget:** a frame's bytes are taken when it is
/// accepted and given back when the consumer's ack covers it, not when it is written, so the
/// acknowledgements carry the backpressure.
///
/// Holds each frame as the [`OutFrame`] that was written (header and body, the body a shared
/// `Bytes`): sending it again costs a reference count, not a copy. Memory: at most `budget` bytes of frames, or one frame when a single frame is
/// larger than the budget (it is accepted alone).
///
/// ```
/// use bytes::Bytes;
/// use framepipe_proto::producer::OutFrame;
/// use framepipe_proto::retention::{Released, Retention};
///
/// let frame = OutFrame::framed(Bytes::from_static(&[0; 40])); // 40 bytes on the wire
/// let mut r = Retention::new(100, 0);
/// assert_eq!(r.push(frame.clone()), 0);
/// assert_eq!(r.push(frame), 1);
/// assert!(!r.has_room(40)); // 80 + 40 > 100: the producer waits for an ack
/// assert_eq!(r.ack(1)?, Released { frames: 1, bytes: 40 }); // frame 0 was handled
/// assert!(r.has_room(40));
/// // The connection drops; the consumer's welcome says it has handled nothing more:
/// r.resume(1)?;
/// assert_eq!(r.iter().map(|(seq, _)| seq).collect::<Vec<_>>(), [1]); // send frame 1 again
/// # Ok::<(), framepipe_proto::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Retention {
    frames: VecDeque<OutFrame>,
    /// Sequence number of `frames[0]`, or of the next frame when empty.
    first: u64,
    bytes: usize,
    budget: usize,
}

impl Retention {
    /// An empty retention whose next frame will be numbered `first`, holding at most `budget` bytes.
    pub fn new(budget: usize, first: u64) -> Self {
        Retention {
            frames: VecDeque::new(),
            first,
            bytes: 0,
            budget,
        }
    }

    /// Whether a frame of `len` wire bytes may be accepted now: it fits in what the budget has left,
    /// or nothing is retained (a frame larger than the budget goes alone).
    pub fn has_room(&self, len: usize) -> bool {
        self.frames.is_empty() || self.bytes + len <= self.budget
    }

    /// Retains `frame` (its wire bytes) and returns its sequence number. The caller checks
    /// [`has_room`](Self::has_room) first; retaining without room overruns the budget (and is
    /// reported by [`bytes`](Self::bytes)), never refused.
    pub fn push(&mut self, frame: OutFrame) -> u64 {
        self.bytes += frame.wire_len();
        self.frames.push_back(frame);
        self.next() - 1
    }

    /// The consumer acknowledged every frame below `next` (SPEC §10.2.3): they are released. An ack
    /// below the oldest frame retained is an old one, overtaken, and releases nothing; an ack beyond
    /// the frames accepted is [`Error::OutOfSequence`].
    pub fn ack(&mut self, next: u64) -> Result<Released, Error> {
        if next < self.first {
            return Ok(Released::default());
        }
        self.release_below(next, "ack")
    }

    /// The consumer's welcome asks to resume at `next` (SPEC §10.2.4): frames below it were handled
    /// and are released; those from `next` on are sent again, in order ([`iter`](Self::iter)). A
    /// resume point below the oldest frame retained (frames already acknowledged) or beyond the
    /// frames accepted is [`Error::OutOfSequence`].
    pub fn resume(&mut self, next: u64) -> Result<Released, Error> {
        if next < self.first {
            return Err(self.out_of_sequence("resume", next));
        }
        self.release_below(next, "resume")
    }

    /// The frames retained, oldest first, with their sequence numbers.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &OutFrame)> + '_ {
        (self.first..).zip(self.frames.iter())
    }

    /// The frames from sequence number `seq` on, oldest first (all of them if `seq` is before the
    /// oldest, none if it is past the newest).
    pub fn from_seq(&self, seq: u64) -> std::collections::vec_deque::Iter<'_, OutFrame> {
        let skip = seq.saturating_sub(self.first).min(self.frames.len() as u64);
        self.frames.range(skip as usize..)
    }

    /// Sequence number of the oldest frame retained (or of the next frame, when none is).
    pub fn first(&self) -> u64 {
        self.first
    }

    /// Sequence number the next frame accepted will have.
    pub fn next(&self) -> u64 {
        self.first + self.frames.len() as u64
    }

    /// Frames retained.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// `true` when every frame accepted has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Wire bytes retained: what the budget has given out.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The budget.
    pub fn budget(&self) -> usize {
        self.budget
    }

    fn release_below(&mut self, next: u64, what: &'static str) -> Result<Released, Error> {
        if next > self.next() {
            return Err(self.out_of_sequence(what, next));
        }
        let mut released = Released::default();
        while self.first < next {
            let frame = self.frames.pop_front().expect("next <= self.next()");
            self.first += 1;
            self.bytes -= frame.wire_len();
            released.frames += 1;
            released.bytes += frame.wire_len();
        }
        Ok(released)
    }

    fn out_of_sequence(&self, what: &'static str, next: u64) -> Error {
        Error::OutOfSequence {
            what,
            next,
            first: self.first,
            accepted: self.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A frame of `len` (at least 4) bytes on the wire.
    fn frame(len: usize) -> OutFrame {
        OutFrame::with_header([0; 4], bytes::Bytes::from(vec![7u8; len - 4]))
    }

    #[test]
    fn a_frame_larger_than_the_budget_goes_alone() {
        let mut r = Retention::new(10, 5);
        assert!(r.has_room(50));
        assert_eq!(r.push(frame(50)), 5);
        assert!(!r.has_room(1));
        assert_eq!(r.bytes(), 50);
    }

    #[test]
    fn an_old_ack_releases_nothing_and_an_ack_beyond_is_refused() {
        let mut r = Retention::new(100, 0);
        for _ in 0..3 {
            r.push(frame(10));
        }
        assert_eq!(
            r.ack(2).unwrap(),
            Released {
                frames: 2,
                bytes: 20
            }
        );
        assert_eq!(
            r.ack(1).unwrap(),
            Released::default(),
            "overtaken by the ack of 2"
        );
        let err = r.ack(4).unwrap_err();
        assert!(
            matches!(
                err,
                Error::OutOfSequence {
                    what: "ack",
                    next: 4,
                    first: 2,
                    accepted: 3
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), "out_of_sequence");
        assert_eq!(
            (r.first(), r.len(), r.bytes()),
            (2, 1, 10),
            "nothing changed"
        );
    }

    #[test]
    fn a_resume_before_what_is_retained_is_refused() {
        let mut r = Retention::new(100, 0);
        r.push(frame(10));
        r.push(frame(10));
        r.ack(1).unwrap();
        let err = r.resume(0).unwrap_err();
        assert!(matches!(
            err,
            Error::OutOfSequence {
                what: "resume",
                next: 0,
                ..
            }
        ));
        assert_eq!(
            r.resume(2).unwrap(),
            Released {
                frames: 1,
                bytes: 10
            }
        );
        assert!(r.is_empty());
        assert_eq!(r.next(), 2);
    }

    /// An operation on a retention, for the model test.
    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Ack(u64),
        Resume(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (4usize..40).prop_map(Op::Push),
            (0u64..30).prop_map(Op::Ack),
            (0u64..30).prop_map(Op::Resume),
        ]
    }

    proptest! {
        /// Against a plain list of (sequence, length): the same frames retained, in order, the same
        /// bytes, and every error exactly where the model says one is due (SPEC §10.2).
        #[test]
        fn retention_matches_a_list_of_unacknowledged_frames(ops in proptest::collection::vec(op(), 0..60)) {
            let mut r = Retention::new(64, 0);
            let mut model: Vec<(u64, usize)> = Vec::new();
            let mut next_seq = 0u64;
            for op in ops {
                let first = model.first().map_or(next_seq, |f| f.0);
                match op {
                    Op::Push(len) => {
                        let room = model.is_empty() || model.iter().map(|f| f.1).sum::<usize>() + len <= 64;
                        prop_assert_eq!(r.has_room(len), room);
                        if room {
                            prop_assert_eq!(r.push(frame(len)), next_seq);
                            model.push((next_seq, len));
                            next_seq += 1;
                        }
                    }
                    Op::Ack(n) | Op::Resume(n) => {
                        let is_ack = matches!(op, Op::Ack(_));
                        let got = if is_ack { r.ack(n) } else { r.resume(n) };
                        let valid = n <= next_seq && (is_ack || n >= first);
                        prop_assert_eq!(got.is_ok(), valid, "{:?} at first {} next {}", op, first, next_seq);
                        if valid {
                            model.retain(|f| f.0 >= n);
                        }
                    }
                }
                let seqs: Vec<u64> = r.iter().map(|(s, _)| s).collect();
                prop_assert_eq!(seqs, model.iter().map(|f| f.0).collect::<Vec<_>>());
                prop_assert_eq!(r.bytes(), model.iter().map(|f| f.1).sum::<usize>());
                prop_assert_eq!(r.next(), next_seq);
            }
        }
    }
}
