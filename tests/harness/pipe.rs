//! The link: two endpoints joined by in-memory pipes, with faults keyed by byte offset.
//!
//! ```text
//!  endpoint A ══ duplex ══ pump Up (A → B) ══ duplex ══ endpoint B
//!  (End)               ╚══ pump Down (B → A) ══╝         (End)
//! ```
//!
//! Each endpoint is an [`End`]: a `tokio::io::duplex` half, wrapped so that a cut can make its
//! reads and writes fail. Between the two far halves a pump per direction reads what one endpoint
//! wrote, in pieces, and writes each piece to the other, applying the faults of a [`Schedule`]:
//!
//! - pieces are cut at every fault offset and at [`PIECE`] bytes; each is written on its own and
//!   the pump yields after it, so the reader gets it in a read of its own;
//! - [`Fault::Stall`] at offset `n`: once `n` bytes have been read from the source, nothing more is
//!   read for the duration (what was already read still arrives);
//! - [`Fault::Delay`] at offset `n`: from byte `n` on, each piece is delivered that long after it
//!   was read (latency; `Duration::ZERO` ends it);
//! - [`Fault::Cut`] at offset `n`: once `n` bytes have been delivered, the whole link is cut, both
//!   ways ([`Link::cut`] does the same at any time). [`Cut::Close`]: each endpoint reads what had
//!   reached it, then end of stream, and its writes fail with `BrokenPipe`. [`Cut::Reset`]: the
//!   same, but reads end with `ConnectionReset` and writes fail with `ConnectionReset`;
//! - [`Fault::Split`] at offset `n`: only a piece boundary.
//!
//! An endpoint that shuts down its writing (FIN) makes the other read end of stream after the bytes
//! before it. An endpoint that is dropped does the same, and the other's later writes fail with
//! `BrokenPipe` once the pump finds nobody to deliver to (as writing to a closed TCP peer does).
//! The pumps spend no virtual time of their own: on a paused clock every delay is the schedule's.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Bytes each endpoint's pipe holds before its writer waits (unless the schedule says otherwise).
pub const DEFAULT_CAPACITY: usize = 64 * 1024;
/// Largest piece a pump moves at once.
pub const PIECE: usize = 16 * 1024;
/// Pieces read and not yet delivered, per direction, at most (with a delay in force).
const IN_FLIGHT: usize = 4;

/// A direction of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    /// From endpoint A (the producer's side) to endpoint B (the consumer's side).
    Up,
    /// From B back to A (notices, end of stream).
    Down,
}

/// How a link is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Closed both ways: reads end, writes fail with `BrokenPipe`.
    Close,
    /// Reset: reads and writes fail with `ConnectionReset` (after what had already arrived).
    Reset,
}

/// Something that happens to a direction at a byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A piece boundary, nothing else.
    Split,
    /// Read nothing more from the source for this long.
    Stall(Duration),
    /// Deliver each piece from here on this long after it was read.
    Delay(Duration),
    /// Cut the link once the bytes before have been delivered.
    Cut(Cut),
}

/// The faults of a link, by direction and byte offset, and its pipes' capacity.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    faults: Vec<(Dir, u64, Fault)>,
    capacity: Option<usize>,
}

impl Schedule {
    /// No faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `fault` at byte `offset` of `dir`. Several faults at one offset apply in order.
    pub fn at(mut self, dir: Dir, offset: u64, fault: Fault) -> Self {
        self.faults.push((dir, offset, fault));
        self
    }

    /// A piece boundary at `offset`.
    pub fn split(self, dir: Dir, offset: u64) -> Self {
        self.at(dir, offset, Fault::Split)
    }

    /// Nothing more is read from `dir`'s source for `d` once `offset` bytes have been.
    pub fn stall(self, dir: Dir, offset: u64, d: Duration) -> Self {
        self.at(dir, offset, Fault::Stall(d))
    }

    /// From byte `offset` of `dir`, pieces arrive `d` after they were sent.
    pub fn delay(self, dir: Dir, offset: u64, d: Duration) -> Self {
        self.at(dir, offset, Fault::Delay(d))
    }

    /// The link is cut once `offset` bytes of `dir` have been delivered.
    pub fn cut(self, dir: Dir, offset: u64, how: Cut) -> Self {
        self.at(dir, offset, Fault::Cut(how))
    }

