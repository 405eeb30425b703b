//! The reference workload: the record every benchmark and demo sends (`fixtures/sample-record.json`).
//!
//! A reference frame is a JSON array of 50 copies of the record: 60,901 bytes of body, byte-identical
//! to what the JavaScript producer writes (`fixtures/seed-frame-50.bin`). The reference workload is
//! 50,000 such frames (3.05 GB).

use serde::{Deserialize, Serialize};

/// The reference record as pretty-printed JSON, embedded at build time.
pub const SAMPLE_RECORD_JSON: &str = include_str!("../../../fixtures/sample-record.json");

/// Records per frame in the reference workload.
pub const RECORDS_PER_FRAME: usize = 50;

/// Frames in the reference workload.
pub const REFERENCE_FRAMES: u64 = 50_000;

/// The reference record. Fields are declared in the order the JavaScript producer writes them, so
/// serializing it gives the same bytes as `JSON.stringify`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // field names are the record's own
pub struct Record {
    #[serde(rename = "_id")]
    pub id: String,
    pub isactive: bool,
    pub balance: String,
    pub picture: String,
    pub age: u32,
    pub eyecolor: String,
    pub name: String,
    pub gender: String,
    pub company: String,
    pub email: String,
    pub phone: String,
    pub address: String,
    pub about: String,
    pub registered: String,
    pub latitude: f64,
    pub longitude: f64,
    pub tags: Vec<String>,
    pub friends: Vec<Friend>,
    pub greeting: String,
    pub favoritefruit: String,
}

/// One element of [`Record::friends`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Friend {
    pub id: u32,
    pub name: String,
}

impl Record {
    /// The reference record, parsed from [`SAMPLE_RECORD_JSON`].
    pub fn reference() -> Record {
        serde_json::from_str(SAMPLE_RECORD_JSON).expect("fixtures/sample-record.json is a Record")
    }
}

/// A batch of `n` copies of the reference record: one frame's payload.
pub fn reference_batch(n: usize) -> Vec<Record> {
    vec![Record::reference(); n]
}
