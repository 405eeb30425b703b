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

/// What a producer may do after a notice, by its code (SPEC §6.3.5): the one rule, for plain
/// connections and sessions alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The consumer is going away, busy, or gave up on this connection: a new connection may work
    /// at once. A session resumes on one (SPEC §10.6.4); a plain producer's error is retryable.
    Resume,
    /// The consumer's application refused a frame (`handler_failed`): sending it again later may
    /// work (its storage may come back), but not at once. A session fails rather than loop; the
    /// error is retryable, for the application to decide.
    Later,
    /// It would fail the same way again: a frame the consumer refuses, a session that is not the
    /// sender's, a protocol violation, or a code this version does not know.
    Never,
}

/// The [`Retry`] of a notice code.
pub fn retry(code: &str) -> Retry {
    match code {
        SHUTTING_DOWN | CONNECTION_LIMIT | SESSION_LIMIT | SESSION_STORE | "idle_timeout"
        | "frame_timeout" | "unresponsive" => Retry::Resume,
        HANDLER_FAILED => Retry::Later,
        _ => Retry::Never,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_one_retry_rule() {
        for code in [
            SHUTTING_DOWN,
            CONNECTION_LIMIT,
            SESSION_LIMIT,
            SESSION_STORE,
            "idle_timeout",
            "frame_timeout",
            "unresponsive",
        ] {
            assert_eq!(retry(code), Retry::Resume, "{code}");
        }
        assert_eq!(retry(HANDLER_FAILED), Retry::Later);
        for code in [
            SESSION_DENIED,
            SUPERSEDED,
            "session_mismatch",
            "out_of_sequence",
            "frame_too_large",
            "bad_control",
            "a_code_from_a_newer_consumer",
        ] {
            assert_eq!(retry(code), Retry::Never, "{code}");
        }
    }
}