    /// Each endpoint's pipe holds `bytes` (default [`DEFAULT_CAPACITY`]).
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = Some(bytes);
        self
    }

    fn faults(&self, dir: Dir) -> BTreeMap<u64, Vec<Fault>> {
        let mut by_offset: BTreeMap<u64, Vec<Fault>> = BTreeMap::new();
        for &(d, offset, fault) in &self.faults {
            if d == dir {
                by_offset.entry(offset).or_default().push(fault);
            }
        }
        by_offset
    }
}

/// How an endpoint's transport has been broken.
#[derive(Debug, Default)]
struct Broken {
    /// Writes fail with this.
    writes: Option<io::ErrorKind>,
    /// Reads that find nothing more end with `ConnectionReset` instead of end of stream.
    reset: bool,
    /// The task waiting to write, woken when writes break.
    write_waker: Option<Waker>,
    /// When the endpoint was dropped.
    dropped_at: Option<Instant>,
}

/// What the link and one endpoint share.
#[derive(Debug, Default)]
struct EndCtl(Mutex<Broken>);

impl EndCtl {
    fn lock(&self) -> std::sync::MutexGuard<'_, Broken> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn break_writes(&self, kind: io::ErrorKind, reset: bool) {
        let waker = {
            let mut b = self.lock();
            b.writes.get_or_insert(kind);
            b.reset |= reset;
            b.write_waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// One endpoint's transport: `AsyncRead + AsyncWrite`, for a producer (`Builder::on`), a consumer
/// (`Incoming`) or a [`RawPeer`](super::RawPeer).
#[derive(Debug)]
pub struct End {
    io: DuplexStream,
    ctl: Arc<EndCtl>,
}

impl End {
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut DuplexStream>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let mut b = self.ctl.lock();
        if let Some(kind) = b.writes {
            return Poll::Ready(Err(kind.into()));
        }
        let r = write(Pin::new(&mut self.io), cx);
        if r.is_pending() {
            b.write_waker = Some(cx.waker().clone());
        }
        r
    }
}

impl Drop for End {
    fn drop(&mut self) {
        self.ctl.lock().dropped_at = Some(Instant::now());
    }
}

impl AsyncRead for End {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let ended = matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() == before;
        if ended && buf.remaining() > 0 && self.ctl.lock().reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        r
    }
}

impl AsyncWrite for End {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What the pumps and the test's handle share.
#[derive(Debug)]
struct Shared {
    /// Bytes delivered, Up and Down.
    passed: [AtomicU64; 2],
    cut: watch::Sender<Option<(Cut, Instant)>>,
    /// Endpoint A's and B's controls.
    ends: [Arc<EndCtl>; 2],
}

impl Shared {
    fn cut(&self, how: Cut) {
        let (kind, reset) = match how {
            Cut::Close => (io::ErrorKind::BrokenPipe, false),
            Cut::Reset => (io::ErrorKind::ConnectionReset, true),
        };
        for end in &self.ends {
            end.break_writes(kind, reset);
        }
        // The pumps stop and drop the far halves: each endpoint's pending read or write wakes.
        self.cut.send_if_modified(|c| {
            let first = c.is_none();
            c.get_or_insert((how, Instant::now()));
            first
        });
    }
}

/// The test's handle on a link: what passed, when it was cut, when an endpoint was dropped.
#[derive(Debug, Clone)]
pub struct Link {
    shared: Arc<Shared>,
}

impl Link {
    /// A link with `schedule`: endpoint A (the producer's side) and B (the consumer's side). Starts
    /// its pumps, so it must be called inside a Tokio runtime.
    pub fn open(schedule: &Schedule) -> (End, End, Link) {
        let capacity = schedule.capacity.unwrap_or(DEFAULT_CAPACITY);
        let (a, a_far) = tokio::io::duplex(capacity);
        let (b, b_far) = tokio::io::duplex(capacity);
        let shared = Arc::new(Shared {
            passed: [AtomicU64::new(0), AtomicU64::new(0)],
            cut: watch::Sender::new(None),
            ends: [Arc::default(), Arc::default()],
        });
        let (a_read, a_write) = tokio::io::split(a_far);
        let (b_read, b_write) = tokio::io::split(b_far);
        let up = Pump::new(Dir::Up, schedule, &shared);
        let down = Pump::new(Dir::Down, schedule, &shared);
        tokio::spawn(up.run(a_read, b_write));
        tokio::spawn(down.run(b_read, a_write));
        let end = |io, i: usize| End {
            io,
            ctl: shared.ends[i].clone(),
        };
        (end(a, 0), end(b, 1), Link { shared })
    }

