//! The demo's report: both summaries, its checks on what it measured (the in-flight bound, the
//! queue's blocked time, the RSS drift line) and the exit status.

use std::process::ExitCode;

use framepipe::consumer::Report;

use crate::support::{
    self, mib, thousands, ConsumerCounts, ConsumerSessionCounts, ProducerCounts, Summary,
    EXIT_FORCED, EXIT_INTERRUPTED,
};
use crate::{budget_in_effect, Args, RssSamples, Sent};

/// Prints both summaries and the backpressure check, and picks the exit status.
pub(crate) fn report(
    args: &Args,
    ps: &framepipe::producer::Snapshot,
    served: &Report,
    sent: &Sent,
    records: u64,
    waited_ms: u64,
    rss_samples: &RssSamples,
) -> ExitCode {
    let cs = &served.snapshot;
    // The summaries state the budgets in effect (1 TiB with --unbounded).
    let budget = budget_in_effect(args);
    let retained = if sent.session.is_some() { budget } else { 0 };
    let producer = Summary::new(
        "producer",
        ps.frames_written,
        Some(ps.frames_written * args.records_per_frame as u64),
        ps.bytes_written,
        ps.secs,
        &ps.flow,
        budget + retained,
        u64::from(sent.error.is_some()),
        sent.error.clone(),
    )
    .interrupted(sent.interrupted)
    .producer(ProducerCounts {
        items_sent: ps.items_sent,
        frames_encoded: ps.frames_encoded,
        frames_written: ps.frames_written,
        never_sent: if sent.session.is_some() {
            sent.never_sent
        } else {
            sent.never_sent.max(ps.frames_unwritten())
        },
        confirmed: sent.confirmed,
        close_forced: sent.forced,
        waited_for_room_ms: waited_ms,
    });
    let producer = match &sent.session {
        Some(counts) => producer.producer_session(counts.clone()),
        None => producer,
    };
    let consumer = Summary::new(
        "consumer",
        cs.frames_handled,
        Some(records),
        cs.bytes_handled,
        cs.busy_secs,
        &cs.flow,
        budget,
        cs.errors,
        served.connections.iter().find_map(|c| c.error.clone()),
    )
    .interrupted(sent.interrupted)
    .consumer(ConsumerCounts {
        connections: cs.connections_accepted,
        connections_refused: cs.connections_refused,
        frames_read: cs.frames_read,
        frames_delivered: cs.frames_delivered,
        frames_handled: cs.frames_handled,
        frames_unhandled: cs.frames_unhandled,
        handler_errors: cs.handler_errors,
        shutdown_forced: served.shutdown.is_some_and(|s| s.forced),
        shutdown_secs: served.shutdown.map(|s| s.secs),
    })
    .consumer_session(
        ConsumerSessionCounts {
            sessions: cs.sessions,
            resumes: cs.session_resumes,
            sessions_refused: cs.sessions_refused,
            duplicates_dropped: cs.duplicates_dropped,
        },
        None,
    );
    eprintln!("{}\n{}", producer.human(), consumer.human());
    let within_bound = check_bound(args, ps, cs, waited_ms, sent.session.is_some());
    print_rss_drift(&rss_samples.lock().unwrap());
    if args.summary_json {
        let both = serde_json::json!({ "producer": producer, "consumer": consumer });
        println!("{both}");
    }
    let forced = sent.forced
        || consumer
            .consumer
            .as_ref()
            .is_some_and(|c| c.shutdown_forced);
    if !within_bound {
        eprintln!("demo: error: in-flight bytes exceeded the bound");
        return ExitCode::from(4);
    }
    if forced {
        if let Some(e) = &sent.error {
            eprintln!("demo: error: {e}");
        }
        return ExitCode::from(EXIT_FORCED);
    }
    match (&sent.error, sent.interrupted) {
        (Some(e), _) => {
            eprintln!("demo: error: {e}");
            ExitCode::from(3)
        }
        (None, true) => ExitCode::from(EXIT_INTERRUPTED),
        (None, false) => ExitCode::SUCCESS,
    }
}

/// The claim of the demo, checked on the figures just measured: the peak bytes in flight on both
/// sides stay within the budgets, the socket queues and one frame at each hand-off. With
/// `--unbounded` the bound `--budget` would give is printed for comparison and not enforced.
pub(crate) fn check_bound(
    args: &Args,
    ps: &framepipe::producer::Snapshot,
    cs: &framepipe::consumer::Snapshot,
    waited_ms: u64,
    session: bool,
) -> bool {
    // A session's frames stay retained until acknowledged: as much again as its queue (SPEC §10.2).
    let retained = if session { args.budget } else { 0 };
    let socket_peaks =
        ps.flow.peak_send_queue_bytes.unwrap_or(0) + cs.flow.peak_recv_queue_bytes.unwrap_or(0);
    let frame = ps.bytes_encoded / ps.frames_encoded.max(1);
    // SPEC §5.4, with the default write batch and read block.
    let batch_and_block = (framepipe::producer::DEFAULT_WRITE_BATCH_BYTES
        + framepipe::consumer::DEFAULT_READ_CHUNK) as u64;
    let bound =
        (2 * args.budget + retained) as u64 + socket_peaks as u64 + 4 * frame + batch_and_block;
    let in_flight = (ps.flow.peak_in_flight_bytes + cs.flow.peak_in_flight_bytes) as u64;
    eprintln!(
        "backpressure{}: {} of data went through {} in flight at most (per-side peaks added); \
         bound: budgets 2 × {}{} + socket queue peaks {} + one frame in hand at 4 hand-offs + \
         write batch and read block = {}; producer waited {} ms for room",
        if args.unbounded {
            " NOT ENFORCED (--unbounded; the bound is what --budget would give)"
        } else {
            ""
        },
        support::mb(ps.bytes_written),
        mib(in_flight),
        mib(args.budget as u64),
        if retained > 0 {
            format!(" + retained {}", mib(retained as u64))
        } else {
            String::new()
        },
        mib(socket_peaks as u64),
        mib(bound),
        waited_ms,
    );
    args.unbounded || in_flight <= bound
}

/// Time the source waited for room in the queue: the `queue` stage's blocked time.
pub(crate) fn queue_blocked_ms(flow: &framepipe::flow::FlowSnapshot) -> u64 {
    flow.stages
        .iter()
        .find(|s| s.name == "queue")
        .map_or(0, |s| s.blocked_ms)
}

/// RSS a quarter of the way in and at the end: flat if memory is bounded.
pub(crate) fn print_rss_drift(rss: &[(u64, u64)]) {
    if rss.len() >= 4 {
        let first = rss[rss.len() / 4];
        let last = rss[rss.len() - 1];
        eprintln!(
            "RSS: {} after {} frames, {} after {} frames ({:+.1}%)",
            mib(first.1),
            thousands(first.0),
            mib(last.1),
            thousands(last.0),
            (last.1 as f64 / first.1 as f64 - 1.0) * 100.0
        );
    }
}
