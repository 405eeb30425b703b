//! The one piece of the consumer that touches a transport: it runs a connection core
//! ([`ConsumerConn`]) over any `AsyncRead + AsyncWrite` and feeds the application's queue (SPEC §8.1).

use std::time::Instant;

use framepipe_codec::Notice;
use framepipe_flow::queue::Sender;
use framepipe_flow::{MemoryPool, PeerAddr};
use framepipe_proto::consumer::{ConsumerConn, Event, InFrame, ReadOp, State, Transmit};
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::driver_session::{upkeep, SessionChange, SessionLink};
use crate::shutdown::Phase;
use crate::stats::{ReadingGauge, Stats};
use crate::Error;

/// What the reader hands to the application side, in stream order.
pub(crate) type Msg = Result<InFrame, Error>;

/// What the application tells a connection's driver.
#[derive(Debug)]
pub(crate) enum AppCmd {
    /// Every frame handed on has been handled: close (after the notice, if one is due).
    Done,
    /// The handler failed and the connection is to close with this notice (SPEC §7.7).
    Reject(Notice),
}

/// How a driver ended.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DriverEnd {
    /// Frames read from the transport that never reached the application's queue (dropped by a
    /// rejection, an abandoned connection or a forced shutdown).
    pub(crate) dropped: u64,
    /// Frames read from the transport in full (handed on or dropped) or refused (SPEC §7.5); a frame
    /// cut short by a rejection, a forced shutdown or an abandoned connection is not one.
    pub(crate) frames_read: u64,
}

/// The driver of one connection. Holds the transport, the core, the application's queue and the
/// signals; dropping it closes the transport.
pub(crate) struct Driver<Io> {
    pub(crate) io: Io,
    pub(crate) core: ConsumerConn,
    pub(crate) tx: Option<Sender<Msg>>,
    pub(crate) app: Option<mpsc::UnboundedReceiver<AppCmd>>,
    pub(crate) phase: watch::Receiver<Phase>,
    pub(crate) peer: PeerAddr,
    pub(crate) stats: Stats,
    pub(crate) memory: MemoryPool,
    /// Kept for as long as the connection lives: its place in the socket set, and its probe (which
    /// can also reset it).
    pub(crate) registration: Registration,
    /// Frames read that never reached the application's queue.
    pub(crate) dropped: u64,
    /// Frames read in full or refused: taken from the core, or dropped by it.
    pub(crate) frames_read: u64,
    /// Where input is read and thrown away while draining.
    pub(crate) sink: Option<Box<[u8]>>,
    /// Set when the shutdown is forced: the connection ends then at the latest.
    pub(crate) grace: Option<Instant>,
    /// The connection's session, if it says hello (SPEC §10).
    pub(crate) link: SessionLink,
}

/// Bytes read at a time while draining (SPEC §6.3.2).
const DRAIN_READ: usize = 16 * 1024;

/// A connection's place in the consumer's socket set (SPEC §5.3): its probe, or a mark that its
/// queues cannot be read.
#[allow(dead_code)] // `Unprobed` is held for its drop
pub(crate) enum Registration {
    Probed(std::sync::Arc<dyn framepipe_flow::SocketProbe>),
    Unprobed(framepipe_flow::Unprobed),
    /// A refused connection: not counted anywhere.
    Refused,
}

/// What interrupted a wait.
pub(crate) enum Control {
    App(Option<AppCmd>),
    Phase(Phase),
    /// The session's application handled more frames, or another connection took it over.
    Session(SessionChange),
    /// A forced shutdown's grace has passed without a word from the application.
    GraceOver,
}

