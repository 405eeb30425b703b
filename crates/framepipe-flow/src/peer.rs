//! Who is at the other end of a connection, whatever its transport: for errors, logs and reports.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// The other end of a connection: a TCP address, a Unix socket path, or a name the application gave
/// to any other transport (a `tokio::io::duplex` pipe in a test, say).
///
/// Errors, log lines and reports name the peer with its [`Display`](fmt::Display) form, which is also
/// how it serializes:
///
/// | Variant | Shown as |
/// |---|---|
/// | `Tcp(127.0.0.1:7000)` | `127.0.0.1:7000` (`[::1]:7000` for IPv6) |
/// | `Unix(Some("/tmp/x.sock"))` | `unix:/tmp/x.sock` |
/// | `Unix(None)` | `unix:(unnamed)` |
/// | `Other("duplex-3")` | `duplex-3` |
///
/// Cheap to clone: a `SocketAddr` is copied, a path is cloned (one allocation), a name is an `Arc`.
///
/// ```
/// use framepipe_flow::PeerAddr;
///
/// let tcp = PeerAddr::from("127.0.0.1:7000".parse::<std::net::SocketAddr>().unwrap());
/// assert_eq!(tcp.to_string(), "127.0.0.1:7000");
/// assert_eq!(PeerAddr::Unix(Some("/tmp/x.sock".into())).to_string(), "unix:/tmp/x.sock");
/// assert_eq!(PeerAddr::other("duplex-3").to_string(), "duplex-3");
/// assert_eq!(serde_json::to_string(&tcp).unwrap(), r#""127.0.0.1:7000""#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix domain socket peer: its path, or `None` if it has none (an unnamed socket, such as the
    /// connecting end of most connections, or a name in Linux's abstract namespace).
    Unix(Option<PathBuf>),
    /// Any other transport, named by the application (e.g. `"duplex-3"`).
    Other(Arc<str>),
}

impl PeerAddr {
    /// The TCP address, if the peer is a TCP peer.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            PeerAddr::Tcp(addr) => Some(*addr),
            _ => None,
        }
    }

    /// A peer on another transport, shown as `name`. Allocates once unless given an `Arc<str>`.
    pub fn other(name: impl Into<Arc<str>>) -> Self {
        PeerAddr::Other(name.into())
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        PeerAddr::Tcp(addr)
    }
}

#[cfg(unix)]
impl From<tokio::net::unix::SocketAddr> for PeerAddr {
    /// The path, or `None` for an unnamed or abstract address. Allocates the path.
    fn from(addr: tokio::net::unix::SocketAddr) -> Self {
        PeerAddr::Unix(addr.as_pathname().map(PathBuf::from))
    }
}

#[cfg(unix)]
impl From<std::os::unix::net::SocketAddr> for PeerAddr {
    /// The path, or `None` for an unnamed or abstract address. Allocates the path.
    fn from(addr: std::os::unix::net::SocketAddr) -> Self {
        PeerAddr::Unix(addr.as_pathname().map(PathBuf::from))
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => addr.fmt(f),
            PeerAddr::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            PeerAddr::Unix(None) => f.write_str("unix:(unnamed)"),
            PeerAddr::Other(name) => f.write_str(name),
        }
    }
}

impl Serialize for PeerAddr {
    /// As its `Display` string.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_and_serialized_the_same_way() {
        let cases = [
            (
                PeerAddr::from(SocketAddr::from(([127, 0, 0, 1], 7000))),
                "127.0.0.1:7000",
            ),
            (
                PeerAddr::from("[::1]:7000".parse::<SocketAddr>().unwrap()),
                "[::1]:7000",
            ),
            (
                PeerAddr::Unix(Some("/tmp/x.sock".into())),
                "unix:/tmp/x.sock",
            ),
            (PeerAddr::Unix(None), "unix:(unnamed)"),
            (PeerAddr::other("duplex-3"), "duplex-3"),
        ];
        for (peer, shown) in cases {
            assert_eq!(peer.to_string(), shown);
            assert_eq!(
                serde_json::to_string(&peer).unwrap(),
                format!("\"{shown}\"")
            );
        }
    }

    #[test]
    fn only_tcp_has_a_socket_addr() {
        let addr = SocketAddr::from(([10, 0, 0, 1], 1));
        assert_eq!(PeerAddr::from(addr).socket_addr(), Some(addr));
        assert_eq!(PeerAddr::Unix(None).socket_addr(), None);
        assert_eq!(PeerAddr::other(String::from("x")).socket_addr(), None);
    }

    #[cfg(unix)]
    #[test]
    fn unix_addresses_keep_their_path() {
        let path = std::env::temp_dir().join(format!("framepipe-peer-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (_server, from) = listener.accept().unwrap();
        // The connecting end is unnamed; the listening end has the path.
        assert_eq!(PeerAddr::from(from), PeerAddr::Unix(None));
        assert_eq!(
            PeerAddr::from(client.peer_addr().unwrap()),
            PeerAddr::Unix(Some(path.clone()))
        );
        std::fs::remove_file(&path).unwrap();
    }
}
