//! The file-backed session store across `kill -9` (SPEC §10.3.2): a child process commits positions
//! as fast as it can and is killed mid-stream, 30 times; after each kill the position on disk is
//! one the child committed (the last it reported, or the one it was committing), never a torn file,
//! and the next child carries on from it.
//!
//! A killed process leaves what it wrote to the kernel; this checks the atomic replace, not the
//! `fsync`s, which only a power cut would test.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use framepipe::codec::session::{ResumeSecret, SessionId};
use framepipe::consumer::{FileStore, SessionStore, StoredSession};

const SESSION: u128 = 0x005e_5510_f11e_570e;
const SECRET: ResumeSecret = ResumeSecret::from_bytes(*b"kill-9-mid-write");

/// Not a test: the committer killed by `positions_survive_kill_9_mid_commit`, run in a child
/// process (this test binary re-executed). Does nothing unless `FRAMEPIPE_STORE_CHILD` names a
/// directory. Loads the position, then commits the next ones for ever, printing `COMMITTED n`
/// after each.
#[test]
#[ignore = "run in a child process by positions_survive_kill_9_mid_commit"]
fn committer_child() {
    let Some(dir) = std::env::var_os("FRAMEPIPE_STORE_CHILD") else {
        return;
    };
    let store = FileStore::open(dir).unwrap();
    let id = SessionId::from_u128(SESSION);
    let mut next = store.load(id).unwrap().map_or(0, |s| s.next);
    println!("LOADED {next}");
    loop {
        next += 1;
        let stored = StoredSession {
            next,
            secret: SECRET,
        };
        store.commit(id, &stored).unwrap();
        println!("COMMITTED {next}");
    }
}

#[test]
fn positions_survive_kill_9_mid_commit() {
    let dir = std::env::temp_dir().join(format!("framepipe-store-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let id = SessionId::from_u128(SESSION);
    let mut before = 0;
    for round in 0..30u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "committer_child", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env("FRAMEPIPE_STORE_CHILD", &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("re-run this test binary as the committer");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut value = |key: &str| loop {
            let line = lines.next().expect("the child speaks").unwrap();
            // `split_once`, not `strip_prefix`: libtest's "test committer_child ... " has no newline.
            if let Some((_, v)) = line.split_once(key) {
                break v.trim().parse::<u64>().unwrap();
            }
        };
        assert_eq!(
            value("LOADED "),
            before,
            "round {round}: the last position carries over"
        );
        // Kill after a different number of commits each round, mid-way through a later one.
        let mut last = 0;
        for _ in 0..(20 + 7 * round) {
            last = value("COMMITTED ");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines it wrote before it died and that were not read yet are still in the pipe (each is
        // one write of under PIPE_BUF bytes: whole or absent).
        let last = lines
            .map_while(Result::ok)
            .filter_map(|l| {
                l.split_once("COMMITTED ")
                    .map(|(_, v)| v.trim().parse::<u64>())
            })
            .map_while(Result::ok)
            .last()
            .unwrap_or(last);
        let stored = FileStore::open(&dir).unwrap().load(id).unwrap().unwrap();
        assert_eq!(
            stored.secret, SECRET,
            "round {round}: the secret survives whole"
        );
        let on_disk = stored.next;
        assert!(
            on_disk == last || on_disk == last + 1,
            "round {round}: the child reported {last} last, the disk holds {on_disk}"
        );
        before = on_disk;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
