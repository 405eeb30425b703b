//! Ordered parallel decode (SPEC §7.8): frame bodies are parsed by the task that takes a
//! connection's frames and by a pool of helper threads shared by the consumer's connections, and
//! each connection hands its frames out in wire order.
//!
//! A connection takes frames from its queue ahead of the handler and offers each to the helpers
//! (one job per frame, on one crossbeam channel). Whoever claims a frame first parses it: a helper,
//! which sends the result back on a oneshot channel, or the connection's own task, which, rather
//! than wait for the frame it must hand out next, parses the first frame no helper has claimed.
//! So the task waits only when every frame taken is claimed by a helper still at work, and the
//! runtime is never blocked by more parsing than with one worker. (A pool of `k` threads doing all
//! the parsing was measured first: with rayon-core, whose idle workers spin, and with this channel,
//! it doubled the consumer's CPU per byte for no gain in throughput on two cores; BENCHMARKS.md.)

use std::collections::VecDeque;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use framepipe_flow::queue::{Receiver, Share};
use framepipe_flow::Reservation;
use framepipe_proto::consumer::InFrame;
use futures::FutureExt;
use tokio::sync::oneshot;

use crate::driver::Msg;
use crate::{Error, Mode};

/// Most decode workers a consumer takes (SPEC §7.8).
pub const MAX_DECODE_WORKERS: usize = 64;

/// Frames of one connection taken ahead of the handler, per worker: two, so a worker that finishes
/// before the frame ahead of it still has the next one to parse.
const AHEAD_PER_WORKER: usize = 2;

/// A decode's outcome, or the panic it raised (re-raised where the frame is handed out).
type Decoded<I> = std::thread::Result<Result<I, framepipe_codec::Error>>;

/// A parse to run on a helper.
type Job = Box<dyn FnOnce() + Send>;

/// The consumer's decode helpers: `workers − 1` threads shared by its connections (each
/// connection's task is the last worker). The threads end once the pool is dropped and the jobs
/// already given are done.
pub(crate) struct DecodePool {
    jobs: crossbeam_channel::Sender<Job>,
    workers: usize,
}

impl fmt::Debug for DecodePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodePool")
            .field("workers", &self.workers)
            .finish()
    }
}

impl DecodePool {
    /// Starts `workers − 1` helper threads, named `framepipe-decode-N`.
    pub(crate) fn new(workers: usize) -> Result<Arc<Self>, Error> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        for i in 1..workers {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("framepipe-decode-{i}"))
                .spawn(move || {
                    for job in queue {
                        job();
                    }
                })
                .map_err(|e| {
                    Error::Config(format!("cannot start {} decode threads: {e}", workers - 1))
                })?;
        }
        Ok(Arc::new(DecodePool { jobs, workers }))
    }

    /// Offers `body` to the helpers. A helper parses it unless `claim` was taken first (by the
    /// connection's task) or the result is no longer wanted (the connection was dropped).
    fn offer<M: Mode>(
        &self,
        mode: &Arc<M>,
        body: Bytes,
        claim: &Arc<AtomicBool>,
        frame: u64,
        offset: u64,
    ) -> oneshot::Receiver<Decoded<M::Item>> {
        let (tx, rx) = oneshot::channel();
        let (mode, claim) = (mode.clone(), claim.clone());
        let job = Box::new(move || {
            if claim.swap(true, Ordering::AcqRel) || tx.is_closed() {
                return;
            }
            let decoded =
                std::panic::catch_unwind(AssertUnwindSafe(|| mode.decode(body, frame, offset)));
            let _ = tx.send(decoded);
        });
        // The helpers hold the receiving end for as long as they live, which is longer than `self`.
        let _ = self.jobs.send(job);
        rx
    }
}

/// A frame's place in its stream and its share of the memory limit: what is handed out with it.
pub(crate) struct Meta {
    pub(crate) index: u64,
    pub(crate) offset: u64,
    pub(crate) wire_bytes: usize,
    pub(crate) seq: Option<u64>,
    pub(crate) memory: Reservation,
}

impl Meta {
    /// Splits a frame from the driver into its place and its body.
    pub(crate) fn split(raw: InFrame) -> (Meta, Bytes) {
        let meta = Meta {
            index: raw.frame.index,
            offset: raw.frame.offset,
            wire_bytes: raw.frame.wire_len(),
            seq: raw.seq,
            memory: raw.memory,
        };
        (meta, raw.frame.body)
    }
}

/// What the connection hands out next: a decoded frame, or an error in its place.
pub(crate) enum Taken<I> {
    Frame(Meta, Result<I, framepipe_codec::Error>),
    Error(Error),
}

/// A frame taken from the queue ahead of the handler.
struct Ahead<I> {
    state: State<I>,
    /// Its bytes stay in the connection's queue budget until it is handed out (SPEC §7.8).
    _share: Share,
}

enum State<I> {
    /// Offered to the helpers; parsed by whoever takes `claim` first.
    Offered {
        meta: Meta,
        body: Bytes,
        claim: Arc<AtomicBool>,
        result: oneshot::Receiver<Decoded<I>>,
    },
    /// Parsed by the connection's task.
    Parsed(Meta, Result<I, framepipe_codec::Error>),
    /// An error read in a frame's place.
    Error(Error),
}

