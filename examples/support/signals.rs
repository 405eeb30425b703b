//! SIGINT and SIGTERM for the example binaries: the first asks for a graceful shutdown, the second
//! forces it. Register early (before any work starts): until then a signal kills the process.

use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Exit status after a signal once the shutdown drained cleanly (128 + SIGINT, as shells report a
/// process stopped by Ctrl-C).
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status after a signal when the drain was forced (a second signal) or its deadline
/// (`--shutdown-timeout`) ran out: work accepted was not finished.
pub const EXIT_FORCED: u8 = 131;

/// SIGINT and SIGTERM, as one stream of signal names.
#[derive(Debug)]
pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    /// Installs the handlers: from now on SIGINT and SIGTERM no longer kill the process.
    pub fn new() -> io::Result<Self> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
