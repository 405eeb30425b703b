//! The consumer: accepts connections and starts a driver for each (SPEC §7.1).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use framepipe_codec::limits::HEADER_LEN;
use framepipe_codec::Notice;
use framepipe_flow::queue;
use framepipe_flow::{MemoryPool, PeerAddr, Sampler, SocketSet};
use framepipe_proto::codes;
use framepipe_proto::consumer::{ConsumerConfig, ConsumerConn};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::builder::Builder;
use crate::decode::DecodePool;
use crate::driver::{now, Driver, Registration};
use crate::driver_session::SessionLink;
use crate::listener::{Accepted, Listener};
use crate::sessions::SessionTable;
use crate::shutdown::{Phase, Shutdown};
use crate::stats::Stats;
use crate::{Connection, ConnectionInfo, Error, Health, Mode};

/// A listening consumer. Make one with [`Consumer::builder`]; then either [`Consumer::serve`] with a
/// handler, or take connections one at a time with [`Consumer::accept`].
#[derive(Debug)]
pub struct Consumer<L: Listener = TcpListener> {
    listener: L,
    pub(crate) config: Builder,
    sockets: SocketSet,
    pub(crate) stats: Stats,
    _sampler: Sampler,
    next_id: u64,
    pub(crate) seeds: u64,
    memory: MemoryPool,
    pub(crate) shutdown: Shutdown,
    /// Bounds the refused connections still draining (SPEC §7.6.3).
    refusing: Arc<Semaphore>,
    last_refusal_log: Option<Instant>,
    /// Sessions and where each is (SPEC §10.8); `None` when sessions are off.
    sessions: Option<SessionTable>,
    /// Dropped with the consumer: [`Health`] sees it gone.
    alive: Arc<()>,
    /// The decode workers, when there is more than one (SPEC §7.8).
    decoders: Option<Arc<DecodePool>>,
}

/// Most refused connections kept open at once to let their producers read the notice; beyond
/// that they are closed straight after it is written.
const MAX_REFUSALS_DRAINING: usize = 32;

impl Consumer<TcpListener> {
    /// Settings with every default; finish with [`Builder::bind`], [`Builder::bind_unix`] or
    /// [`Builder::listener`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The TCP address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

#[cfg(feature = "tls")]
impl Consumer<crate::tls::TlsListener> {
    /// The TCP address it listens on for TLS (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.tcp_addr()
    }
}

impl<L: Listener> Consumer<L> {
    /// Fails only if the decode workers cannot be started.
    pub(crate) fn new(listener: L, config: Builder) -> Result<Self, Error> {
        let decoders = match config.decode_workers {
            1 => None,
            workers => Some(DecodePool::new(workers)?),
        };
        let sockets = SocketSet::new();
        // `Builder` checked that a whole frame fits the limit.
        let frame = config.core.codec.get_max_frame_length() as usize + HEADER_LEN;
        let memory = MemoryPool::new(config.memory_limit, frame);
        let stats = Stats::new(sockets.clone(), memory.clone());
        let sampler = stats.monitor().spawn_sampler(config.sample_interval);
        let seeds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Ok(Consumer {
            listener,
            sockets,
            stats,
            _sampler: sampler,
            next_id: 1,
            seeds,
            memory,
            shutdown: Shutdown::default(),
            refusing: Arc::new(Semaphore::new(MAX_REFUSALS_DRAINING)),
            last_refusal_log: None,
            sessions: config
                .core
                .sessions
                .map(|_| SessionTable::new(config.max_sessions, config.session_expiry)),
            alive: Arc::new(()),
            decoders,
            config,
        })
    }

    /// Keeps sessions' positions in `store` (SPEC §10.3): a session this consumer does not know
    /// (after a restart) resumes where the store says, and frames are acknowledged once committed
    /// with [`Delivery::commit`](crate::Delivery::commit), not once handled. With a store whose
    /// commit is atomic with the handler's output, delivery is exactly-once across restarts.
    /// Without sessions (`Builder::sessions(false)`) it is not used.
    pub fn session_store(mut self, store: Arc<dyn crate::SessionStore>) -> Self {
        if let Some(table) = &mut self.sessions {
            table.set_store(store);
        }
        self
    }

    /// Where it listens.
    pub fn listen_addr(&self) -> io::Result<PeerAddr> {
        self.listener.local_addr()
    }

    /// A live view of the consumer's counters and stages.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// A handle that says whether this consumer is ready for more connections (SPEC §11.2), for
    /// `/readyz`-style checks; see [`Health::readiness`].
    pub fn health(&self) -> Health {
        Health {
            stats: self.stats.clone(),
            shutdown: self.shutdown.clone(),
            memory: self.memory.clone(),
            max_open_connections: self.config.max_open_connections,
            frame_bytes: self.config.core.codec.get_max_frame_length() as usize + HEADER_LEN,
            alive: Arc::downgrade(&self.alive),
        }
    }