/// One connection's frames in decode, or decoded and waiting for the ones before them: at most
/// `AHEAD_PER_WORKER` × workers, handed out in the order they were read.
pub(crate) struct Window<I> {
    pool: Arc<DecodePool>,
    ahead: VecDeque<Ahead<I>>,
    depth: usize,
    /// The queue has ended: nothing more to take.
    ended: bool,
}

// Nothing in a window is ever pinned: the items it holds move out by value.
impl<I> Unpin for Window<I> {}

impl<I: Send + 'static> Window<I> {
    pub(crate) fn new(pool: Arc<DecodePool>) -> Self {
        let depth = pool.workers * AHEAD_PER_WORKER;
        Window {
            pool,
            ahead: VecDeque::with_capacity(depth),
            depth,
            ended: false,
        }
    }

    /// Fills the window from `rx`, then hands out its first frame once decoded, parsing frames
    /// no helper has claimed while it waits. `None` once the queue has ended and the window is
    /// empty.
    ///
    /// # Panics
    /// Re-raises a panic of `Mode::decode`, as decoding in place would.
    pub(crate) fn poll_next<M: Mode<Item = I>>(
        &mut self,
        rx: &mut Receiver<Msg>,
        mode: &Arc<M>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Taken<I>>> {
        self.fill(rx, mode, cx);
        loop {
            let Some(front) = self.ahead.front_mut() else {
                return match self.ended {
                    true => Poll::Ready(None),
                    false => Poll::Pending,
                };
            };
            if let State::Offered { result, .. } = &mut front.state {
                if let Poll::Ready(decoded) = result.poll_unpin(cx) {
                    return Poll::Ready(Some(self.pop_decoded(decoded)));
                }
            }
            if !matches!(front.state, State::Offered { .. }) {
                return Poll::Ready(Some(self.pop_parsed()));
            }
            // The front is not ready: parse the first frame nobody has claimed, the front itself
            // if a helper has not taken it yet. Nothing left to claim: wait for the helper.
            if !self.parse_unclaimed(mode) {
                return Poll::Pending;
            }
        }
    }

    /// Takes frames from the queue while the window has room, and offers them to the helpers.
    fn fill<M: Mode<Item = I>>(
        &mut self,
        rx: &mut Receiver<Msg>,
        mode: &Arc<M>,
        cx: &mut Context<'_>,
    ) {
        while !self.ended && self.ahead.len() < self.depth {
            match rx.poll_recv_held(cx) {
                Poll::Ready(Some((msg, share))) => {
                    let state = match msg {
                        Ok(raw) => {
                            let (meta, body) = Meta::split(raw);
                            let claim = Arc::new(AtomicBool::new(false));
                            let result = self.pool.offer(
                                mode,
                                body.clone(),
                                &claim,
                                meta.index,
                                meta.offset,
                            );
                            State::Offered {
                                meta,
                                body,
                                claim,
                                result,
                            }
                        }
                        Err(e) => State::Error(e),
                    };
                    self.ahead.push_back(Ahead {
                        state,
                        _share: share,
                    });
                }
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => break,
            }
        }
    }

    /// Parses, in this task, the first frame of the window no helper has claimed; `false` if
    /// there is none.
    fn parse_unclaimed<M: Mode<Item = I>>(&mut self, mode: &Arc<M>) -> bool {
        for ahead in &mut self.ahead {
            let State::Offered { claim, .. } = &ahead.state else {
                continue;
            };
            if claim.swap(true, Ordering::AcqRel) {
                continue;
            }
            let State::Offered { meta, body, .. } =
                std::mem::replace(&mut ahead.state, State::Error(Error::Config(String::new())))
            else {
                unreachable!("matched above");
            };
            let item = mode.decode(body, meta.index, meta.offset);
            ahead.state = State::Parsed(meta, item);
            return true;
        }
        false
    }

    /// Hands out the front, parsed by a helper.
    fn pop_decoded(&mut self, decoded: Result<Decoded<I>, oneshot::error::RecvError>) -> Taken<I> {
        let front = self.ahead.pop_front().expect("the front was just seen");
        let State::Offered { meta, .. } = front.state else {
            unreachable!("the front was offered");
        };
        match decoded {
            Ok(Ok(result)) => Taken::Frame(meta, result),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("a decode helper dropped frame {}", meta.index),
        }
    }

    /// Hands out the front, parsed here or an error.
    fn pop_parsed(&mut self) -> Taken<I> {
        match self
            .ahead
            .pop_front()
            .expect("the front was just seen")
            .state
        {
            State::Parsed(meta, result) => Taken::Frame(meta, result),
            State::Error(e) => Taken::Error(e),
            State::Offered { .. } => unreachable!("not offered"),
        }
    }

    /// Frames taken from the queue and not handed out; their shares of the budget go with them.
    pub(crate) fn clear(&mut self) -> u64 {
        let frames = self
            .ahead
            .iter()
            .filter(|a| !matches!(a.state, State::Error(_)))
            .count();
        self.ahead.clear();
        frames as u64
    }
}
