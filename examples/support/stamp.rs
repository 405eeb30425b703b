//! `producer --stamp` and `consumer --verify`: an integrity check independent of the session
//! layer's own counters. A stamped frame is `{"stamp":N,"records":[...]}`, N counting from 0; the
//! consumer finds N at the front of the body (in any mode) and counts what is missing, repeated
//! and out of order.

use std::sync::Arc;

use framepipe::reference::Record;
use serde::{Deserialize, Serialize};

/// A frame's body: the reference array as it is, or stamped with its number.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Body {
    /// `[record, …]`, byte-identical to the JavaScript producer's.
    Plain(Arc<Vec<Record>>),
    /// `{"stamp":N,"records":[record, …]}`.
    Stamped {
        stamp: u64,
        records: Arc<Vec<Record>>,
    },
}

/// A stamped frame, as the typed consumer decodes it.
#[derive(Debug, Deserialize)]
pub struct Stamped {
    pub stamp: u64,
    pub records: Vec<Record>,
}

/// The stamp at the front of a stamped body, without parsing the rest: `{"stamp":N,`.
pub fn stamp_of(body: &[u8]) -> Option<u64> {
    let rest = body.strip_prefix(b"{\"stamp\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// What `--verify` found. `stamps_missing` counts the numbers below the highest seen that never
/// arrived; `stamps_duplicated` the arrivals of a number already seen; `stamps_out_of_order` the
/// arrivals of a new number below the highest seen; `frames_unstamped` the frames without a stamp.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct VerifyCounts {
    pub stamps_seen: u64,
    pub stamps_missing: u64,
    pub stamps_duplicated: u64,
    pub stamps_out_of_order: u64,
    pub frames_unstamped: u64,
}

/// Checks the stamps of one producer's run, in the order handled. A bit per number seen.
#[derive(Debug, Default)]
pub struct Verifier {
    seen: Vec<u64>,
    highest: Option<u64>,
    counts: VerifyCounts,
}

impl Verifier {
    /// A frame with stamp `stamp` (`None`: no stamp) was handled.
    pub fn see(&mut self, stamp: Option<u64>) {
        let Some(n) = stamp else {
            self.counts.frames_unstamped += 1;
            return;
        };
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            self.counts.stamps_duplicated += 1;
            return;
        }
        self.seen[word] |= bit;
        self.counts.stamps_seen += 1;
        if self.highest.is_some_and(|h| n < h) {
            self.counts.stamps_out_of_order += 1;
        }
        self.highest = Some(self.highest.map_or(n, |h| h.max(n)));
    }

    /// The counts so far.
    pub fn counts(&self) -> VerifyCounts {
        let expected = self.highest.map_or(0, |h| h + 1);
        VerifyCounts {
            stamps_missing: expected - self.counts.stamps_seen,
            ..self.counts
        }
    }
}
