//! Sessions end to end on in-memory links and a paused clock (SPEC §8.1.3, §10): the session driver
//! over any transport, through the deterministic harness. Each connection the producer opens is a
//! new harness link with its own schedule of faults; its far end goes to the consumer's in-memory
//! listener. Deadlines are asserted to the millisecond of virtual time.

mod harness;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use framepipe::codec::session::{Control, SessionFramer, Unit};
use framepipe::consumer::{Consumer, Incoming, PeerAddr, Raw};
use framepipe::producer::{self, connect_fn, Producer, Session};
use futures::channel::mpsc::{unbounded, UnboundedReceiver};
use harness::{bodies, consumer_settings, Clock, Cut, Dir, End, Link, Recorder, Schedule};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Conns = UnboundedReceiver<(End, PeerAddr)>;

/// A session whose `n`-th connection is a harness link with the `n`-th schedule (faultless once
/// they run out), and where the far ends go.
fn session_over_links(schedules: Vec<Schedule>) -> (Session, Conns, Arc<Mutex<Vec<Link>>>) {
    let (to_consumer, conns) = unbounded();
    let schedules = Mutex::new(VecDeque::from(schedules));
    let links = Arc::new(Mutex::new(Vec::new()));
    let opened = links.clone();
    let connect = connect_fn("mem", move || {
        let schedule = schedules.lock().unwrap().pop_front().unwrap_or_default();
        let (a, b, link) = Link::open(&schedule);
        opened.lock().unwrap().push(link);
        let sent = to_consumer.unbounded_send((b, PeerAddr::other("producer")));
        async move {
            sent.map_err(|_| std::io::Error::other("the consumer is gone"))?;
            Ok(producer::Link::new(a, PeerAddr::other("consumer")))
        }
    });
    let session = Producer::builder()
        .session_with(connect)
        .reconnect_timeout(Duration::from_secs(5));
    (session, conns, links)
}

fn consumer_on(conns: Conns) -> Consumer<Incoming<Conns>> {
    consumer_settings()
        .listener(Incoming::new(conns, "mem"))
        .expect("consumer settings")
}

#[tokio::test(start_paused = true)]
async fn a_session_over_in_memory_links_survives_resets_exactly_once_in_order() {
    // Two links reset mid-stream (both directions cut, reads fail with ECONNRESET), then a clean one.
    let clock = Clock::start();
    let reset = |at| Schedule::new().cut(Dir::Up, at, Cut::Reset);
    let (session, conns, links) = session_over_links(vec![reset(20_000), reset(45_000)]);
    let recorder = Recorder::new(clock);
    let serving = tokio::spawn(consumer_on(conns).serve_with(Raw, recorder.clone()));
    let source = futures::stream::iter(bodies(300, 500));
    let report = session
        .send_raw(source)
        .await
        .expect("the session completes");
    let report_consumer = serving.await.unwrap();
    assert_eq!(report.progress.delivered, 300);
    assert_eq!(
        (report.progress.connections, report.progress.resumes),
        (3, 2)
    );
    assert_eq!(links.lock().unwrap().len(), 3);
    assert_eq!(
        recorder.seqs(),
        (0..300).collect::<Vec<_>>(),
        "each frame once, in order"
    );
    assert_eq!(report_consumer.snapshot.session_resumes, 2);
    // The first reconnect waits the backoff's first step (100 ms ± 10%) of virtual time.
    let resume = report.resume_times.expect("two resumes");
    assert!((90.0..=111.0).contains(&resume.p50_ms), "{resume:?}");
}

/// Plays a consumer that answers every hello with heartbeats only, every 100 ms.
async fn heartbeats_only(conns: Conns) {
    use futures::StreamExt;
    let mut conns = conns;
    while let Some((mut io, _)) = conns.next().await {
        tokio::spawn(async move {
            let beat = Control::Heartbeat.to_frame().unwrap();
            let mut framer = SessionFramer::new(framepipe::codec::Builder::new());
            let mut buf = BytesMut::new();
            loop {
                if io.write_all(&beat).await.is_err() {
                    return;
                }
                let read = tokio::time::timeout(Duration::from_millis(100), io.read_buf(&mut buf));
                match read.await {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    _ => while let Ok(Some(Unit::Control { .. })) = framer.next_unit(&mut buf) {},
                }
            }
        });
    }
}

#[tokio::test(start_paused = true)]
async fn heartbeats_without_a_welcome_end_the_session_exactly_at_reconnect_timeout() {
    // SPEC §10.6.5, issue 22: the fake consumer keeps the connection alive; the session still
    // gives up 5 s after it began, to the millisecond.
    let clock = Clock::start();
    let (session, conns, links) = session_over_links(vec![]);
    tokio::spawn(heartbeats_only(conns));
    let sender = session.raw_sender();
    sender
        .send(Bytes::from_static(b"[1,2,3,4,5,6,7,8]"))
        .await
        .unwrap();
    let err = sender.close().await.expect_err("never welcomed");
    assert_eq!(err.code(), "reconnect_timeout", "{err}");
    assert_eq!(clock.now(), Duration::from_secs(5));
    assert_eq!(
        links.lock().unwrap().len(),
        1,
        "one connection, kept alive, then given up"
    );
    assert_eq!(err.never_sent(), 1);
}
