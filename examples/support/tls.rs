//! The binaries' TLS flags (SPEC §12): `--tls-cert/--tls-key/--tls-client-ca` for listeners and
//! `--tls-ca/--tls-server-name/--tls-cert/--tls-key` for senders.

use std::path::PathBuf;

use clap::Args;
use framepipe::consumer::tls::{ClientAuth, TlsServer};
use framepipe::producer::tls::TlsClient;

/// A listener's TLS: off unless --tls-cert is given.
#[derive(Debug, Clone, Args)]
pub struct ServerTls {
    /// Serve TLS with the certificate chain in this PEM file (the end-entity certificate first).
    /// Off by default: plaintext. Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert, in a PEM file (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: every producer must present a certificate that chains to the CA certificates in
    /// this PEM file.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// With --tls-client-ca: let producers without a certificate in (those with one are verified).
    #[arg(long, requires = "tls_client_ca")]
    pub tls_client_optional: bool,
}

impl ServerTls {
    /// The TLS settings, if TLS was asked for; an error names the file that could not be used.
    pub fn server(&self) -> Result<Option<TlsServer>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let auth = if self.tls_client_optional {
            ClientAuth::Optional
        } else {
            ClientAuth::Required
        };
        let client_ca = self.tls_client_ca.as_deref().map(|ca| (ca, auth));
        TlsServer::from_pem(cert, key, client_ca)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

/// A sender's TLS: off unless --tls-ca is given.
#[derive(Debug, Clone, Args)]
pub struct ClientTls {
    /// Connect over TLS, trusting the CA certificates in this PEM file. Off by default: plaintext.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// The name the consumer's certificate must carry (default: the host of --connect).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,

    /// Mutual TLS: present the certificate chain in this PEM file. Needs --tls-key.
    #[arg(long = "tls-cert", value_name = "FILE", requires_all = ["tls_ca", "tls_client_key"])]
    pub tls_client_cert: Option<PathBuf>,

    /// The private key of --tls-cert, in a PEM file.
    #[arg(long = "tls-key", value_name = "FILE", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
}

impl ClientTls {
    /// The TLS settings, if TLS was asked for; an error names the file that could not be used.
    pub fn client(&self) -> Result<Option<TlsClient>, String> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let pair = self
            .tls_client_cert
            .as_deref()
            .zip(self.tls_client_key.as_deref());
        let mut tls = TlsClient::from_pem(ca, pair).map_err(|e| e.to_string())?;
        if let Some(name) = &self.tls_server_name {
            tls = tls.server_name(name).map_err(|e| e.to_string())?;
        }
        Ok(Some(tls))
    }
}
