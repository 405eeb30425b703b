//! The end-of-run summary: human lines on stderr, one JSON object on stdout (`--summary-json`).

use framepipe::flow::{FlowSnapshot, StageSnapshot};
use serde::Serialize;

use super::stamp::VerifyCounts;
use super::{mb, mib, thousands};

/// The `--summary-json` object: one per run (the demo prints one per side).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub role: &'static str,
    pub frames: u64,
    /// `null` where the run does not parse records (raw and validate modes).
    pub records: Option<u64>,
    pub bytes: u64,
    pub secs: f64,
    pub mb_per_s: f64,
    pub frames_per_s: f64,
    pub peak_rss_bytes: Option<u64>,
    /// All stages and socket queues together, sampled every 10 ms.
    pub peak_in_flight_bytes: usize,
    pub peak_socket_send_queue_bytes: usize,
    pub peak_socket_recv_queue_bytes: usize,
    /// Each stage's exact peak.
    pub stages: Vec<StageSnapshot>,
    pub budget_bytes: usize,
    pub blocked_ms: u64,
    pub errors: u64,
    /// Why the run failed, if it did.
    pub error: Option<String>,
    /// A SIGINT or SIGTERM stopped the run (the counts say how far it got).
    pub interrupted: bool,
    /// The consumer's counts, at the top level of the JSON object.
    #[serde(flatten)]
    pub consumer: Option<ConsumerCounts>,
    /// The producer's counts, at the top level of the JSON object.
    #[serde(flatten)]
    pub producer: Option<ProducerCounts>,
    /// A session producer's counts (SPEC §10), at the top level; absent with `--plain`.
    #[serde(flatten)]
    pub producer_session: Option<ProducerSessionCounts>,
    /// The consumer's session counts (0 when no producer used a session).
    #[serde(flatten)]
    pub consumer_session: Option<ConsumerSessionCounts>,
    /// `consumer --verify`: what the stamps say.
    #[serde(flatten)]
    pub verify: Option<VerifyCounts>,
}

/// What a session producer's frames became. `pulled` items were taken from the source; of the
/// frames made from them, `delivered` were acknowledged (handled by the consumer), `unacked` were
/// written and not acknowledged, `never_sent` (in the producer's counts) never written.
#[derive(Debug, Clone, Serialize)]
pub struct ProducerSessionCounts {
    pub session: String,
    pub pulled: u64,
    pub delivered: u64,
    pub unacked: u64,
    pub connections: u64,
    pub reconnects: u64,
    pub resumes: u64,
    /// Time to resume after a lost connection: median and 99th percentile, in ms.
    pub resume_p50_ms: Option<f64>,
    pub resume_p99_ms: Option<f64>,
}

impl ProducerSessionCounts {
    /// From a session's progress and its resume times.
    pub fn new(
        session: String,
        pulled: u64,
        p: framepipe::producer::SessionProgress,
        times: Option<framepipe::producer::ResumeTimes>,
    ) -> Self {
        ProducerSessionCounts {
            session,
            pulled,
            delivered: p.delivered,
            unacked: p.unacked,
            connections: p.connections,
            reconnects: p.reconnects,
            resumes: p.resumes,
            resume_p50_ms: times.map(|t| t.p50_ms),
            resume_p99_ms: times.map(|t| t.p99_ms),
        }
    }
}

/// A consumer's sessions: begun here, resumed here, hellos refused (SPEC §10.4.5), and frames that
/// arrived again and were dropped.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerSessionCounts {
    pub sessions: u64,
    pub resumes: u64,
    pub sessions_refused: u64,
    pub duplicates_dropped: u64,
}