    /// Bytes delivered in `dir` so far.
    pub fn passed(&self, dir: Dir) -> u64 {
        self.shared.passed[dir as usize].load(Ordering::SeqCst)
    }

    /// Cuts the link now, both ways.
    pub fn cut(&self, how: Cut) {
        self.shared.cut(how);
    }

    /// When the link was cut, if it was.
    pub fn cut_at(&self) -> Option<Instant> {
        self.shared.cut.borrow().map(|(_, at)| at)
    }

    /// When endpoint A (`Dir::Up`'s source) or B (`Dir::Down`'s source) was dropped, if it was:
    /// when a producer or consumer let go of its transport.
    pub fn dropped_at(&self, source_of: Dir) -> Option<Instant> {
        self.shared.ends[source_of as usize].lock().dropped_at
    }
}

/// A piece on its way, or what ends a direction.
enum Piece {
    Bytes { data: Vec<u8>, at: Instant },
    Fin,
    Cut(Cut),
}

/// One direction's pump.
struct Pump {
    dir: Dir,
    faults: BTreeMap<u64, Vec<Fault>>,
    shared: Arc<Shared>,
}

impl Pump {
    fn new(dir: Dir, schedule: &Schedule, shared: &Arc<Shared>) -> Self {
        Pump {
            dir,
            faults: schedule.faults(dir),
            shared: shared.clone(),
        }
    }

    async fn run(self, src: ReadHalf<DuplexStream>, dst: WriteHalf<DuplexStream>) {
        let Pump {
            dir,
            faults,
            shared,
        } = self;
        let (tx, rx) = mpsc::channel(IN_FLIGHT);
        let mut cut = shared.cut.subscribe();
        let reader = async move {
            read_side(faults, src, tx).await;
            std::future::pending::<()>().await
        };
        // The direction ends when its writer does (FIN passed on, nobody to deliver to, a cut) or
        // when the link is cut; its halves are dropped then.
        tokio::select! {
            _ = cut.wait_for(Option::is_some) => {}
            () = write_side(dir, dst, rx, &shared) => {}
            () = reader => {}
        }
    }
}

/// Reads the source in pieces cut at fault offsets, applying stalls and delays.
async fn read_side(
    mut faults: BTreeMap<u64, Vec<Fault>>,
    mut src: ReadHalf<DuplexStream>,
    tx: mpsc::Sender<Piece>,
) {
    let mut offset = 0u64;
    let mut delay = Duration::ZERO;
    let mut buf = vec![0u8; PIECE];
    loop {
        for fault in faults.remove(&offset).unwrap_or_default() {
            match fault {
                Fault::Split => {}
                Fault::Stall(d) => tokio::time::sleep(d).await,
                Fault::Delay(d) => delay = d,
                Fault::Cut(how) => {
                    let _ = tx.send(Piece::Cut(how)).await;
                    return;
                }
            }
        }
        let room = faults
            .range(offset + 1..)
            .next()
            .map_or(PIECE as u64, |(&at, _)| at - offset);
        let limit = room.min(PIECE as u64) as usize;
        let n = match src.read(&mut buf[..limit]).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(Piece::Fin).await;
                return;
            }
            Ok(n) => n,
        };
        let piece = Piece::Bytes {
            data: buf[..n].to_vec(),
            at: Instant::now() + delay,
        };
        if tx.send(piece).await.is_err() {
            return;
        }
        offset += n as u64;
    }
}

/// Delivers pieces in order, each at its time; passes on FIN and cuts.
async fn write_side(
    dir: Dir,
    mut dst: WriteHalf<DuplexStream>,
    mut rx: mpsc::Receiver<Piece>,
    shared: &Shared,
) {
    while let Some(piece) = rx.recv().await {
        match piece {
            Piece::Bytes { data, at } => {
                tokio::time::sleep_until(at).await;
                if dst.write_all(&data).await.is_err() {
                    // The destination was dropped: the source's writes fail from now on.
                    shared.ends[dir as usize].break_writes(io::ErrorKind::BrokenPipe, false);
                    return;
                }
                shared.passed[dir as usize].fetch_add(data.len() as u64, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
            Piece::Fin => {
                let _ = dst.shutdown().await;
                return;
            }
            Piece::Cut(how) => return shared.cut(how),
        }
    }
}
