//! Notice codes the connection cores send, besides the codec's error codes (SPEC §6.3.1).

/// The consumer is shutting down: frames before the notice's `frame` were read and handed to its
/// application; that frame and later ones were not read (SPEC §8.5). Worth retrying elsewhere or later.
pub const SHUTTING_DOWN: &str = "shutting_down";

/// The consumer's handler failed on the notice's `frame`; under the close policy the connection is
/// closed and that frame and later ones are not handled (SPEC §7.7).
pub const HANDLER_FAILED: &str = "handler_failed";

/// The consumer had `max_open_connections` open and refused this one (SPEC §7.6.3).
pub const CONNECTION_LIMIT: &str = "connection_limit";

/// The consumer's session table is full and every session in it has a connection, so a new session
/// was refused (SPEC §10.8). Worth retrying later.
pub const SESSION_LIMIT: &str = "session_limit";

/// The consumer's session store could not load the session's position, so the session was refused
/// (SPEC §10.3). Worth retrying later.
pub const SESSION_STORE: &str = "session_store";

/// The hello did not prove that its producer owns the session: the resume secret of the session's
/// welcomes was missing or wrong (SPEC §10.4.5), or the consumer's authorization refused it. The
/// session and its connection are untouched. Not worth retrying: it would fail the same way.
pub const SESSION_DENIED: &str = "session_denied";

/// Another connection of the session said hello after this one and took the session over
/// (SPEC §10.8.1): this connection is closed. Not worth retrying: a producer that still uses this
/// connection has a second party resuming its session.
pub const SUPERSEDED: &str = "superseded";
