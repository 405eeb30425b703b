//! `producer --stamp` / `consumer --verify` (examples/support/stamp.rs): the verifier counts what is
//! missing, repeated and late, and finds the stamp at the front of a body.

#[path = "../examples/support/stamp.rs"]
#[allow(dead_code, unreachable_pub)]
mod stamp;

use stamp::{stamp_of, Verifier};

#[test]
fn counts_what_is_missing_repeated_and_late() {
    let mut v = Verifier::default();
    for n in [0, 1, 3, 3, 2, 5] {
        v.see(Some(n));
    }
    v.see(None);
    let c = v.counts();
    assert_eq!(c.stamps_seen, 5);
    assert_eq!(c.stamps_missing, 1); // 4
    assert_eq!(c.stamps_duplicated, 1);
    assert_eq!(c.stamps_out_of_order, 1); // 2 after 3
    assert_eq!(c.frames_unstamped, 1);
}

#[test]
fn the_stamp_is_read_from_the_front_of_a_stamped_body_only() {
    assert_eq!(stamp_of(b"{\"stamp\":42,\"records\":[]}"), Some(42));
    assert_eq!(stamp_of(b"[{\"stamp\":1}]"), None);
    assert_eq!(stamp_of(b"{\"stamp\":x}"), None);
    let body = serde_json::to_vec(&stamp::Body::Stamped {
        stamp: 7,
        records: std::sync::Arc::new(vec![]),
    })
    .unwrap();
    assert_eq!(
        stamp_of(&body),
        Some(7),
        "{}",
        String::from_utf8_lossy(&body)
    );
}
