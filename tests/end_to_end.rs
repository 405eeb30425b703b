//! Producer → consumer over real loopback TCP: order, completeness and the report (SPEC §6, §7).

use std::sync::{Arc, Mutex};

use framepipe::consumer::{Consumer, Json};
use framepipe::producer::Producer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Stamped {
    seq: u64,
    payload: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_frames_arrive_complete_and_in_order() {
    const FRAMES: u64 = 10_000;
    let consumer = Consumer::builder()
        .max_connections(Some(1))
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::with_capacity(FRAMES as usize)));
    let server = tokio::spawn({
        let seen = seen.clone();
        consumer.serve(Json::<Stamped>::new(), move |d| {
            let seen = seen.clone();
            async move {
                assert_eq!(d.item.payload.len(), (d.item.seq % 97) as usize);
                seen.lock().unwrap().push((d.frame, d.item.seq));
            }
        })
    });
    let source = futures::stream::iter((0..FRAMES).map(|seq| Stamped {
        seq,
        payload: "x".repeat((seq % 97) as usize),
    }));
    let report = Producer::connect(addr)
        .await
        .unwrap()
        .send_json(source)
        .await
        .unwrap();
    assert!(
        report.confirmed,
        "the consumer closed after reading everything"
    );
    assert_eq!(report.snapshot.frames_written, FRAMES);
    assert_eq!(report.snapshot.bytes_written, report.snapshot.bytes_encoded);

    let consumer_report = server.await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len() as u64, FRAMES);
    for (i, &(frame, seq)) in seen.iter().enumerate() {
        assert_eq!((frame, seq), (i as u64, i as u64), "frame {i} out of order");
    }
    assert_eq!(consumer_report.connections.len(), 1);
    let conn = &consumer_report.connections[0];
    assert_eq!(
        (conn.frames, conn.errors, conn.error.as_deref()),
        (FRAMES, 0, None)
    );
    assert_eq!(conn.bytes, report.snapshot.bytes_written);
    assert_eq!(
        consumer_report.snapshot.bytes_read,
        report.snapshot.bytes_written
    );
}
