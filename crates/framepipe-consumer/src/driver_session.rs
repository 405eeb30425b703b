//! The consumer driver's session work (SPEC §10.4–§10.8): answering a hello from the session table,
//! writing acks and heartbeats while it waits, and reading and writing at once.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;

use framepipe_codec::session::Hello;
use framepipe_codec::Notice;
use framepipe_proto::consumer::{ConsumerConn, Transmit};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::driver::{now, sleep_until, Driver, Stop};
use crate::sessions::{Lease, Refused, SessionTable};

/// A connection's link to the session table.
#[derive(Debug, Default)]
pub(crate) struct SessionLink {
    /// `None`: this consumer does not offer sessions.
    pub(crate) table: Option<SessionTable>,
    /// The connection's id, as the table knows it.
    pub(crate) conn_id: u64,
    /// The connection's hold on its session once the hello is answered, shared with the
    /// application's side, which records there what it handled. The hold is let go when both the
    /// driver and the application's side are gone, so the next connection of the session begins
    /// only after every frame of this one was handled (SPEC §10.8).
    pub(crate) slot: Arc<OnceLock<Lease>>,
    /// Changes when another connection takes the session over.
    pub(crate) holder: Option<watch::Receiver<u64>>,
}

impl SessionLink {
    /// Waits until the application has handled more frames of the session, or until another
    /// connection takes the session over; pending for ever on a plain connection.
    pub(crate) async fn changed(&mut self) -> SessionChange {
        let (Some(lease), Some(holder)) = (self.slot.get(), &mut self.holder) else {
            return std::future::pending().await;
        };
        let me = self.conn_id;
        tokio::select! {
            () = lease.slot.moved() => SessionChange::Handled(lease.slot.ack_position()),
            changed = holder.changed() => match changed {
                Ok(()) if *holder.borrow_and_update() != me => SessionChange::Superseded,
                Ok(()) => SessionChange::Nothing,
                Err(_) => std::future::pending().await,
            },
        }
    }

    /// What may be acknowledged (`None` before the hello is answered): every frame below it was
    /// handled, and committed when there is a store.
    pub(crate) fn handled(&self) -> Option<u64> {
        self.slot.get().map(|l| l.slot.ack_position())
    }
}

/// What [`SessionLink::changed`] saw.
#[derive(Debug)]
pub(crate) enum SessionChange {
    /// The application has handled every frame below this.
    Handled(u64),
    /// Another connection took the session over.
    Superseded,
    /// Nothing to act on.
    Nothing,
}

/// What one read-and-write step did.
enum IoStep {
    Wrote(io::Result<usize>),
    Read(io::Result<usize>),
}

/// One step of a session's upkeep while the driver waits for something else: a write of the
/// control frames queued, or an ack or heartbeat deadline. Pending for ever when there is nothing
/// to do (and always on a plain connection).
pub(crate) async fn upkeep<Io: AsyncWrite + Unpin>(io: &mut Io, core: &mut ConsumerConn) {
    if !core.is_session() {
        return std::future::pending().await;
    }
    if let Transmit::Bytes(bytes) = core.poll_transmit() {
        match tokio::io::AsyncWriteExt::write(io, bytes).await {
            Ok(n) => core.handle_written(now(), n),
            Err(e) => core.handle_write_error(now(), e),
        }
        return;
    }
    sleep_until(core.poll_upkeep()).await;
    core.handle_upkeep(now());
}

impl<Io: AsyncRead + AsyncWrite + Unpin> Driver<Io> {
    /// Answers the hello: the table's slot for the session (refused when the hello may not have
    /// it, or the table is full), the connection that served it before stopped and finished, then
    /// the welcome from where the session is (SPEC §10.4, §10.8).
    pub(crate) async fn handshake(&mut self) -> Result<(), Stop> {
        let Some(hello) = self.core.session_hello().copied() else {
            return Ok(());
        };
        let Some(table) = self.link.table.clone() else {
            let notice = Notice::new(
                "session_unsupported",
                0,
                0,
                "this consumer reads plain streams only",
            );
            self.core.reject(now(), notice);
            return Ok(());
        };
        let conn = self.link.conn_id;
        let opened = match table.open(&hello, conn) {
            Ok(opened) => opened,
            Err(refused) => return self.refuse_hello(&hello, refused),
        };
        let known = opened.known;
        // Heartbeats while the previous connection's frames are handled (SPEC §10.6.1).
        let leasing = table.lease(opened, conn, &hello);
        tokio::pin!(leasing);
        let waited = loop {
            tokio::select! {
                leased = &mut leasing => break leased,
                c = crate::driver::control(&mut self.app, &mut self.phase, self.grace, &mut self.link) => {
                    return self.apply(c);
                }
                () = upkeep(&mut self.io, &mut self.core) => {}
            }
        };
        let (lease, start) = match waited {
            Ok(leased) => leased,
            Err(refused) => return self.refuse_hello(&hello, refused),
        };
        if known {
            self.stats.add_session_resumed();
        } else {
            self.stats.add_session_opened();
        }
        tracing::info!(peer = %self.peer, connection = conn, session = %hello.session,
            next = start.next, "{}", if known { "session resumed" } else { "session begun" });
        let mut holder = lease.slot.watch_holder();
        holder.borrow_and_update();
        self.link.holder = Some(holder);
        let _ = self.link.slot.set(lease);
        self.core.accept_session(now(), start);
        Ok(())
    }

    /// Refuses the hello with a notice saying why, logged at WARN (at ERROR when the store failed).
    /// The session, and any connection serving it, are untouched.
    fn refuse_hello(&mut self, hello: &Hello, refused: Refused) -> Result<(), Stop> {
        let (code, message) = refused.explain();
        let conn = self.link.conn_id;
        match refused {
            Refused::Store(_) => tracing::error!(peer = %self.peer, connection = conn,
                session = %hello.session, code, "hello refused: {message}"),
            Refused::Superseded => tracing::info!(peer = %self.peer, connection = conn,
                session = %hello.session, code, "hello refused: {message}"),
            _ => tracing::warn!(peer = %self.peer, connection = conn,
                session = %hello.session, code, "hello refused: {message}"),
        }
        self.stats.add_session_refused(code);
        self.core.reject(now(), Notice::new(code, 0, 0, message));
        Ok(())
    }
    /// Reads what the core granted and, in a session, writes its control frames at the same time.
    pub(crate) async fn read_and_write(&mut self) -> Result<(), Stop> {
        let deadline = self.core.poll_timeout();
        let Driver { io, core, .. } = self;
        let step = poll_fn(|cx| {
            if let Transmit::Bytes(bytes) = core.poll_transmit() {
                if let Poll::Ready(r) = Pin::new(&mut *io).poll_write(cx, bytes) {
                    return Poll::Ready(IoStep::Wrote(r));
                }
            }
            let mut buf = core.read_buf();
            tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut buf).map(IoStep::Read)
        });
        tokio::select! {
            step = step => match step {
                IoStep::Wrote(Ok(n)) => self.core.handle_written(now(), n),
                IoStep::Wrote(Err(e)) => self.core.handle_write_error(now(), e),
                IoStep::Read(Ok(n)) => {
                    self.stats.add_read(n);
                    self.core.handle_read(now(), n);
                }
                IoStep::Read(Err(e)) => self.core.handle_read_error(now(), e),
            },
            () = sleep_until(deadline) => self.core.handle_timeout(now()),
            c = crate::driver::control(&mut self.app, &mut self.phase, self.grace, &mut self.link) => self.apply(c)?,
        }
        Ok(())
    }
}
