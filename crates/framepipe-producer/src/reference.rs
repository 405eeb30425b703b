//! The reference workload: the record every benchmark and demo sends (`fixtures/sample-record.json`).
//!
//! A reference frame is a JSON array of 50 copies of the record: 60,901 bytes of body, byte-identical
//! to what the JavaScript producer writes (`fixtures/seed-frame-50.bin`). The reference workload is
//! 50,000 such frames (3.05 GB).

use std::borrow::Cow;

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

/// The reference record, borrowing its strings from the frame it was parsed from: for
/// `Delivery::json` and `parse_json_body`, which deserialize without copying unescaped strings
/// (a string with escapes becomes a `Cow::Owned`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // field names are the record's own
pub struct RecordRef<'a> {
    #[serde(rename = "_id", borrow)]
    pub id: Cow<'a, str>,
    pub isactive: bool,
    #[serde(borrow)]
    pub balance: Cow<'a, str>,
    #[serde(borrow)]
    pub picture: Cow<'a, str>,
    pub age: u32,
    #[serde(borrow)]
    pub eyecolor: Cow<'a, str>,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub gender: Cow<'a, str>,
    #[serde(borrow)]
    pub company: Cow<'a, str>,
    #[serde(borrow)]
    pub email: Cow<'a, str>,
    #[serde(borrow)]
    pub phone: Cow<'a, str>,
    #[serde(borrow)]
    pub address: Cow<'a, str>,
    #[serde(borrow)]
    pub about: Cow<'a, str>,
    #[serde(borrow)]
    pub registered: Cow<'a, str>,
    pub latitude: f64,
    pub longitude: f64,
    #[serde(borrow)]
    pub tags: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub friends: Vec<FriendRef<'a>>,
    #[serde(borrow)]
    pub greeting: Cow<'a, str>,
    #[serde(borrow)]
    pub favoritefruit: Cow<'a, str>,
}

/// One element of [`RecordRef::friends`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct FriendRef<'a> {
    pub id: u32,
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

/// A batch of `n` copies of the reference record: one frame's payload.
pub fn reference_batch(n: usize) -> Vec<Record> {
    vec![Record::reference(); n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_borrowed_record_reads_the_reference_frame_without_copying_its_strings() {
        let body = serde_json::to_vec(&reference_batch(3)).unwrap();
        let owned: Vec<Record> = serde_json::from_slice(&body).unwrap();
        let borrowed: Vec<RecordRef<'_>> = serde_json::from_slice(&body).unwrap();
        assert_eq!(borrowed.len(), 3);
        assert_eq!(borrowed[2].email, owned[2].email);
        assert_eq!(borrowed[0].friends[1].name, owned[0].friends[1].name);
        let range = body.as_ptr_range();
        match &borrowed[1].email {
            Cow::Borrowed(s) => assert!(range.contains(&s.as_ptr()), "points into the frame"),
            Cow::Owned(_) => panic!("an unescaped string was copied"),
        }
        // `about` holds an escape sequence: it is unescaped into an owned string.
        assert!(matches!(borrowed[1].about, Cow::Owned(_)));
        assert_eq!(borrowed[1].about, owned[1].about);
        // Re-encoded, it is the same frame.
        assert_eq!(serde_json::to_vec(&borrowed).unwrap(), body);
    }
}
