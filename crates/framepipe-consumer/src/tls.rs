//! TLS and mutual TLS for consumers (SPEC §12): a [`TlsServer`] (certificate chain and key, and for
//! mutual TLS the CA that producers' certificates must chain to) and the [`TlsListener`] that
//! [`Builder::bind_tls`](crate::Builder::bind_tls) makes: TCP connections whose handshakes run side
//! by side, each within a deadline, at most `max_handshakes` at once.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use framepipe_codec::{escape_preview, Notice};
use framepipe_flow::socket::SocketOptions;
use framepipe_flow::tls::{self, EofTolerant};
use framepipe_flow::{PeerAddr, Shared, SocketProbe};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::listener::{Accepted, Listener};

/// A consumer's TLS stream over TCP: an end without `close_notify` reads as an end of stream
/// (SPEC §12.4).
pub type ServerStream = EofTolerant<TlsStream<Shared<TcpStream>>>;

/// Default longest a TLS handshake may take, from the TCP connection on: 10 s (SPEC §12.2).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default most handshakes in progress at once: 64 (SPEC §12.2). Each holds a socket and rustls's
/// buffers (about 40 KiB); past the bound, connections wait in the kernel's accept queue.
pub const DEFAULT_MAX_HANDSHAKES: usize = 64;
/// The notice code for a connection that did not start a TLS handshake (SPEC §12.3).
pub const TLS_REQUIRED: &str = "tls_required";
/// The first byte of a TLS record carrying a handshake message (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;

/// Whether a producer must present a certificate (mutual TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every producer must present a certificate that chains to the client CA.
    Required,
    /// A producer may present one (it is then verified); one without is let in.
    Optional,
}

/// A consumer's TLS settings.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use std::path::Path;
/// use framepipe_consumer::tls::{ClientAuth, TlsServer};
/// use framepipe_consumer::Consumer;
///
/// let tls = TlsServer::from_pem(
///     "consumer.pem",
///     "consumer.key",
///     Some((Path::new("clients-ca.pem"), ClientAuth::Required)),
/// )?;
/// let consumer = Consumer::builder().bind_tls("0.0.0.0:7000", tls).await?;
/// # drop(consumer); Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
    max_handshakes: usize,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshakes", &self.max_handshakes)
            .finish()
    }
}

impl TlsServer {
    /// TLS with a config of your own. Build it with
    /// `rustls::ServerConfig::builder_with_provider(framepipe_flow::tls::provider())` so that no
    /// process-wide default provider is needed (SPEC §12.1).
    pub fn new(config: Arc<rustls::ServerConfig>) -> Self {
        TlsServer {
            config,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        }
    }

    /// TLS with the certificate chain in the PEM file `cert` and its key in `key`; with
    /// `client_ca`, mutual TLS: producers' certificates must chain to the CA certificates in that
    /// PEM file (every producer's, or only of those that present one). TLS 1.2 and 1.3, the
    /// aws-lc-rs provider.
    pub fn from_pem(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        client_ca: Option<(&Path, ClientAuth)>,
    ) -> io::Result<TlsServer> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let provider = tls::provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some((ca, auth)) => {
                let roots = Arc::new(tls::load_roots(ca)?);
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = match auth {
                    ClientAuth::Required => verifier,
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: not a usable client CA: {e}", ca.display()),
                    )
                })?)
            }
        };
        let config = builder
            .with_single_cert(tls::load_certs(cert)?, tls::load_key(key)?)
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} and {} are not a certificate chain and its key: {e}",
                        cert.display(),
                        key.display()
                    ),
                )
            })?;
        Ok(TlsServer::new(Arc::new(config)))
    }

    /// Longest a handshake may take, from the TCP connection on (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`]): a peer that connects and says nothing, or too slowly, is
    /// closed then.
    pub fn handshake_timeout(mut self, timeout: Duration) -> TlsServer {
        self.handshake_timeout = timeout;
        self
    }

    /// Most handshakes in progress at once (default [`DEFAULT_MAX_HANDSHAKES`], at least 1).
    /// Bounds the memory of connections not yet accepted: about 40 KiB each.
    pub fn max_handshakes(mut self, n: usize) -> TlsServer {
        self.max_handshakes = n.max(1);
        self
    }

    /// The listener on `tcp`.
    pub(crate) fn listener(self, tcp: TcpListener) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(self.config),
            handshake_timeout: self.handshake_timeout,
            max_handshakes: self.max_handshakes,
            handshakes: FuturesUnordered::new(),
        }
    }
}

type Handshake = Pin<Box<dyn Future<Output = Option<Accepted<ServerStream>>> + Send>>;

