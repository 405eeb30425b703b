//! TLS and mutual TLS for producers (SPEC §12): a [`TlsClient`] (the CA a consumer's certificate
//! must chain to, the server name, and for mutual TLS this producer's own certificate), used by
//! [`Builder::connect_tls`] for one plain connection and by [`Builder::session_tls`] for a session.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use framepipe_flow::socket::{self, SocketOptions};
use framepipe_flow::tls::{self, EofTolerant};
use framepipe_flow::{PeerAddr, Shared, SocketProbe};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::builder::Builder;
use crate::connection::Connection;
use crate::connector::{Connect, Connecting, Link};
use crate::session::Session;
use crate::Error;

/// A producer's TLS stream over TCP: an end without `close_notify` reads as an end of stream
/// (SPEC §12.4).
pub type ClientStream = EofTolerant<TlsStream<Shared<TcpStream>>>;

/// Default longest a TLS handshake may take, from the TCP connection on: 10 s (SPEC §12.2).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A producer's TLS settings: the client config (rustls, aws-lc-rs provider) and the name the
/// consumer's certificate must carry.
///
/// ```no_run
/// # fn f() -> std::io::Result<()> {
/// use framepipe_producer::{tls::TlsClient, Producer};
///
/// let tls = TlsClient::from_pem("ca.pem", None)?.server_name("consumer.example")?;
/// let session = Producer::builder().session_tls("consumer.example:7000", tls);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl TlsClient {
    /// TLS with a config of your own. Build it with
    /// `rustls::ClientConfig::builder_with_provider(framepipe_flow::tls::provider())` so that no
    /// process-wide default provider is needed (SPEC §12.1).
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        TlsClient {
            config,
            server_name: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// TLS trusting the CA certificates in the PEM file `ca`, presenting the certificate chain and
    /// key of `client` (PEM files, for mutual TLS) if given. TLS 1.2 and 1.3, the aws-lc-rs provider.
    pub fn from_pem(ca: impl AsRef<Path>, client: Option<(&Path, &Path)>) -> io::Result<TlsClient> {
        let roots = tls::load_roots(ca.as_ref())?;
        let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(tls::load_certs(cert)?, tls::load_key(key)?)
                .map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{} and {} are not a certificate and its key: {e}",
                            cert.display(),
                            key.display()
                        ),
                    )
                })?,
        };
        Ok(TlsClient::new(Arc::new(config)))
    }

    /// The name the consumer's certificate must carry (default: the host of the address connected
    /// to, a DNS name or an IP address).
    pub fn server_name(mut self, name: &str) -> io::Result<TlsClient> {
        self.server_name = Some(parse_name(name)?);
        Ok(self)
    }

    /// Longest a handshake may take (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, timeout: Duration) -> TlsClient {
        self.handshake_timeout = timeout;
        self
    }

    /// Connects to TCP `addr` and makes the handshake: the stream, and the TCP socket's probe.
    async fn connect(
        &self,
        addr: &str,
        options: &SocketOptions,
    ) -> io::Result<(ClientStream, PeerAddr, Arc<dyn SocketProbe>)> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => parse_name(host_of(addr))?,
        };
        let stream = socket::connect(addr, options).await?;
        let peer = PeerAddr::Tcp(stream.peer_addr()?);
        let io = Shared::new(stream);
        let probe: Arc<dyn SocketProbe> = io.get_ref().clone();
        let connector = TlsConnector::from(self.config.clone());
        let handshake = connector.connect(name, io);
        let stream = match tokio::time::timeout(self.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(explain_io(e, &peer)),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the TLS handshake with {peer} took longer than {:.1} s",
                        self.handshake_timeout.as_secs_f64()
                    ),
                ))
            }
        };
        Ok((EofTolerant(stream), peer, probe))
    }
}

/// A rustls error inside an `io::Error`, explained (SPEC §12.3).
fn explain_io(e: io::Error, peer: &PeerAddr) -> io::Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls_error) => tls::explain(tls_error, &format!("the consumer at {peer}")),
        None => e,
    }
}

/// `host` of `host:port` (`[::1]:7000` gives `::1`).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn parse_name(name: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(name.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a TLS server name (a DNS name or an IP address): {e}"),
        )
    })
}

/// A session's connections over TLS on TCP ([`Builder::session_tls`]).
#[derive(Debug, Clone)]
pub struct TlsConnect {
    addr: String,
    socket: SocketOptions,
    tls: TlsClient,
}

impl Connect for TlsConnect {
    fn connect(&self) -> Connecting {
        let this = self.clone();
        Box::pin(async move {
            let (stream, peer, probe) = this.tls.connect(&this.addr, &this.socket).await?;
            Ok(Link::new(stream, peer).with_probe(probe))
        })
    }

    fn target(&self) -> String {
        format!("tls:{}", self.addr)
    }
}

impl Builder {
    /// Connects to TCP `addr` over TLS (SPEC §12) with these settings: one plain connection, as
    /// [`connect`](Builder::connect). Waits for the TCP and TLS handshakes (at most the
    /// `TlsClient`'s handshake timeout for TLS); a consumer that does not speak TLS, or whose
    /// certificate does not verify, fails here with [`Error::Connect`] saying so.
    ///
    /// Memory: rustls's buffers besides the producer's (SPEC §5.4): up to 16 KiB of plaintext and
    /// one TLS record per direction.
    pub async fn connect_tls(
        self,
        addr: &str,
        tls: TlsClient,
    ) -> Result<Connection<ClientStream>, Error> {
        let (stream, peer, probe) = tls.connect(addr, &self.socket).await.map_err(|source| {
            let error = Error::Connect {
                addr: addr.to_owned(),
                source,
            };
            tracing::warn!(addr, code = error.code(), "{error}");
            crate::metrics::record_error(error.code());
            error
        })?;
        tracing::info!(%peer, "connected over TLS");
        Ok(Connection::new(stream, peer, Some(probe), self))
    }

    /// A session to the consumer at TCP `addr` over TLS (SPEC §10, §12), as
    /// [`session`](Builder::session) is without. A handshake that fails because the consumer does
    /// not speak TLS or its certificate does not verify ends the session at once: another attempt
    /// would fail the same way.
    pub fn session_tls(self, addr: impl Into<String>, tls: TlsClient) -> Session {
        let connect = TlsConnect {
            addr: addr.into(),
            socket: self.socket,
            tls,
        };
        self.session_with(connect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_defaults_to_the_host_of_the_address() {
        assert_eq!(host_of("consumer.example:7000"), "consumer.example");
        assert_eq!(host_of("127.0.0.1:7000"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7000"), "::1");
        assert!(parse_name("consumer.example").is_ok());
        assert!(parse_name("::1").is_ok());
        let err = parse_name("not a name!").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