/// How long a forced shutdown waits for the application to name the first frame it did not handle,
/// so the producer is told with a notice rather than by a close it might take for a confirmation
/// (SPEC §8.5.2): 250 ms, which also bounds writing that notice.
const FORCED_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Waits for a command from the application, a change of shutdown phase, or the end of the grace
/// a forced shutdown leaves the application to say which frames it handled (`grace`).
pub(crate) async fn control(
    app: &mut Option<mpsc::UnboundedReceiver<AppCmd>>,
    phase: &mut watch::Receiver<Phase>,
    grace: Option<Instant>,
    link: &mut SessionLink,
) -> Control {
    let app_cmd = async {
        match app {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        cmd = app_cmd => Control::App(cmd),
        changed = phase.changed() => match changed {
            Ok(()) => Control::Phase(*phase.borrow_and_update()),
            Err(_) => std::future::pending().await,
        },
        () = sleep_until(grace) => Control::GraceOver,
        change = link.changed() => Control::Session(change),
    }
}

/// The connection must end at once (the application went away, or the shutdown was forced).
#[derive(Debug)]
pub(crate) struct Stop;

impl<Io: AsyncRead + AsyncWrite + Unpin> Driver<Io> {
    /// Runs the connection to its end; it was counted as open when accepted, and is counted as
    /// closed here.
    pub(crate) async fn run(mut self) -> DriverEnd {
        self.drive().await;
        self.stats.add_duplicates(self.core.duplicates());
        let session = self.link.slot.get().map(|lease| lease.slot.id());
        let (peer, connection) = (&self.peer, self.link.conn_id);
        if let (true, Some(session)) = (self.core.lost(), session) {
            tracing::info!(%peer, connection, %session,
                "session connection lost; the producer resumes it");
        }
        if let (true, Some(lease)) = (self.core.session_ended(), self.link.slot.get()) {
            tracing::info!(%peer, connection, session = %lease.slot.id(), "session ended");
            let slot = lease.slot.clone();
            let _ = tokio::task::spawn_blocking(move || slot.forget()).await;
        }
        self.stats.connection_closed();
        DriverEnd {
            dropped: self.dropped,
            frames_read: self.frames_read,
        }
    }

    /// Runs a refused connection (its notice, FIN and drain), not counted as open.
    pub(crate) async fn refuse(mut self) {
        self.drive().await;
    }

    async fn drive(&mut self) {
        let mut gauge = ReadingGauge::new(&self.stats);
        match *self.phase.borrow_and_update() {
            Phase::Running => {}
            Phase::Draining => self.core.shutdown(now()),
            Phase::Forced => self.grace = Some(now()),
        }
        loop {
            gauge.set(self.core.buffered());
            // Once a notice is being written the producer learns from it what was handled.
            let told = matches!(self.core.state(), State::Notifying | State::Draining);
            let step = match self.core.poll_read(now()) {
                ReadOp::Deliver => self.deliver().await,
                ReadOp::Read { .. } => self.read_and_write().await,
                ReadOp::Reserve { bytes } => self.reserve(bytes).await,
                ReadOp::AwaitApp => self.await_app().await,
                ReadOp::Handshake => self.handshake().await,
                ReadOp::Transmit => self.transmit().await,
                ReadOp::Discard => self.discard().await,
                ReadOp::Close => break,
            };
            if step.is_err() {
                if !told {
                    self.reset();
                }
                break;
            }
        }
        drop(gauge);
    }

    /// The connection ends with frames read and not handled (the application went away, or the
    /// shutdown was forced): a clean close would tell a producer that has written everything that
    /// they were handled (SPEC §6.2.3), so it is reset instead where the transport can (TCP). Not
    /// called once a notice is on its way: the notice says what was handled.
    fn reset(&self) {
        if let Registration::Probed(probe) = &self.registration {
            if let Err(e) = probe.reset_on_close() {
                tracing::debug!(peer = %self.peer, "the connection cannot be reset: {e}");
            }
        }
    }

    /// The application dropped its end of the queue: `frame` (0 or 1) being sent and the frames
    /// the core still holds are dropped, and the connection ends.
    fn app_gone(&mut self, frame: u64) -> Result<(), Stop> {
        self.dropped += frame;
        let dropped = self.core.abandon();
        self.count_dropped(dropped);
        Err(Stop)
    }

    /// Counts frames the core dropped without handing them on (they were read in full).
    fn count_dropped(&mut self, frames: u64) {
        self.dropped += frames;
        self.frames_read += frames;
    }

    /// Applies a command or a phase change; `Err` if the connection must end at once.
    pub(crate) fn apply(&mut self, control: Control) -> Result<(), Stop> {
        match control {
            Control::App(Some(AppCmd::Done)) => {
                // The application has said its last word: its channel closing now is no news.
                self.app = None;
                // A session's last frames were handled: acked before the goodbye (SPEC §10.7).
                if let Some(handled) = self.link.handled() {
                    self.core.handle_handled(now(), handled);
                }
                self.core.handle_app_done(now());
            }
            Control::Session(SessionChange::Handled(handled)) => {
                self.core.handle_handled(now(), handled)
            }
            Control::Session(SessionChange::Superseded) => {
                // Another connection of the session took over: read nothing more, hand on what was
                // read, and close with a reset (its producer has gone on elsewhere; SPEC §10.8).
                tracing::info!(peer = %self.peer, connection = self.link.conn_id,
                    "session taken over by a newer connection");
                self.core.stop_reading(now());
                self.reset();
            }
            Control::Session(SessionChange::Nothing) => {}
            Control::App(Some(AppCmd::Reject(notice))) => {
                // Frames the core still held are dropped with it; the application drains its queue.
                self.app = None;
                let dropped = self.core.reject(now(), notice);
                self.count_dropped(dropped);
                self.tx = None;
            }
            Control::Phase(Phase::Forced) if self.app.is_some() && self.grace.is_none() => {
                // The application names the first frame it did not handle (a `Reject`), within
                // the grace; the frames it had are dropped on its side (SPEC §8.5.2).
                self.grace = Some(now() + FORCED_GRACE);
            }
            Control::Phase(Phase::Forced) => {}
            Control::App(None) | Control::GraceOver => {
                let dropped = self.core.abandon();
                self.count_dropped(dropped);
                return Err(Stop);
            }
            Control::Phase(Phase::Draining) => self.core.shutdown(now()),
            Control::Phase(Phase::Running) => {}
        }
        Ok(())
    }

    /// Hands the core's events to the application's queue, in order.
    ///
    /// # Backpressure
    /// Waits while the queue is full: meanwhile nothing is read, so the transport's window closes.
    /// A shutdown does not interrupt the wait (the frame is handed on); a rejection, a forced
    /// shutdown or an application gone drop the frame.
    async fn deliver(&mut self) -> Result<(), Stop> {
        while let Some(event) = self.core.poll_event() {
            if matches!(event, Event::Hello(_)) {
                continue; // answered at ReadOp::Handshake
            }
            // Counted here, not from the framer: a frame whose header was read but whose body never
            // arrived in full (cut short by a forced shutdown or a rejection) was not read (SPEC §7.5).
            let frame_read = match &event {
                Event::Frame(_) | Event::FrameError(_) => true,
                Event::Failed(e) => matches!(e, framepipe_proto::Error::Frame(_)),
                Event::Hello(_) => false,
            };
            self.frames_read += u64::from(frame_read);
            let (msg, bytes) = match event {
                Event::Frame(frame) => {
                    self.stats.add_framed();
                    let len = frame.frame.wire_len();
                    (Ok(frame), len)
                }
                Event::FrameError(source) => (
                    // A frame refused is a frame read (SPEC §7.5).
                    Err({
                        self.stats.add_framed();
                        Error::Frame {
                            peer: self.peer.clone(),
                            source,
                        }
                    }),
                    0,
                ),
                Event::Failed(e) => (Err(Error::from_core(&self.peer, e)), 0),
                Event::Hello(_) => continue,
            };
            let frame = u64::from(msg.is_ok());
            let Some(tx) = self.tx.clone() else {
                self.dropped += frame;
                continue; // rejected: the core has dropped the rest
            };
            let send = tx.send(msg, bytes);
            tokio::pin!(send);
            // The usual case, room in the queue, needs no wait on the controls.
            if let Some(sent) = (&mut send).now_or_never() {
                if sent.is_err() {
                    return self.app_gone(frame);
                }
                continue;
            }
            loop {
                tokio::select! {
                    sent = &mut send => {
                        if sent.is_err() {
                            return self.app_gone(frame);
                        }
                        break;
                    }
                    () = upkeep(&mut self.io, &mut self.core) => {}
                    c = control(&mut self.app, &mut self.phase, self.grace, &mut self.link) => {
                        let stop = self.apply(c);
                        if self.tx.is_none() || stop.is_err() {
                            self.dropped += frame;
                            return stop;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits for the memory limit to have room (SPEC §7.6.4).
    async fn reserve(&mut self, bytes: usize) -> Result<(), Stop> {
        tokio::select! {
            r = self.memory.acquire(bytes) => self.core.grant_memory(now(), r),
            () = upkeep(&mut self.io, &mut self.core) => {}
            c = control(&mut self.app, &mut self.phase, self.grace, &mut self.link) => self.apply(c)?,
        }
        Ok(())
    }

    /// No more input: closes the application's queue and waits until it has finished.
    async fn await_app(&mut self) -> Result<(), Stop> {
        self.tx = None;
        if self.app.is_none() {
            // Nobody to wait for (a refused connection never gets here).
            self.core.handle_app_done(now());
            return Ok(());
        }
        tokio::select! {
            () = upkeep(&mut self.io, &mut self.core) => Ok(()),
            c = control(&mut self.app, &mut self.phase, self.grace, &mut self.link) => self.apply(c),
        }
    }

    /// Writes the notice, then shuts down our direction (SPEC §6.3.2), within the core's deadline.
    async fn transmit(&mut self) -> Result<(), Stop> {
        let deadline = self.core.poll_timeout();
        let written = match self.core.poll_transmit() {
            Transmit::Bytes(bytes) => tokio::select! {
                w = self.io.write(bytes) => Some(w),
                () = sleep_until(deadline) => None,
                c = control(&mut self.app, &mut self.phase, self.grace, &mut self.link) => { self.apply(c)?; return Ok(()) }
            },
            Transmit::Fin => {
                tokio::select! {
                    r = self.io.shutdown() => match r {
                        Ok(()) => self.core.handle_fin_sent(now()),
                        Err(e) => self.core.handle_write_error(now(), e),
                    },
                    () = sleep_until(deadline) => self.core.handle_timeout(now()),
                    c = control(&mut self.app, &mut self.phase, self.grace, &mut self.link) => self.apply(c)?,
                }
                return Ok(());
            }
            Transmit::Nothing => return Ok(()),
        };
        match written {
            Some(Ok(n)) => self.core.handle_written(now(), n),
            Some(Err(e)) => self.core.handle_write_error(now(), e),
            None => self.core.handle_timeout(now()),
        }
        Ok(())
    }

    /// Reads and throws away what the producer still sends, until it closes or the drain deadline.
    async fn discard(&mut self) -> Result<(), Stop> {
        let deadline = self.core.poll_timeout();
        // On the heap, and only once draining: a buffer in the future would cost every connection.
        let sink = self
            .sink
            .get_or_insert_with(|| vec![0; DRAIN_READ].into_boxed_slice());
        tokio::select! {
            r = self.io.read(sink) => match r {
                Ok(n) => self.core.handle_discarded(now(), n),
                Err(e) => self.core.handle_read_error(now(), e),
            },
            () = sleep_until(deadline) => self.core.handle_timeout(now()),
            c = control(&mut self.app, &mut self.phase, self.grace, &mut self.link) => self.apply(c)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod size_probe {
    #[test]
    fn print_sizes() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, _b) = tokio::io::duplex(64);
            let pool = framepipe_flow::MemoryPool::new(1 << 20, 1 << 10);
            let stats = crate::stats::Stats::new(framepipe_flow::SocketSet::new(), pool.clone());
            let shutdown = crate::Shutdown::default();
            let d = super::Driver {
                io: a,
                core: framepipe_proto::consumer::ConsumerConn::new(
                    Default::default(),
                    &pool,
                    super::now(),
                ),
                tx: None,
                app: None,
                phase: shutdown.subscribe(),
                peer: framepipe_flow::PeerAddr::other("x"),
                stats,
                memory: pool,
                registration: super::Registration::Refused,
                dropped: 0,
                frames_read: 0,
                sink: None,
                grace: None,
                link: Default::default(),
            };
            let fut = d.run();
            eprintln!("driver future: {} bytes", std::mem::size_of_val(&fut));
        });
    }
}
