//! The demo's consumer, whatever its listener, and its TLS flags (SPEC §12).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use framepipe::consumer::tls::TlsServer;
use framepipe::consumer::{Consumer, Json, Listener, Report, Shutdown};
use framepipe::producer::tls::TlsClient;
use framepipe::reference::Record;

/// TLS between the demo's producer and consumer (SPEC §12): off unless --tls-ca is given.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoTls {
    /// Run over TLS: the producer trusts the CA certificates in this PEM file. Needs --tls-cert and
    /// --tls-key, the consumer's certificate (for 127.0.0.1, or --tls-server-name) and key.
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<std::path::PathBuf>,

    /// The name the consumer's certificate carries [default: 127.0.0.1].
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_server_name: Option<String>,

    /// The consumer's certificate chain, a PEM file.
    #[arg(long, value_name = "FILE", requires = "tls_ca")]
    tls_cert: Option<std::path::PathBuf>,

    /// The consumer's private key, a PEM file.
    #[arg(long, value_name = "FILE", requires = "tls_ca")]
    tls_key: Option<std::path::PathBuf>,
}

impl DemoTls {
    /// Both ends' TLS settings, if asked for.
    pub(crate) fn settings(&self) -> Result<Option<(TlsServer, TlsClient)>, String> {
        let (Some(ca), Some(cert), Some(key)) = (&self.tls_ca, &self.tls_cert, &self.tls_key)
        else {
            return Ok(None);
        };
        let server = TlsServer::from_pem(cert, key, None).map_err(|e| e.to_string())?;
        let mut client = TlsClient::from_pem(ca, None).map_err(|e| e.to_string())?;
        if let Some(name) = &self.tls_server_name {
            client = client.server_name(name).map_err(|e| e.to_string())?;
        }
        Ok(Some((server, client)))
    }
}

/// A consumer serving typed reference frames in a task of its own, whatever its listener.
pub(crate) struct Serving {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) health: framepipe::consumer::Health,
    pub(crate) stats: framepipe::consumer::Stats,
    pub(crate) shutdown: Shutdown,
    pub(crate) server: tokio::task::JoinHandle<Report>,
}

pub(crate) fn serve_consumer<L: Listener>(
    consumer: Consumer<L>,
    records: Arc<AtomicU64>,
) -> Serving {
    let addr = consumer
        .listen_addr()
        .ok()
        .and_then(|a| a.socket_addr())
        .expect("bound to a TCP address");
    Serving {
        addr,
        health: consumer.health(),
        stats: consumer.stats(),
        shutdown: consumer.shutdown_handle(),
        server: tokio::spawn(consumer.serve(Json::<Vec<Record>>::new(), move |d| {
            records.fetch_add(d.item.len() as u64, Relaxed);
            std::future::ready(())
        })),
    }
}