/// What a consumer did with the frames it read. They add up: `frames_read` = `frames_handled` +
/// `handler_errors` + frames refused (in `errors`) + `frames_unhandled`.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerCounts {
    /// Connections accepted.
    pub connections: u64,
    /// Connections refused at `--max-open-connections`.
    pub connections_refused: u64,
    /// Frames read from sockets.
    pub frames_read: u64,
    /// Frames decoded and handed to the handler.
    pub frames_delivered: u64,
    /// Frames whose handler returned `Ok` (also `frames` above).
    pub frames_handled: u64,
    /// Frames read that no handler finished: after a handler error closed their connection, or at
    /// a forced shutdown (0 after a clean drain).
    pub frames_unhandled: u64,
    /// Handlers that returned an error.
    pub handler_errors: u64,
    /// The shutdown was forced (second signal or `--shutdown-timeout`).
    pub shutdown_forced: bool,
    /// Seconds from the first signal until every connection had closed.
    pub shutdown_secs: Option<f64>,
}

/// What a producer sent. `items_sent` were accepted; `frames_written` of the frames made from them
/// were handed to the socket; `never_sent` were accepted and never written; `confirmed`: the
/// consumer closed its end after handling every frame.
#[derive(Debug, Clone, Serialize)]
pub struct ProducerCounts {
    /// Items accepted for sending (each a frame here: no batching).
    pub items_sent: u64,
    /// Frames made and queued.
    pub frames_encoded: u64,
    /// Frames handed to the socket in full.
    pub frames_written: u64,
    /// Frames accepted and never written (the connection failed, or the close deadline ran out).
    pub never_sent: u64,
    /// The consumer closed its end after its handler returned for every frame.
    pub confirmed: bool,
    /// After a signal, the close did not finish its work: a second signal forced it, or
    /// `--shutdown-timeout` ran out before every frame was written and confirmed.
    pub close_forced: bool,
    /// Time spent waiting for room in the queue (the consumer, or the network, was slower).
    pub waited_for_room_ms: u64,
}

