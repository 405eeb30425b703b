//! What is measured: the workloads, the stacks that run them, and the frames they carry.
//!
//! A *workload* is one of the five families the benchmark knows (`--workloads`); it expands into one
//! or more *cases*, each a fixed stream (so many frames of so many reference records, decoded typed or
//! left raw) run by a fixed set of *stacks*. `growth` is the only workload with several cases (one
//! per stream length).
//!
//! Every frame's body is a JSON array of copies of the reference record
//! (`fixtures/sample-record.json`): 50 copies make the reference frame, 60,901 bytes of body and
//! 60,905 on the wire.

use std::fmt;

use clap::ValueEnum;
use framepipe::reference::{reference_batch, RECORDS_PER_FRAME};

/// Bytes of the length header in front of every body (SPEC §1.1).
pub(crate) const HEADER_LEN: u64 = 4;

/// One record per frame: the small-frame workload.
const SMALL_RECORDS: usize = 1;

/// Records per frame of the large workload: 821 reference records make a body of about 1 MB.
const LARGE_RECORDS: usize = 821;

/// A workload family, as named on the command line and in `results.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// 50,000 reference frames, typed at the consumer.
    Reference,
    /// 1,000,000 frames of one record, typed: per-frame costs dominate.
    Small,
    /// 3,000 frames of 821 records (~1 MB each), typed.
    Large,
    /// 50,000 reference frames left as bytes at the consumer (no JSON work anywhere).
    Raw,
    /// Reference frames, typed, at three stream lengths: does throughput or memory drift?
    Growth,
    /// 50,000 reference frames sent as prepared bytes (like `producer --payload`: the sender costs
    /// little), typed at the consumer: the consumer's own capacity.
    Payload,
    /// The `payload` stream into framepipe with 2 decode workers (SPEC §7.8), with 1, and into the
    /// comparison consumer.
    Parallel,
}

impl Workload {
    /// Every workload, in the order they run.
    pub(crate) const ALL: [Workload; 7] = [
        Workload::Reference,
        Workload::Small,
        Workload::Large,
        Workload::Raw,
        Workload::Growth,
        Workload::Payload,
        Workload::Parallel,
    ];

    /// The name used on the command line and in the CSV.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::Reference => "reference",
            Workload::Small => "small",
            Workload::Large => "large",
            Workload::Raw => "raw",
            Workload::Growth => "growth",
            Workload::Payload => "payload",
            Workload::Parallel => "parallel",
        }
    }

    /// Parses [`Workload::name`].
    pub(crate) fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// How frames are decoded at the consumer.
    pub(crate) fn payload(self) -> Payload {
        match self {
            Workload::Raw => Payload::Raw,
            Workload::Payload | Workload::Parallel => Payload::Prepared,
            _ => Payload::Typed,
        }
    }

    /// Records in each frame.
    pub(crate) fn records_per_frame(self) -> usize {
        match self {
            Workload::Small => SMALL_RECORDS,
            Workload::Large => LARGE_RECORDS,
            Workload::Reference
            | Workload::Raw
            | Workload::Growth
            | Workload::Payload
            | Workload::Parallel => RECORDS_PER_FRAME,
        }
    }

    /// The stacks that run this workload, framepipe first.
    pub(crate) fn stacks(self) -> &'static [Stack] {
        match self {
            Workload::Raw => &[Stack::Framepipe, Stack::PlainTcp, Stack::Baseline],
            Workload::Parallel => &[Stack::FramepipeDecode2, Stack::Framepipe, Stack::Baseline],
            _ => &[Stack::Framepipe, Stack::Baseline],
        }
    }

    /// The stack in the ratio's numerator: framepipe, or for `parallel` framepipe with 2 decode
    /// workers.
    pub(crate) fn ratio_stack(self) -> Stack {
        match self {
            Workload::Parallel => Stack::FramepipeDecode2,
            _ => Stack::Framepipe,
        }
    }

    /// The stack framepipe is compared with in the ratio column: the comparison stack, or for the
    /// raw workload the plain TCP copy (the ceiling of what loopback can do).
    pub(crate) fn ratio_base(self) -> Stack {
        match self {
            Workload::Raw => Stack::PlainTcp,
            _ => Stack::Baseline,
        }
    }

    /// Stream lengths (frames) of this workload's cases, full or `--quick`.
    pub(crate) fn frame_counts(self, quick: bool) -> &'static [u64] {
        match (self, quick) {
            (
                Workload::Reference | Workload::Raw | Workload::Payload | Workload::Parallel,
                false,
            ) => &[50_000],
            (
                Workload::Reference | Workload::Raw | Workload::Payload | Workload::Parallel,
                true,
            ) => &[2_000],
            (Workload::Small, false) => &[1_000_000],
            (Workload::Small, true) => &[20_000],
            (Workload::Large, false) => &[3_000],
            (Workload::Large, true) => &[100],
            (Workload::Growth, false) => &[5_000, 50_000, 500_000],
            (Workload::Growth, true) => &[500, 2_000, 5_000],
        }
    }

    /// This workload's cases, in the order they run.
    pub(crate) fn cases(self, quick: bool) -> Vec<Case> {
        let records_per_frame = self.records_per_frame();
        let body_len = body(records_per_frame).len() as u64;
        self.frame_counts(quick)
            .iter()
            .map(|&frames| Case {
                workload: self,
                shape: Shape {
                    payload: self.payload(),
                    frames,
                    records_per_frame,
                    body_len,
                },
            })
            .collect()
    }
}

