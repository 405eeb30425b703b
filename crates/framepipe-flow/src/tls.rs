//! What TLS needs on both sides (SPEC §12): the crypto provider, chosen explicitly, and PEM files
//! read into rustls's types with errors that name the file.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto provider framepipe's TLS uses: rustls's aws-lc-rs provider (with post-quantum
/// hybrid key exchange), always passed explicitly to the config builders. A process that links a
/// second provider (*ring*, through another crate) has no single process default, and rustls's
/// `builder()` would panic at the first handshake; framepipe never asks for the default
/// (SPEC §12.1).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Every certificate in the PEM file at `path`, in order (a chain: the end-entity certificate
/// first). No certificate at all is `InvalidData`, naming the file.
pub fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, "certificates", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "certificates", e))?;
    if certs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path` (PKCS#8, PKCS#1 or SEC1). None is
/// `InvalidData`, naming the file.
pub fn load_key(path: &Path) -> io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, "a private key", e))
}

/// A root store of the certificates in the PEM file at `path` (the CA a peer's certificate must
/// chain to).
pub fn load_roots(path: &Path) -> io::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: a certificate is not a usable CA: {e}", path.display()),
            )
        })?;
    }
    Ok(roots)
}

fn pem_error(path: &Path, what: &str, e: rustls_pki_types::pem::Error) -> io::Error {
    let kind = match &e {
        rustls_pki_types::pem::Error::Io(io) => io.kind(),
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(
        kind,
        format!("cannot read {what} from {}: {e}", path.display()),
    )
}

/// A rustls error as an `io::Error` whose message says what it means for framepipe: a peer that
/// does not speak TLS, or a certificate that does not verify, is `InvalidData` (it would fail the
/// same way again); anything else keeps rustls's words.
pub fn explain(e: &rustls::Error, peer: &str) -> io::Error {
    use rustls::Error as E;
    let message = match e {
        E::InvalidMessage(_) => format!(
            "{peer} does not speak TLS ({e}): a framepipe peer without TLS answers a handshake with \
             a plain frame; give both sides TLS, or neither"
        ),
        E::InvalidCertificate(why) => format!(
            "the TLS certificate of {peer} was refused: {why:?} (check the CA file, the server \
             name and the certificate's validity)"
        ),
        E::NoCertificatesPresented => format!(
            "{peer} presented no client certificate, and this side requires one (mutual TLS)"
        ),
        other => format!("TLS with {peer} failed: {other}"),
    };
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A TLS stream whose peer may close without `close_notify` (SPEC §12.4): such an end reads as an
/// ordinary end of stream instead of an `UnexpectedEof` error. Many TLS peers close that way
/// (Python's `ssl` sockets, most HTTP stacks), and framepipe needs no `close_notify` to tell a
/// truncated stream from a finished one: a frame cut short is still `Truncated` (SPEC §3.4), a
/// session ends only on the authenticated goodbye exchange (SPEC §10.7), and a plain producer's
/// confirmation is the consumer's close, as over TCP.
#[derive(Debug)]
pub struct EofTolerant<S>(pub S);

impl<S> EofTolerant<S> {
    /// The stream inside.
    pub fn get_ref(&self) -> &S {
        &self.0
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for EofTolerant<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for EofTolerant<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