/// TCP connections over TLS: [`Listener::accept`] gives the next connection whose handshake has
/// completed. Handshakes run side by side while it waits, each within the handshake timeout; a
/// connection whose first byte does not start a TLS handshake is sent a plain `tls_required` notice
/// (a producer without TLS reads it as a refusal) and closed. Failed handshakes are logged at WARN
/// and counted in `framepipe_consumer_tls_handshakes_failed_total{reason}`.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    max_handshakes: usize,
    handshakes: FuturesUnordered<Handshake>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.tcp.local_addr().ok())
            .field("handshakes", &self.handshakes.len())
            .finish()
    }
}

impl TlsListener {
    /// The TCP address it listens on.
    pub(crate) fn tcp_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }
}

impl Listener for TlsListener {
    type Io = ServerStream;

    async fn accept(&mut self, options: &SocketOptions) -> io::Result<Option<Accepted<Self::Io>>> {
        loop {
            let room = self.handshakes.len() < self.max_handshakes;
            tokio::select! {
                conn = self.tcp.accept(), if room => {
                    let (stream, peer) = conn?;
                    if let Err(e) = options.apply_connected(&stream) {
                        tracing::debug!(%peer, "socket options not applied: {e}");
                    }
                    let acceptor = self.acceptor.clone();
                    let timeout = self.handshake_timeout;
                    self.handshakes.push(Box::pin(handshake(acceptor, stream, PeerAddr::Tcp(peer), timeout)));
                }
                Some(done) = self.handshakes.next(), if !self.handshakes.is_empty() => {
                    if let Some(accepted) = done {
                        return Ok(Some(accepted));
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<PeerAddr> {
        self.tcp.local_addr().map(PeerAddr::Tcp)
    }
}

/// One connection's handshake, within `timeout`: `None` (logged and counted) if it failed.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: PeerAddr,
    timeout: Duration,
) -> Option<Accepted<ServerStream>> {
    let result = tokio::time::timeout(timeout, handshake_within(acceptor, stream, &peer)).await;
    let (reason, error) = match result {
        Ok(Ok(accepted)) => return Some(accepted),
        Ok(Err((reason, error))) => (reason, error),
        Err(_) => (
            "timeout",
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no TLS handshake within {:.1} s (handshake_timeout)",
                    timeout.as_secs_f64()
                ),
            ),
        ),
    };
    metrics::counter!("framepipe_consumer_tls_handshakes_failed_total", "reason" => reason)
        .increment(1);
    if reason == "closed" {
        tracing::debug!(%peer, "closed before a TLS handshake: {error}");
    } else {
        tracing::warn!(%peer, reason, "TLS handshake failed: {error}");
    }
    None
}

type Failed = (&'static str, io::Error);

async fn handshake_within(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: &PeerAddr,
) -> Result<Accepted<ServerStream>, Failed> {
    let mut first = [0u8; 8];
    let n = stream.peek(&mut first).await.map_err(|e| ("io", e))?;
    if n == 0 {
        let closed = io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed at once");
        return Err(("closed", closed));
    }
    if first[0] != TLS_HANDSHAKE {
        return Err(("not_tls", refuse_plain(stream, &first[..n]).await));
    }
    let io = Shared::new(stream);
    let probe: Arc<dyn SocketProbe> = io.get_ref().clone();
    let tls = acceptor.accept(io).await.map_err(|e| {
        let explained = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls_error) => tls::explain(tls_error, &format!("the producer at {peer}")),
            None => e,
        };
        ("tls", explained)
    })?;
    Ok(Accepted {
        io: EofTolerant(tls),
        peer: peer.clone(),
        probe: Some(probe),
    })
}

/// A producer without TLS (its first bytes are a frame or a hello): tell it in its own terms, a
/// plain notice (SPEC §6.3), and close.
async fn refuse_plain(mut stream: TcpStream, first: &[u8]) -> io::Error {
    let notice = Notice::new(
        TLS_REQUIRED,
        0,
        0,
        "this consumer accepts TLS connections only: give the producer the CA that signed the \
         consumer's certificate (--tls-ca)",
    );
    let _ = stream.write_all(&notice.to_frame()).await;
    let _ = stream.shutdown().await;
    // Read what the producer still sends until it closes (at most 1 s, within the handshake's own
    // deadline): closing with unread bytes would reset the connection before it reads the notice.
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the peer did not start a TLS handshake (its first bytes \"{}\" look like a producer \
             without TLS); it was sent a tls_required notice",
            escape_preview(first, first.len())
        ),
    )
}
