//! Sessions under any schedule of cuts (SPEC §10): a producer core and consumer cores on in-memory
//! pipes and a made-up clock, connections cut at arbitrary byte offsets in either direction — inside
//! data frames, headers, hellos, welcomes and acks — and resumed. The handler must see every
//! sequence number exactly once, in order, and the producer's report must say so.

mod sim;

use proptest::prelude::*;
use sim::{Cut, Plan};

fn plan() -> impl Strategy<Value = Plan> {
    (
        proptest::collection::vec(0usize..3_000, 1..120),
        proptest::collection::vec((any::<bool>(), 0usize..40_000), 0..12),
        1_000usize..40_000,
        1u32..10,
        1u64..12,
        1usize..5_000,
        any::<bool>(),
    )
        .prop_map(
            |(bodies, cuts, budget, ack_every, report_every, chunk, store)| Plan {
                bodies,
                cuts: cuts
                    .into_iter()
                    .map(|(backwards, at)| Cut { backwards, at })
                    .collect(),
                budget,
                ack_every,
                report_every,
                chunk,
                store,
            },
        )
}

fn check(plan: &Plan) -> Result<(), TestCaseError> {
    let out = sim::run(plan);
    let n = plan.bodies.len() as u64;
    prop_assert!(out.complete, "{:?}", out.error);
    prop_assert_eq!(&out.handled, &(0..n).collect::<Vec<_>>());
    prop_assert_eq!(out.delivered, n);
    prop_assert_eq!((out.unacked, out.never_sent), (0, 0));
    prop_assert_eq!(out.resumes, out.welcomed - 1);
    prop_assert_eq!(out.reconnects, out.connections - 1);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any cuts, any chunking, any pacing: exactly once, in order, and a true report.
    #[test]
    fn every_frame_is_handled_exactly_once_in_order_across_any_cuts(plan in plan()) {
        check(&plan)?;
    }
}

#[test]
fn no_cut_is_one_connection_and_no_duplicate() {
    let plan = Plan {
        bodies: vec![100; 50],
        cuts: vec![],
        budget: 2_000,
        ack_every: 4,
        report_every: 3,
        chunk: 700,
        store: false,
    };
    let out = sim::run(&plan);
    assert!(out.complete, "{out:?}");
    assert_eq!(out.connections, 1);
    assert_eq!(out.duplicates, 0);
    assert_eq!(out.handled.len(), 50);
}

#[test]
fn a_store_that_lags_makes_frames_arrive_again_and_they_are_dropped() {
    // The store commits every 8 frames: the connection is cut after 20 frames, 16 committed; the
    // next welcome names frame 16, the producer sends 16.. again, and the consumer drops 16..19.
    let plan = Plan {
        bodies: vec![96; 40],
        cuts: vec![Cut {
            backwards: false,
            at: 48 + 20 * 100,
        }],
        budget: 100_000,
        ack_every: 1,
        report_every: 8,
        chunk: 10_000,
        store: true,
    };
    let out = sim::run(&plan);
    assert!(out.complete, "{out:?}");
    assert_eq!(out.connections, 2);
    // 16..19 at most: a commit may land between the last frame read and the cut.
    assert!((1..=4).contains(&out.duplicates), "{out:?}");
    assert_eq!(out.handled, (0..40).collect::<Vec<_>>());
}
