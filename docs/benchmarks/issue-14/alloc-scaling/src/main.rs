//! Does parsing typed frames scale over threads with this allocator? (issue 14, BENCHMARKS.md)
//!
//! Parses the reference frame (50 records, 60,901 bytes) 10,000 times per thread:
//! - on 1 and on 2 threads, each dropping its own records;
//! - on 2 threads that send their records to a third, which drops them (what a consumer with decode
//!   helpers does: records are built on a helper and dropped on the handler's thread).
//!
//! ```sh
//! cd docs/benchmarks/issue-14/alloc-scaling
//! cargo run --release                       # the system allocator
//! cargo run --release --features mimalloc
//! cargo run --release --features jemalloc
//! ```

use std::time::Instant;

use framepipe::reference::{reference_batch, Record};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const FRAMES_PER_THREAD: usize = 10_000;

fn parse(body: &[u8]) -> Vec<Record> {
    serde_json::from_slice(body).expect("the reference frame parses")
}

fn report(what: &str, threads: usize, body: &[u8], started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    let mb = (threads * FRAMES_PER_THREAD * body.len()) as f64 / 1e6;
    println!("{what}: {secs:.2} s, {:.0} MB/s in all", mb / secs);
}

fn main() {
    let body = serde_json::to_vec(&reference_batch(50)).expect("the batch serializes");
    for _ in 0..2 {
        for threads in [1, 2] {
            let started = Instant::now();
            std::thread::scope(|scope| {
                for _ in 0..threads {
                    scope.spawn(|| {
                        for _ in 0..FRAMES_PER_THREAD {
                            std::hint::black_box(parse(&body));
                        }
                    });
                }
            });
            report(&format!("{threads} thread(s), each dropping its own"), threads, &body, started);
        }
        let started = Instant::now();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Record>>(4);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                let tx = tx.clone();
                let body = &body;
                scope.spawn(move || {
                    for _ in 0..FRAMES_PER_THREAD {
                        tx.send(parse(body)).expect("the dropper is there");
                    }
                });
            }
            drop(tx);
            let records: usize = rx.iter().map(|batch| batch.len()).sum();
            assert_eq!(records, 2 * FRAMES_PER_THREAD * 50);
        });
        report("2 threads, dropped on a third", 2, &body, started);
    }
}