    /// A handle that shuts this consumer down gracefully from anywhere (SPEC §8.5); see
    /// [`Shutdown`].
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits for the next connection and starts reading it.
    ///
    /// The returned stream yields its frames in order; it is as fast as it is polled (no
    /// [`SlowDown`](crate::SlowDown) applies: that belongs to [`Consumer::serve`]). Fails with
    /// `NotConnected` once the listener has no more connections to give.
    pub async fn accept<M: Mode>(&mut self, mode: M) -> io::Result<Connection<M>> {
        match self.accept_shared(Arc::new(mode)).await? {
            Some(conn) => Ok(conn),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the listener has no more connections",
            )),
        }
    }

    /// The next connection under `max_open_connections`, refusing those over it; `None` once the
    /// listener has no more.
    pub(crate) async fn accept_shared<M: Mode>(
        &mut self,
        mode: Arc<M>,
    ) -> io::Result<Option<Connection<M>>> {
        loop {
            let Some(accepted) = self.listener.accept(&self.config.socket).await? else {
                return Ok(None);
            };
            if self.stats.open_connections() < self.config.max_open_connections as u64 {
                return Ok(Some(self.start(accepted, mode)));
            }
            self.refuse(accepted);
        }
    }

    fn registration(&self, probe: Option<Arc<dyn framepipe_flow::SocketProbe>>) -> Registration {
        match probe {
            Some(probe) => {
                self.sockets.register(probe.clone());
                Registration::Probed(probe)
            }
            None => Registration::Unprobed(self.sockets.register_unprobed()),
        }
    }

    /// Starts a driver for an accepted connection.
    fn start<M: Mode>(&mut self, accepted: Accepted<L::Io>, mode: Arc<M>) -> Connection<M> {
        let id = self.next_id;
        self.next_id += 1;
        let info = Arc::new(ConnectionInfo {
            id,
            peer: accepted.peer.clone(),
            accepted_at: Instant::now(),
        });
        let (tx, rx) = queue::channel(self.config.queue, self.stats.queue_gauge().clone());
        let (app_tx, app_rx) = mpsc::unbounded_channel();
        let core = ConsumerConn::new(self.config.core, &self.memory, now());
        let link = SessionLink {
            table: self.sessions.clone(),
            conn_id: id,
            ..SessionLink::default()
        };
        let slot = link.slot.clone();
        let driver = Driver {
            io: accepted.io,
            core,
            tx: Some(tx),
            app: Some(app_rx),
            phase: self.shutdown.subscribe(),
            peer: accepted.peer,
            stats: self.stats.clone(),
            memory: self.memory.clone(),
            registration: self.registration(accepted.probe),
            dropped: 0,
            frames_read: 0,
            sink: None,
            grace: None,
            link,
        };
        // Counted before the driver runs, so the next accept sees it (SPEC §7.6.3).
        self.stats.connection_opened();
        let driver = tokio::spawn(driver.run());
        Connection::new(info, rx, mode, self.stats.clone(), app_tx, driver, slot)
            .decode_on(self.decoders.as_ref())
    }

    /// Refuses a connection over `max_open_connections` (SPEC §7.6.3): a driver writes a
    /// `connection_limit` notice, ends our direction and drains so the producer can read it. At
    /// most 32 drain at once; beyond that the connection is closed right after the notice.
    fn refuse(&mut self, accepted: Accepted<L::Io>) {
        self.stats.add_refused();
        let err = Error::ConnectionLimit {
            peer: accepted.peer.clone(),
            limit: self.config.max_open_connections,
        };
        let now_std = Instant::now();
        if self
            .last_refusal_log
            .is_none_or(|at| now_std.duration_since(at) >= Duration::from_secs(1))
        {
            self.last_refusal_log = Some(now_std);
            let refused = self.stats.refused();
            tracing::warn!(peer = %accepted.peer, refused_so_far = refused, "{err}");
        } else {
            tracing::debug!(peer = %accepted.peer, "{err}");
        }
        let permit = self.refusing.clone().try_acquire_owned().ok();
        let config = ConsumerConfig {
            drain_timeout: if permit.is_some() {
                self.config.core.drain_timeout
            } else {
                Duration::ZERO
            },
            ..self.config.core
        };
        let notice = Notice::new(codes::CONNECTION_LIMIT, 0, 0, err.to_string());
        let driver = Driver {
            io: accepted.io,
            core: ConsumerConn::refusing(config, &self.memory, now(), notice),
            tx: None,
            app: None,
            phase: self.shutdown.subscribe(),
            peer: accepted.peer,
            stats: self.stats.clone(),
            memory: self.memory.clone(),
            registration: Registration::Refused,
            dropped: 0,
            frames_read: 0,
            sink: None,
            grace: None,
            link: SessionLink::default(),
        };
        tokio::spawn(async move {
            driver.refuse().await;
            drop(permit);
        });
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Phase> {
        self.shutdown.subscribe()
    }
}