impl Summary {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        role: &'static str,
        frames: u64,
        records: Option<u64>,
        bytes: u64,
        secs: f64,
        flow: &FlowSnapshot,
        budget_bytes: usize,
        errors: u64,
        error: Option<String>,
    ) -> Summary {
        Summary {
            role,
            frames,
            records,
            bytes,
            secs,
            mb_per_s: bytes as f64 / 1e6 / secs.max(1e-9),
            frames_per_s: frames as f64 / secs.max(1e-9),
            peak_rss_bytes: flow.peak_rss_bytes,
            peak_in_flight_bytes: flow.peak_in_flight_bytes,
            peak_socket_send_queue_bytes: flow.peak_send_queue_bytes.unwrap_or(0),
            peak_socket_recv_queue_bytes: flow.peak_recv_queue_bytes.unwrap_or(0),
            stages: flow.stages.clone(),
            budget_bytes,
            blocked_ms: flow.stages.iter().map(|s| s.blocked_ms).sum(),
            errors,
            error,
            interrupted: false,
            consumer: None,
            producer: None,
            producer_session: None,
            consumer_session: None,
            verify: None,
        }
    }

    /// Marks the run as stopped by a signal.
    pub fn interrupted(mut self, interrupted: bool) -> Summary {
        self.interrupted = interrupted;
        self
    }

    /// Adds the consumer's counts.
    pub fn consumer(mut self, counts: ConsumerCounts) -> Summary {
        self.consumer = Some(counts);
        self
    }

    /// Adds a session producer's counts.
    pub fn producer_session(mut self, counts: ProducerSessionCounts) -> Summary {
        self.producer_session = Some(counts);
        self
    }

    /// Adds the consumer's session counts and, with `--verify`, the stamps'.
    pub fn consumer_session(
        mut self,
        counts: ConsumerSessionCounts,
        verify: Option<VerifyCounts>,
    ) -> Summary {
        self.consumer_session = Some(counts);
        self.verify = verify;
        self
    }

    /// Adds the producer's counts.
    pub fn producer(mut self, counts: ProducerCounts) -> Summary {
        self.producer = Some(counts);
        self
    }

    /// The human summary, several lines, for stderr.
    pub fn human(&self) -> String {
        let mut out = format!(
            "{}: {} frames{}, {} in {:.2} s: {:.1} MB/s, {:.0} frames/s\n",
            self.role,
            thousands(self.frames),
            self.records
                .map_or(String::new(), |r| format!(" ({} records)", thousands(r))),
            mb(self.bytes),
            self.secs,
            self.mb_per_s,
            self.frames_per_s,
        );
        out += &format!(
            "  memory: peak RSS {}; peak in flight {} (budget {}; socket queues peaked at send {}, recv {})\n",
            self.peak_rss_bytes.map_or("n/a".into(), mib),
            mib(self.peak_in_flight_bytes as u64),
            mib(self.budget_bytes as u64),
            mib(self.peak_socket_send_queue_bytes as u64),
            mib(self.peak_socket_recv_queue_bytes as u64),
        );
        out += "  stage peaks:";
        for s in &self.stages {
            out += &format!(
                " {} {} (blocked {} ms);",
                s.name,
                mib(s.peak_bytes as u64),
                s.blocked_ms
            );
        }
        out.pop();
        if let Some(c) = &self.consumer {
            out += &format!(
                "\n  frames: read {}, delivered {}, handled {}, handler errors {}, unhandled {}; \
                 connections {} (refused {})",
                thousands(c.frames_read),
                thousands(c.frames_delivered),
                thousands(c.frames_handled),
                thousands(c.handler_errors),
                thousands(c.frames_unhandled),
                c.connections,
                c.connections_refused,
            );
        }
        if let Some(p) = &self.producer {
            out += &format!(
                "\n  sent: {} items accepted, {} frames written, {} never sent; waited {} ms for \
                 room; {}",
                thousands(p.items_sent),
                thousands(p.frames_written),
                thousands(p.never_sent),
                p.waited_for_room_ms,
                if p.confirmed {
                    "confirmed (the consumer handled every frame written)"
                } else {
                    "not confirmed"
                },
            );
        }
        out += &self.session_lines();
        out += &format!("\n  errors: {}", self.errors);
        if let Some(e) = &self.error {
            out += &format!(" ({e})");
        }
        if self.interrupted {
            out += &self.shutdown_line();
        }
        out
    }

    /// The session and stamp lines, where there are any.
    fn session_lines(&self) -> String {
        let mut out = String::new();
        if let Some(p) = &self.producer_session {
            out += &format!(
                "\n  session {}: {} pulled, {} delivered (acknowledged), {} unacknowledged; \
                 {} connections, {} reconnects, {} resumes",
                p.session,
                thousands(p.pulled),
                thousands(p.delivered),
                thousands(p.unacked),
                p.connections,
                p.reconnects,
                p.resumes,
            );
            if let (Some(p50), Some(p99)) = (p.resume_p50_ms, p.resume_p99_ms) {
                out += &format!("; time to resume p50 {p50:.0} ms, p99 {p99:.0} ms");
            }
        }
        if let Some(c) = &self.consumer_session {
            out += &format!(
                "\n  sessions: {} begun, {} resumed, {} hellos refused; {} duplicate frames dropped",
                c.sessions,
                c.resumes,
                c.sessions_refused,
                thousands(c.duplicates_dropped)
            );
        }
        if let Some(v) = &self.verify {
            out += &format!(
                "\n  stamps: {} seen, {} missing, {} duplicated, {} out of order, {} frames unstamped",
                thousands(v.stamps_seen),
                thousands(v.stamps_missing),
                thousands(v.stamps_duplicated),
                thousands(v.stamps_out_of_order),
                thousands(v.frames_unstamped),
            );
        }
        out
    }

    /// How the shutdown after a signal went.
    fn shutdown_line(&self) -> String {
        let forced = self.consumer.as_ref().is_some_and(|c| c.shutdown_forced)
            || self.producer.as_ref().is_some_and(|p| p.close_forced);
        let took = self
            .consumer
            .as_ref()
            .and_then(|c| c.shutdown_secs)
            .map_or(String::new(), |s| format!(" in {s:.2} s"));
        format!(
            "\n  interrupted: {}{took}",
            if forced {
                "the shutdown was forced (second signal or --shutdown-timeout)"
            } else {
                "drained cleanly"
            }
        )
    }
}
