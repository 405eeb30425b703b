//! Helpers shared by the API integration tests (`api_consumer`, `api_producer`, `transports`).
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A sequence-stamped typed event: `producer` says which stream it belongs to, `seq` its place in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Event {
    pub(crate) producer: u32,
    pub(crate) seq: u64,
    pub(crate) note: String,
}

/// The same event, borrowing its text from the frame's bytes.
#[derive(Debug, Deserialize)]
pub(crate) struct EventRef<'a> {
    pub(crate) producer: u32,
    pub(crate) seq: u64,
    pub(crate) note: &'a str,
}

/// Event `seq` of `producer`, with a note of 20–80 bytes so frames differ in size.
pub(crate) fn event(producer: u32, seq: u64) -> Event {
    Event {
        producer,
        seq,
        note: "n".repeat(20 + (seq % 61) as usize),
    }
}

/// `count` events of `producer`, from 0.
pub(crate) fn events(producer: u32, count: u64) -> impl futures::Stream<Item = Event> {
    futures::stream::iter((0..count).map(move |seq| event(producer, seq)))
}

/// A fresh path for a Unix domain socket (the directory is created; the file is not).
pub(crate) fn unix_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("framepipe-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.sock"));
    let _ = std::fs::remove_file(&path);
    path
}

/// Waits until `cond` holds, polling every 5 ms; panics with `what` after `limit`.
pub(crate) async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Checks that each key's sequence numbers are exactly `0..n` in order, and returns each `n`.
pub(crate) fn check_sequences<K: Ord + Copy + std::fmt::Debug>(
    seen: &[(K, u64)],
) -> BTreeMap<K, u64> {
    let mut next: BTreeMap<K, u64> = BTreeMap::new();
    for &(key, seq) in seen {
        let expected = next.entry(key).or_insert(0);
        assert_eq!(
            seq, *expected,
            "{key:?}: got seq {seq} where {expected} was due (a gap, a duplicate or a reorder)"
        );
        *expected += 1;
    }
    next
}
