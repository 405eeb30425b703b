//! The session table (SPEC §10.4.5, §10.8), without connections: who may take a session over, and
//! in what order.

use super::*;
use framepipe_codec::session::Pacing;

const OWNER: ResumeSecret = ResumeSecret::from_bytes([1; 16]);
const THIEF: ResumeSecret = ResumeSecret::from_bytes([2; 16]);

fn hello_with(id: u128, next: u64, secret: Option<ResumeSecret>) -> Hello {
    Hello {
        version: 1,
        session: SessionId::from_u128(id),
        next,
        max_frame_length: 1024,
        pacing: Pacing::default(),
        secret,
    }
}

fn hello(id: u128, next: u64) -> Hello {
    hello_with(id, next, Some(OWNER))
}

#[test]
fn at_the_bound_the_longest_idle_session_goes_and_a_full_table_of_busy_ones_refuses() {
    let table = SessionTable::new(2, DEFAULT_SESSION_EXPIRY);
    let a = table.open(&hello(1, 0), 1).unwrap();
    let b = table.open(&hello(2, 0), 2).unwrap();
    assert!(!a.known && !b.known);
    // Both have connections: a third session is refused.
    match table.open(&hello(3, 0), 3) {
        Err(Refused::Full { max_sessions: 2 }) => {}
        other => panic!("{other:?}"),
    }
    // Session 1's connection ends: its place can be taken.
    *a.slot.idle() = Some(Instant::now());
    let c = table.open(&hello(3, 0), 3).unwrap();
    assert!(!c.known);
    assert_eq!(table.len(), 2);
    assert!(table.open(&hello(2, 0), 4).unwrap().known);
    assert!(b.slot.superseded(2), "connection 4 took session 2 over");
}

#[tokio::test(flavor = "current_thread")]
async fn the_next_connection_waits_for_the_last_to_finish_and_resumes_at_what_was_handled() {
    let table = SessionTable::new(8, DEFAULT_SESSION_EXPIRY);
    let h = hello(7, 10);
    let first = table.open(&h, 1).unwrap();
    let (lease, start) = table.lease(first, 1, &h).await.unwrap();
    assert_eq!((start.next, start.handled), (10, 10));
    lease.slot.set_handled(14);
    let second = table.open(&h, 2).unwrap();
    assert!(second.known);
    let t = table.clone();
    let waiting = tokio::spawn(async move { t.lease(second, 2, &h).await });
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "the first connection still holds the session"
    );
    drop(lease);
    let (_lease, start) = waiting.await.unwrap().unwrap();
    assert_eq!(start.next, 15);
}

#[test]
fn a_hello_without_the_sessions_secret_is_refused_and_the_owner_keeps_it() {
    // Issue 22: knowing a session's id (it was logged in full) was enough to take it over.
    let table = SessionTable::new(8, DEFAULT_SESSION_EXPIRY);
    let owner = table.open(&hello(5, 0), 1).unwrap();
    owner.slot.set_handled(9);
    for (secret, sent) in [(None, false), (Some(THIEF), true)] {
        match table.open(&hello_with(5, 0, secret), 2) {
            Err(r @ Refused::Denied { .. }) => {
                assert!(matches!(r, Refused::Denied { sent: s } if s == sent));
                assert_eq!(r.explain().0, "session_denied");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !owner.slot.superseded(1),
            "the owner's connection is untouched"
        );
        assert_eq!(owner.slot.handled(), 10);
    }
    // A new session must bring a secret.
    assert!(matches!(
        table.open(&hello_with(6, 0, None), 3),
        Err(Refused::Denied { sent: false })
    ));
    assert_eq!(table.len(), 1);
}

#[test]
fn a_hello_never_moves_the_position_forward() {
    // Issue 22: a hello resuming at position + 20 skipped 20 frames; one at 2^62 killed the
    // producer's session.
    let table = SessionTable::new(8, DEFAULT_SESSION_EXPIRY);
    let owner = table.open(&hello(5, 0), 1).unwrap();
    owner.slot.set_handled(99);
    for next in [101, 120, 1 << 62] {
        match table.open(&hello(5, next), 2) {
            Err(r @ Refused::Ahead { handled: 100, .. }) => {
                assert_eq!(r.explain().0, "session_mismatch")
            }
            other => panic!("{next}: {other:?}"),
        }
    }
    assert!(!owner.slot.superseded(1));
    assert_eq!(owner.slot.handled(), 100);
    // Resuming at or behind what was handled is what a producer does.
    assert!(table.open(&hello(5, 100), 3).unwrap().known);
    assert!(table.open(&hello(5, 40), 4).unwrap().known);
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_superseded_while_it_waits_learns_it_and_the_newest_gets_the_session() {
    // Issue 22: of two connections waiting behind the first, the older got the session and was
    // never told it had been superseded; the newer waited until the older ended.
    let table = SessionTable::new(8, DEFAULT_SESSION_EXPIRY);
    let h = hello(7, 0);
    let first = table.open(&h, 1).unwrap();
    let (lease, _) = table.lease(first, 1, &h).await.unwrap();
    let second = table.open(&h, 2).unwrap();
    let third = table.open(&h, 3).unwrap();
    let (t2, t3) = (table.clone(), table.clone());
    let second = tokio::spawn(async move { t2.lease(second, 2, &h).await });
    let third = tokio::spawn(async move { t3.lease(third, 3, &h).await });
    tokio::task::yield_now().await;
    drop(lease);
    assert!(matches!(second.await.unwrap(), Err(Refused::Superseded)));
    let (lease, _) = third.await.unwrap().unwrap();
    assert!(!lease.slot.superseded(3));
}

#[tokio::test(flavor = "current_thread")]
async fn a_session_loaded_from_the_store_keeps_its_secret_and_position() {
    // SPEC §10.3, §10.4.5: after a restart the store, not the first hello, says who owns it.
    let dir = std::env::temp_dir().join(format!("framepipe-table-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(crate::FileStore::open(&dir).unwrap());
    let stored = StoredSession {
        next: 50,
        secret: OWNER,
    };
    store.commit(SessionId::from_u128(9), &stored).unwrap();
    let mut table = SessionTable::new(8, DEFAULT_SESSION_EXPIRY);
    table.set_store(store);
    for (h, why) in [
        (hello_with(9, 10, Some(THIEF)), "another secret"),
        (hello(9, 60), "ahead of the stored position"),
    ] {
        let opened = table.open(&h, 1).unwrap();
        assert!(!opened.known);
        let refused = table.lease(opened, 1, &h).await.unwrap_err();
        assert!(
            matches!(refused, Refused::Denied { .. } | Refused::Ahead { .. }),
            "{why}: {refused:?}"
        );
        assert_eq!(table.len(), 0, "{why}: the refused session is not kept");
    }
    let h = hello(9, 10);
    let opened = table.open(&h, 2).unwrap();
    let (_lease, start) = table.lease(opened, 2, &h).await.unwrap();
    assert_eq!((start.next, start.handled), (50, 50));
    std::fs::remove_dir_all(&dir).unwrap();
}
