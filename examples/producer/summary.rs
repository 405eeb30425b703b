//! The producer example's summaries and exit statuses, plain and in a session.

use std::process::ExitCode;

use framepipe::producer::{Error, Stats};
use framepipe::proto::Error as ProtoError;

use crate::support::{
    Closed, ProducerCounts, ProducerSessionCounts, SessionEnd, Summary, EXIT_FORCED,
    EXIT_INTERRUPTED,
};
use crate::Args;

/// Prints the summary and picks the exit status.
pub(crate) fn finish(
    args: &Args,
    stats: &Stats,
    closed: Closed,
    waited_ms: u64,
    raw: bool,
) -> ExitCode {
    let cut_short = closed.cut_short();
    let Closed {
        result,
        interrupted,
        ..
    } = closed;
    let snap = match &result {
        Ok(report) => report.snapshot.clone(),
        Err(_) => stats.snapshot(),
    };
    let never_sent = match &result {
        Ok(_) => 0,
        Err(e) => e.never_sent().max(snap.frames_unwritten()),
    };
    let confirmed = result.as_ref().is_ok_and(|r| r.confirmed);
    let summary = Summary::new(
        "producer",
        snap.frames_written,
        (!raw).then(|| snap.frames_written * args.records_per_frame as u64),
        snap.bytes_written,
        snap.secs,
        &snap.flow,
        args.budget,
        u64::from(result.is_err()),
        result.as_ref().err().map(|e| e.to_string()),
    )
    .interrupted(interrupted)
    .producer(ProducerCounts {
        items_sent: snap.items_sent,
        frames_encoded: snap.frames_encoded,
        frames_written: snap.frames_written,
        never_sent,
        confirmed,
        close_forced: cut_short,
        waited_for_room_ms: waited_ms,
    });
    eprintln!("{}", summary.human());
    if args.summary_json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("summary serializes")
        );
    }
    match result {
        Ok(_) if confirmed && interrupted => ExitCode::from(EXIT_INTERRUPTED),
        Ok(_) if confirmed => ExitCode::SUCCESS,
        Ok(_) if interrupted => {
            eprintln!(
                "producer: every frame taken was written, but the consumer did not confirm within \
                 --shutdown-timeout"
            );
            ExitCode::from(EXIT_FORCED)
        }
        Ok(_) => {
            eprintln!(
                "producer: every frame was written, but the consumer did not confirm by closing"
            );
            ExitCode::from(5)
        }
        Err(e @ Error::Deadline { .. }) => {
            eprintln!("producer: error: {e}");
            ExitCode::from(EXIT_FORCED)
        }
        Err(e) => fail(&e),
    }
}

pub(crate) fn fail(e: &Error) -> ExitCode {
    eprintln!("producer: error: {e}");
    ExitCode::from(match e {
        Error::Connect { .. } => 2,
        Error::Rejected { .. } => 3,
        Error::PeerClosed { .. } => 4,
        _ => 5,
    })
}

/// A session's summary and exit status.
pub(crate) fn finish_session(
    args: &Args,
    stats: &Stats,
    session: String,
    end: SessionEnd,
) -> ExitCode {
    let SessionEnd {
        result,
        interrupted,
        forced,
    } = end;
    let progress = stats.session_progress().unwrap_or_default();
    let (snap, times) = match &result {
        Some(Ok(report)) => (report.snapshot.clone(), report.resume_times),
        _ => (stats.snapshot(), None),
    };
    // Taken from the source and never written: in the session, or still in the queue before it.
    let never_sent = progress.never_sent.max(snap.frames_unwritten());
    let error = match &result {
        Some(Err(e)) => Some(e.to_string()),
        None => Some(format!(
            "the session was abandoned: {} frames delivered, {} sent and not acknowledged, {} \
             never sent",
            progress.delivered, progress.unacked, never_sent
        )),
        Some(Ok(_)) => None,
    };
    let complete = matches!(&result, Some(Ok(r)) if r.complete);
    let summary = Summary::new(
        "producer",
        progress.delivered,
        (args.payload.is_none() && args.jsonl.is_none())
            .then(|| progress.delivered * args.records_per_frame as u64),
        snap.bytes_written,
        snap.secs,
        &snap.flow,
        // The queue's budget, and as much again retained until acknowledged (SPEC §10.2).
        2 * args.budget,
        u64::from(!complete),
        error,
    )
    .interrupted(interrupted)
    .producer(ProducerCounts {
        items_sent: snap.items_sent,
        frames_encoded: snap.frames_encoded,
        frames_written: snap.frames_written,
        never_sent,
        confirmed: complete,
        close_forced: forced,
        // The library polls a session's source: its wait for room is the queue stage's.
        waited_for_room_ms: snap
            .flow
            .stages
            .iter()
            .find(|s| s.name == "queue")
            .map_or(0, |s| s.blocked_ms),
    })
    .producer_session(ProducerSessionCounts::new(
        session,
        snap.items_sent,
        progress,
        times,
    ));
    eprintln!("{}", summary.human());
    if args.summary_json {
        println!(
            "{}",
            serde_json::to_string(&summary).expect("summary serializes")
        );
    }
    match result {
        Some(Ok(_)) if interrupted => ExitCode::from(EXIT_INTERRUPTED),
        Some(Ok(_)) => ExitCode::SUCCESS,
        None => ExitCode::from(EXIT_FORCED),
        Some(Err(e)) => {
            eprintln!("producer: error: {e}");
            ExitCode::from(match &e {
                Error::Session { source, .. } => match source {
                    ProtoError::ReconnectTimeout { .. } if progress.connections == 0 => 2,
                    ProtoError::ReconnectTimeout { .. } => 4,
                    ProtoError::Rejected(_) => 3,
                    _ => 5,
                },
                Error::Encode { .. } => 5,
                _ => 5,
            })
        }
    }
}
