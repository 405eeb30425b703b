//! The binaries' metrics endpoint, scraped over HTTP during a run (SPEC §11.1, §11.2): values move,
//! names follow Prometheus conventions, and `/readyz` says not ready at the connection limit and
//! once shutting down. One test per process: it installs the global recorder.

#[path = "../examples/support/observe.rs"]
#[allow(dead_code, unreachable_pub)]
mod observe;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use framepipe::consumer::{Consumer, Delivery, Raw};
use framepipe::producer::Producer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` over a new connection: (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// Every sample line as (name with labels, value), and each family's TYPE.
fn parse(text: &str) -> (HashMap<String, f64>, HashMap<String, String>) {
    let mut samples = HashMap::new();
    let mut types = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
        } else if !line.starts_with('#') {
            let (key, value) = line.rsplit_once(' ').unwrap();
            samples.insert(key.to_string(), value.parse().unwrap());
        }
    }
    (samples, types)
}

/// Prometheus conventions: a valid name, the `framepipe_` or standard `process_` prefix, `_total`
/// on counters and only on counters, a base unit or a count.
fn check_names(types: &HashMap<String, String>) {
    for (name, kind) in types {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        assert!(valid, "invalid metric name {name}");
        assert!(
            name.starts_with("framepipe_") || name.starts_with("process_"),
            "{name}"
        );
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name}: {kind}"
        );
        let unit = ["_bytes", "_seconds", "_total", "_open", "_fds", "_threads"];
        assert!(unit.iter().any(|u| name.ends_with(u)), "{name}: no unit");
    }
}

/// `GET path` every 20 ms until `done(status, body)`, for at most 20 s; the last body.
async fn until(addr: std::net::SocketAddr, path: &str, done: impl Fn(u16, &str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(addr, path).await;
        if done(status, &body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} still {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("{key} missing from the scrape"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_during_a_run_shows_values_moving_and_readiness_following_the_limits() {
    let endpoint = observe::Endpoint::start("127.0.0.1:0", true).await.unwrap();
    let metrics = endpoint.addr;
    assert_eq!(get(metrics, "/readyz").await.0, 503, "no consumer yet");
    let consumer = Consumer::builder()
        .max_open_connections(1)
        .budget(256 * 1024)
        .bind("127.0.0.1:0")
        .await
        .unwrap();
    let addr = consumer.local_addr().unwrap();
    endpoint.set_health(consumer.health());
    let shutdown = consumer.shutdown_handle();
    assert_eq!(get(metrics, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(metrics, "/readyz").await.0, 200);
    let served = tokio::spawn(consumer.serve(Raw, |_: Delivery<Bytes>| async {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }));
    const FRAMES: usize = 600;
    let body = Bytes::from(format!("[{}]", "1,".repeat(8_000) + "1"));
    let bodies = vec![body.clone(); FRAMES];
    let sending = tokio::spawn(
        Producer::builder()
            .session(addr.to_string())
            .send_raw(futures::stream::iter(bodies)),
    );

    let ready = until(metrics, "/readyz", |status, _| status == 503).await;
    let (status, first) = get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    let (early, types) = parse(&first);
    check_names(&types);
    assert!(
        ready.contains("\"open_connections\":1"),
        "at max_open_connections: {ready}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (later, _) = parse(&get(metrics, "/metrics").await.1);
    let handled = "framepipe_consumer_frames_handled_total";
    assert!(
        value(&later, handled) > value(&early, handled),
        "frames handled moved"
    );
    let queued = r#"framepipe_stage_peak_bytes{side="consumer",stage="queue"}"#;
    assert!(value(&later, queued) > 0.0);
    let retained = r#"framepipe_stage_bytes{side="producer",stage="retained"}"#;
    assert!(value(&later, retained) > 0.0, "a session retains");
    assert_eq!(value(&later, "framepipe_consumer_connections_open"), 1.0);

    let report = sending.await.unwrap().expect("the session completes");
    assert_eq!(report.progress.delivered, FRAMES as u64);
    // The last publication, and the connection's end, come a moment after the goodbye.
    until(metrics, "/readyz", |status, _| status == 200).await;
    let published = |_: u16, text: &str| {
        parse(text).0.get("framepipe_consumer_frames_handled_total") == Some(&(FRAMES as f64))
    };
    let (done, types) = parse(&until(metrics, "/metrics", published).await);
    check_names(&types);
    let wire = (FRAMES * (body.len() + 4)) as f64;
    assert_eq!(value(&done, handled), FRAMES as f64);
    assert_eq!(value(&done, "framepipe_consumer_bytes_handled_total"), wire);
    assert_eq!(
        value(&done, "framepipe_producer_frames_sent_total"),
        FRAMES as f64
    );
    assert_eq!(
        value(&done, "framepipe_producer_frames_acked_total"),
        FRAMES as f64
    );
    assert!(value(&done, "framepipe_producer_acks_total") >= 1.0);
    assert_eq!(value(&done, "framepipe_consumer_sessions_total"), 1.0);
    assert!(value(&done, "framepipe_scheduler_lag_seconds_count") >= 5.0);
    assert!(value(&done, "process_resident_memory_bytes") > 0.0);
    let blocked = r#"framepipe_blocked_seconds_count{side="producer",stage="queue"}"#;
    assert!(
        value(&done, blocked) > 0.0,
        "a slow consumer blocks the producer"
    );

    shutdown.shutdown();
    assert_eq!(get(metrics, "/readyz").await.0, 503, "shutting down");
    served.await.unwrap();
}
