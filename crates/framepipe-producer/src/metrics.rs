//! The producer's counters, recorded through the `metrics` facade as things happen (SPEC §11.1).
//!
//! Handles are registered when a connection or session is built; without an installed recorder
//! each is a no-op. Levels (stage bytes, retained bytes, socket queues) are published by
//! [`framepipe_flow::metrics`] under `side="producer"`.

use metrics::{counter, describe_counter, Counter, Unit};

use crate::SessionProgress;

/// Items accepted for sending (payloads taken from a source or given to a sender).
pub const ITEMS: &str = "framepipe_producer_items_total";
/// Frames made and accepted into the queue.
pub const FRAMES_ENCODED: &str = "framepipe_producer_frames_encoded_total";
/// Frames handed to the transport in full (a session's resent frames counted once).
pub const FRAMES_SENT: &str = "framepipe_producer_frames_sent_total";
/// Bytes handed to the transport (a session's resent bytes included).
pub const BYTES_SENT: &str = "framepipe_producer_bytes_sent_total";
/// Connections a session had welcomed.
pub const CONNECTIONS: &str = "framepipe_producer_session_connections_total";
/// Connections lost, or attempts failed, after which a session tried again.
pub const RECONNECTS: &str = "framepipe_producer_reconnects_total";
/// Connections that resumed a session.
pub const RESUMES: &str = "framepipe_producer_resumes_total";
/// Frames a consumer acknowledged (handled).
pub const FRAMES_ACKED: &str = "framepipe_producer_frames_acked_total";
/// Ack messages received.
pub const ACKS: &str = "framepipe_producer_acks_total";
/// Frames written again after a resume.
pub const FRAMES_RESENT: &str = "framepipe_producer_frames_resent_total";
/// Connections or sessions that ended on an error (label `code`: [`Error::code`](crate::Error::code)).
pub const ERRORS: &str = "framepipe_producer_errors_total";

/// One producer connection's (or session's) handles.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) items: Counter,
    pub(crate) frames_encoded: Counter,
    pub(crate) frames_sent: Counter,
    pub(crate) bytes_sent: Counter,
    connections: Counter,
    reconnects: Counter,
    resumes: Counter,
    frames_acked: Counter,
    acks: Counter,
    frames_resent: Counter,
}

/// What a session's counters were at the last recording, so each recording adds the difference.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SessionSeen {
    progress: SessionProgress,
    acks: u64,
    resent: u64,
}

impl Metrics {
    /// Describes and registers every handle with the recorder installed now.
    pub(crate) fn register() -> Self {
        describe();
        Metrics {
            items: counter!(ITEMS),
            frames_encoded: counter!(FRAMES_ENCODED),
            frames_sent: counter!(FRAMES_SENT),
            bytes_sent: counter!(BYTES_SENT),
            connections: counter!(CONNECTIONS),
            reconnects: counter!(RECONNECTS),
            resumes: counter!(RESUMES),
            frames_acked: counter!(FRAMES_ACKED),
            acks: counter!(ACKS),
            frames_resent: counter!(FRAMES_RESENT),
        }
    }

    /// Adds what a session did since `seen`, and remembers where it is now.
    pub(crate) fn session(
        &self,
        seen: &mut SessionSeen,
        now: SessionProgress,
        acks: u64,
        resent: u64,
    ) {
        let was = seen.progress;
        self.connections
            .increment(now.connections.saturating_sub(was.connections));
        self.reconnects
            .increment(now.reconnects.saturating_sub(was.reconnects));
        self.resumes
            .increment(now.resumes.saturating_sub(was.resumes));
        self.frames_acked
            .increment(now.delivered.saturating_sub(was.delivered));
        self.acks.increment(acks.saturating_sub(seen.acks));
        self.frames_resent
            .increment(resent.saturating_sub(seen.resent));
        *seen = SessionSeen {
            progress: now,
            acks,
            resent,
        };
    }
}

/// Counts an error a connection or session ended on.
pub(crate) fn record_error(code: &str) {
    counter!(ERRORS, "code" => code.to_string()).increment(1);
}

/// Describes the producer's counters (unit and help text) to the installed recorder.
pub fn describe() {
    describe_counter!(ITEMS, Unit::Count, "Items accepted for sending.");
    describe_counter!(
        FRAMES_ENCODED,
        Unit::Count,
        "Frames made and accepted into the queue."
    );
    describe_counter!(
        FRAMES_SENT,
        Unit::Count,
        "Frames handed to the transport in full."
    );
    describe_counter!(
        BYTES_SENT,
        Unit::Bytes,
        "Bytes handed to the transport, resent bytes included."
    );
    describe_counter!(
        CONNECTIONS,
        Unit::Count,
        "Connections sessions had welcomed."
    );
    describe_counter!(
        RECONNECTS,
        Unit::Count,
        "Connections lost or attempts failed, after which a session tried again."
    );
    describe_counter!(RESUMES, Unit::Count, "Connections that resumed a session.");
    describe_counter!(
        FRAMES_ACKED,
        Unit::Count,
        "Frames the consumer acknowledged as handled."
    );
    describe_counter!(ACKS, Unit::Count, "Ack messages received.");
    describe_counter!(
        FRAMES_RESENT,
        Unit::Count,
        "Frames written again after a resume."
    );
    describe_counter!(
        ERRORS,
        Unit::Count,
        "Connections or sessions that ended on an error, by code."
    );
}
