//! The consumer's counters, recorded through the `metrics` facade as things happen (SPEC §11.1).
//!
//! Handles are registered when the consumer is built; without an installed recorder each is a
//! no-op. Levels (stage bytes, socket queues) are published by [`framepipe_flow::metrics`] under
//! `side="consumer"`, with the memory limit's use.

use metrics::{counter, describe_counter, describe_gauge, gauge, Counter, Gauge, Unit};

/// Connections accepted (refused ones not included).
pub const CONNECTIONS: &str = "framepipe_consumer_connections_total";
/// Connections open now.
pub const CONNECTIONS_OPEN: &str = "framepipe_consumer_connections_open";
/// Connections refused at `max_open_connections`.
pub const CONNECTIONS_REFUSED: &str = "framepipe_consumer_connections_refused_total";
/// Frames read from transports (including frames later refused).
pub const FRAMES_RECEIVED: &str = "framepipe_consumer_frames_received_total";
/// Bytes read from transports.
pub const BYTES_RECEIVED: &str = "framepipe_consumer_bytes_received_total";
/// Frames handed to the application.
pub const FRAMES_DELIVERED: &str = "framepipe_consumer_frames_delivered_total";
/// Frames whose handler returned `Ok`.
pub const FRAMES_HANDLED: &str = "framepipe_consumer_frames_handled_total";
/// Wire bytes of the frames handled.
pub const BYTES_HANDLED: &str = "framepipe_consumer_bytes_handled_total";
/// Frames read that no handler finished.
pub const FRAMES_UNHANDLED: &str = "framepipe_consumer_frames_unhandled_total";
/// Sessions begun.
pub const SESSIONS: &str = "framepipe_consumer_sessions_total";
/// Connections that resumed a known session.
pub const SESSION_RESUMES: &str = "framepipe_consumer_session_resumes_total";
/// Hellos refused (SPEC §10.4.5, §10.8), labelled by the notice's `code`.
pub const SESSIONS_REFUSED: &str = "framepipe_consumer_sessions_refused_total";
/// Frames of a session that arrived again and were dropped.
pub const DUPLICATES_DROPPED: &str = "framepipe_consumer_duplicates_dropped_total";
/// Errors by code (label `code`: [`Error::code`](crate::Error::code), or `handler`).
pub const ERRORS: &str = "framepipe_consumer_errors_total";

/// The consumer's handles.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) connections: Counter,
    pub(crate) connections_open: Gauge,
    pub(crate) connections_refused: Counter,
    pub(crate) frames_received: Counter,
    pub(crate) bytes_received: Counter,
    pub(crate) frames_delivered: Counter,
    pub(crate) frames_handled: Counter,
    pub(crate) bytes_handled: Counter,
    pub(crate) frames_unhandled: Counter,
    pub(crate) sessions: Counter,
    pub(crate) session_resumes: Counter,
    pub(crate) duplicates_dropped: Counter,
}

impl Metrics {
    /// Describes and registers every handle with the recorder installed now.
    pub(crate) fn register() -> Self {
        describe();
        Metrics {
            connections: counter!(CONNECTIONS),
            connections_open: gauge!(CONNECTIONS_OPEN),
            connections_refused: counter!(CONNECTIONS_REFUSED),
            frames_received: counter!(FRAMES_RECEIVED),
            bytes_received: counter!(BYTES_RECEIVED),
            frames_delivered: counter!(FRAMES_DELIVERED),
            frames_handled: counter!(FRAMES_HANDLED),
            bytes_handled: counter!(BYTES_HANDLED),
            frames_unhandled: counter!(FRAMES_UNHANDLED),
            sessions: counter!(SESSIONS),
            session_resumes: counter!(SESSION_RESUMES),
            duplicates_dropped: counter!(DUPLICATES_DROPPED),
        }
    }
}

/// Counts one error.
pub(crate) fn record_error(code: &'static str) {
    counter!(ERRORS, "code" => code).increment(1);
}

/// Describes the consumer's metrics (unit and help text) to the installed recorder.
pub fn describe() {
    describe_counter!(
        CONNECTIONS,
        Unit::Count,
        "Connections accepted (refused ones not included)."
    );
    describe_gauge!(CONNECTIONS_OPEN, Unit::Count, "Connections open now.");
    describe_counter!(
        CONNECTIONS_REFUSED,
        Unit::Count,
        "Connections refused at max_open_connections."
    );
    describe_counter!(FRAMES_RECEIVED, Unit::Count, "Frames read from transports.");
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "Bytes read from transports.");
    describe_counter!(
        FRAMES_DELIVERED,
        Unit::Count,
        "Frames handed to the application."
    );
    describe_counter!(
        FRAMES_HANDLED,
        Unit::Count,
        "Frames whose handler returned Ok."
    );
    describe_counter!(
        BYTES_HANDLED,
        Unit::Bytes,
        "Wire bytes of the frames handled."
    );
    describe_counter!(
        FRAMES_UNHANDLED,
        Unit::Count,
        "Frames read that no handler finished."
    );
    describe_counter!(SESSIONS, Unit::Count, "Sessions begun.");
    describe_counter!(
        SESSION_RESUMES,
        Unit::Count,
        "Connections that resumed a known session."
    );
    describe_counter!(
        SESSIONS_REFUSED,
        Unit::Count,
        "Hellos refused: no or another resume secret, resuming ahead, superseded, table full, store failed."
    );
    describe_counter!(
        DUPLICATES_DROPPED,
        Unit::Count,
        "Frames of a session that arrived again and were dropped."
    );
    describe_counter!(
        ERRORS,
        Unit::Count,
        "Errors: frames refused, connections closed on an error, handler errors; by code."
    );
}