/// An implementation of both sides, as named in tables, plots and the CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub(crate) enum Stack {
    /// framepipe's producer and consumer with default settings.
    #[value(name = "framepipe")]
    Framepipe,
    /// The same, with the consumer's `decode_workers(2)` (SPEC §7.8).
    #[value(name = "framepipe-decode-2")]
    FramepipeDecode2,
    /// What a Rust user would write instead: `LengthDelimitedCodec` and serde_json (`baseline.rs`).
    #[value(name = "tokio-util+serde_json")]
    Baseline,
    /// A buffer of frames copied through a socket, nothing else (`plain.rs`; raw workload only).
    #[value(name = "plain-tcp")]
    PlainTcp,
}

impl Stack {
    /// The name shown in tables, plots and the CSV.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stack::Framepipe => "framepipe",
            Stack::FramepipeDecode2 => "framepipe-decode-2",
            Stack::Baseline => "tokio-util+serde_json",
            Stack::PlainTcp => "plain-tcp",
        }
    }

    /// Parses [`Stack::name`].
    pub(crate) fn from_name(name: &str) -> Option<Stack> {
        [
            Stack::Framepipe,
            Stack::FramepipeDecode2,
            Stack::Baseline,
            Stack::PlainTcp,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the consumer does with a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Payload {
    /// Parse it into `Vec<Record>`.
    Typed,
    /// Leave it as bytes.
    Raw,
    /// Parse it into `Vec<Record>`, as `Typed`; the producer sends the body prepared once, as
    /// bytes, instead of serializing every frame.
    Prepared,
}

impl Payload {
    /// The name used on the command line and in the CSV.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Payload::Typed => "typed",
            Payload::Raw => "raw",
            Payload::Prepared => "prepared",
        }
    }

    /// What a table's title says of it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Payload::Typed => "typed at the consumer",
            Payload::Raw => "raw at the consumer",
            Payload::Prepared => "sent as prepared bytes, typed at the consumer",
        }
    }

    /// Whether the consumer parses bodies into records.
    pub(crate) fn typed_at_consumer(self) -> bool {
        matches!(self, Payload::Typed | Payload::Prepared)
    }
}

/// The stream one run carries: everything both children need to produce or check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// What the consumer does with each body.
    pub(crate) payload: Payload,
    /// Frames in the stream.
    pub(crate) frames: u64,
    /// Reference records in each frame.
    pub(crate) records_per_frame: usize,
    /// Bytes of each body (the serialized batch), so a consumer can check the total without
    /// building the batch itself.
    pub(crate) body_len: u64,
}

impl Shape {
    /// Bytes of one frame on the wire, header included.
    pub(crate) fn frame_wire_len(&self) -> u64 {
        HEADER_LEN + self.body_len
    }

    /// Bytes of the whole stream on the wire.
    pub(crate) fn wire_bytes(&self) -> u64 {
        self.frames * self.frame_wire_len()
    }
}

/// One workload at one stream length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Case {
    /// The family it belongs to.
    pub(crate) workload: Workload,
    /// The stream.
    pub(crate) shape: Shape,
}

impl Case {
    /// A short label for progress lines and plots: `reference`, `growth 500k`.
    pub(crate) fn label(&self) -> String {
        case_label(self.workload, self.shape.frames)
    }
}

/// The body every stack sends for `records_per_frame` records: the reference batch as compact JSON,
/// exactly the bytes framepipe's typed encoder and `serde_json::to_vec` write.
pub(crate) fn body(records_per_frame: usize) -> Vec<u8> {
    serde_json::to_vec(&reference_batch(records_per_frame)).expect("the reference batch serializes")
}

/// A case's short label: the workload's name, with the stream length for `growth` (`growth 500k`).
pub(crate) fn case_label(workload: Workload, frames: u64) -> String {
    match workload {
        Workload::Growth => format!("growth {}", short_count(frames)),
        w => w.name().to_string(),
    }
}

/// `500`, `2k`, `50k`, `1M`: compact counts for labels.
fn short_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}
