//! The cluster's ledger on a real PostgreSQL server (`scripts/postgres`, loopback):
//! several nodes append at once and every entry is written exactly once; a sequencer
//! whose lease was taken over can never publish; the ledger's bytes in the database
//! are one clean sequence that `warden verify`'s driver accepts; a node's local copy
//! is cut back to the database after a crash.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

mod common;
#[path = "../../warden-store/tests/common/mod.rs"]
mod store;

use common::pg::{TestDb, fresh_database};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_cluster::chunks::{self, Append, CHECKPOINTS, ENTRIES};
use warden_cluster::lease::{self, SEQUENCER};
use warden_cluster::node::{ClusterNode, NodeOptions, connect};
use warden_cluster::{ClusterError, mirror, queue, schema};
use warden_store::journal::Journal;
use warden_store::keys;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn node(db: &TestDb, k: &Arc<store::Keys>, dir: &Path, name: &str, ttl: Duration) -> ClusterNode {
    let k2 = Arc::clone(k);
    ClusterNode::start(NodeOptions {
        database_url: db.url.clone(),
        log: dir.join(name).join("model_access.jsonl"),
        name: name.into(),
        lease_ttl: ttl,
        open: Arc::new(move || {
            let root = keys::unlock_root(&k2.root_key, b"")?;
            Ok((root, store::options(&k2)))
        }),
    })
    .unwrap()
}

/// Sets its flag when dropped, a panic's unwinding included.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t.elapsed()
}

/// Every request id in the ledger at `log` (decrypted), with how often it occurs.
fn ids_in(k: &store::Keys, log: &Path) -> Vec<String> {
    store::request_ids(k, log).into_iter().flatten().collect()
}

fn verified(k: &store::Keys, log: &Path) {
    let report = store::verify(k, log);
    assert!(report.is_clean(), "verify failed: {:?}", report.findings);
    assert!(
        report.pending.is_none(),
        "entries no checkpoint covers: {:?}",
        report.pending
    );
    assert!(report.decrypted > 0);
}

#[test]
fn fencing_token_refuses_a_deposed_sequencer() {
    let db = fresh_database();
    let rt = rt();
    rt.block_on(async {
        let pool = connect(&db.url).await.unwrap();
        schema::ensure(&pool).await.unwrap();
        let ttl = Duration::from_secs(30);
        let a = lease::acquire(&pool, SEQUENCER, "a", ttl)
            .await
            .unwrap()
            .unwrap();
        assert!(
            lease::acquire(&pool, SEQUENCER, "b", ttl)
                .await
                .unwrap()
                .is_none(),
            "a held lease was given to a second node"
        );
        let put = |off: u64, data: &'static [u8]| {
            [Append {
                stream: ENTRIES,
                offset: off,
                data,
            }]
        };
        chunks::commit(&pool, &a, &put(0, b"first\n"))
            .await
            .unwrap();
        // `a` stalls past its expiry (a pause, a partition) and `b` takes over.
        sqlx::query(
            "UPDATE cluster_lease SET expires_at = clock_timestamp() - interval '1 second'",
        )
        .execute(&pool)
        .await
        .unwrap();
        let b = lease::acquire(&pool, SEQUENCER, "b", ttl)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            b.token,
            a.token + 1,
            "a takeover must raise the fencing token"
        );
        let r = chunks::commit(&pool, &a, &put(6, b"from-a\n")).await;
        assert!(
            matches!(r, Err(ClusterError::Fenced { token }) if token == a.token),
            "the deposed sequencer published: {r:?}"
        );
        assert!(
            !lease::renew(&pool, &a, ttl).await.unwrap(),
            "a lost lease was renewed"
        );
        chunks::commit(&pool, &b, &put(6, b"from-b\n"))
            .await
            .unwrap();
        // A second write at a written offset (a fork) is refused even to the holder.
        let fork = chunks::commit(&pool, &b, &put(6, b"other!\n")).await;
        assert!(fork.is_err(), "two chunks at one offset were stored");
        assert_eq!(chunks::length(&pool, ENTRIES).await.unwrap(), 13);
        let fences: Vec<i64> = sqlx::query_scalar("SELECT fence FROM ledger_chunks ORDER BY off")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(fences, vec![a.token, b.token]);
    });
}

#[test]
fn three_nodes_write_one_ledger_exactly_once() {
    let db = fresh_database();
    let k = Arc::new(store::keys());
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(3);
    let nodes: Vec<ClusterNode> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| node(&db, &k, dir.path(), n, ttl))
        .collect();
    let per = 300;
    let receipts: Vec<Vec<warden_store::ledger::Receipt>> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                let j = node.journal();
                s.spawn(move || {
                    // Submitted in bursts, so batches from three nodes interleave.
                    let tickets: Vec<_> = (0..per)
                        .map(|i| {
                            j.submit("model.access", &store::event(n * 1000 + i))
                                .unwrap()
                        })
                        .collect();
                    tickets.into_iter().map(|t| t.wait().unwrap()).collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sequencers = nodes
        .iter()
        .filter(|n| n.sequencer_token().is_some())
        .count();
    assert_eq!(sequencers, 1, "exactly one node sequences");
    let indexes: HashSet<u64> = receipts.iter().flatten().map(|r| r.index).collect();
    assert_eq!(indexes.len(), 3 * per, "two receipts share an index");
    // Every node's copy catches up and is the same verified ledger.
    let logs: Vec<PathBuf> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| dir.path().join(n).join("model_access.jsonl"))
        .collect();
    let max = receipts.iter().flatten().map(|r| r.size).max().unwrap();
    for (node, log) in nodes.iter().zip(&logs) {
        node.sync().unwrap();
        verified(&k, log);
        let ids = ids_in(&k, log);
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(ids.len(), 3 * per, "an entry is missing or written twice");
        assert_eq!(unique.len(), 3 * per);
        let present = store::request_ids(&k, log).len() as u64;
        assert!(present >= max, "a copy lacks acknowledged entries");
    }
    assert_eq!(
        std::fs::read(&logs[0]).unwrap(),
        std::fs::read(&logs[2]).unwrap()
    );
    for n in nodes {
        n.stop();
    }
}

#[test]
fn lease_taken_over_mid_load_loses_nothing_and_forks_nothing() {
    let db = fresh_database();
    let k = Arc::new(store::keys());
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(2);
    let a = node(&db, &k, dir.path(), "a", ttl);
    wait_for("a sequencer", Duration::from_secs(10), || {
        a.sequencer_token().is_some()
    });
    let b = node(&db, &k, dir.path(), "b", ttl);
    let first = a.sequencer_token().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (acked, failover) = std::thread::scope(|s| {
        // A failed check below must stop the writers too: the scope waits for them
        // before it passes the panic on, and they would append for ever.
        let _stop = StopOnDrop(&stop);
        let writers: Vec<_> = [&a, &b]
            .iter()
            .enumerate()
            .map(|(w, n)| {
                let j = n.journal();
                let stop = &stop;
                s.spawn(move || {
                    let mut acked = Vec::new();
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let id = w * 1_000_000 + i;
                        i += 1;
                        if j.append("model.access", &store::event(id)).is_ok() {
                            acked.push(format!("req-{id}"));
                        }
                    }
                    acked
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        // The sequencer's lease lapses under it, as after a long pause.
        // One runtime for the connection and its query: a pool's connections die with
        // the runtime that made them.
        rt().block_on(async {
            let pool = connect(&db.url).await.unwrap();
            sqlx::query(
                "UPDATE cluster_lease SET expires_at = clock_timestamp() - interval '1 second'",
            )
            .execute(&pool)
            .await
            .unwrap();
        });
        let t = Instant::now();
        wait_for("a new sequencer", Duration::from_secs(10), || {
            [&a, &b]
                .iter()
                .any(|n| n.sequencer_token().is_some_and(|t| t > first))
        });
        let failover = t.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let acked: Vec<String> = writers
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        (acked, failover)
    });
    eprintln!(
        "failover after the lease lapsed: {failover:?}; {} entries acknowledged",
        acked.len()
    );
    assert!(!acked.is_empty());
    let log = dir.path().join("a").join("model_access.jsonl");
    a.sync().unwrap();
    verified(&k, &log);
    let ids = ids_in(&k, &log);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an entry was written twice");
    for id in &acked {
        assert!(
            unique.contains(id),
            "acknowledged entry {id} is not in the ledger"
        );
    }
    // Chunks are contiguous and fenced by tokens that never go back.
    let rows: Vec<(i16, i64, i32, i64)> = rt()
        .block_on(async {
            let pool = connect(&db.url).await.unwrap();
            sqlx::query_as(
                "SELECT stream, off, length(data), fence FROM ledger_chunks ORDER BY stream, off",
            )
            .fetch_all(&pool)
            .await
        })
        .unwrap();
    for s in [ENTRIES, CHECKPOINTS] {
        let mut end = 0i64;
        let mut fence = 0i64;
        for (_, off, len, f) in rows.iter().filter(|r| r.0 == s) {
            assert_eq!(*off, end, "stream {s} has a gap or overlap");
            assert!(
                *f >= fence,
                "a deposed sequencer's chunk follows its successor's"
            );
            end = off + i64::from(*len);
            fence = *f;
        }
    }
    a.stop();
    b.stop();
}

/// A database holding 20 entries, written by node "a" (stopped) under `dir`.
fn twenty_entries_by_a_stopped_node() -> (TestDb, Arc<store::Keys>, tempfile::TempDir) {
    let db = fresh_database();
    let k = Arc::new(store::keys());
    let dir = tempfile::tempdir().unwrap();
    let a = node(&db, &k, dir.path(), "a", Duration::from_secs(3));
    let j = a.journal();
    for i in 0..20 {
        j.append("model.access", &store::event(i)).unwrap();
    }
    a.stop();
    (db, k, dir)
}

#[test]
fn a_local_copy_with_an_uncommitted_tail_is_cut_back() {
    let (db, k, dir) = twenty_entries_by_a_stopped_node();
    let log = dir.path().join("a").join("model_access.jsonl");
    let before = std::fs::read(&log).unwrap();
    // Bytes the database never received, as a crash between write and commit leaves.
    let mut torn = before.clone();
    torn.extend_from_slice(b"{\"v\":1,\"torn\":");
    std::fs::write(&log, &torn).unwrap();
    let rt = rt();
    let pool = rt.block_on(connect(&db.url)).unwrap();
    let s = rt
        .block_on(mirror::sync(&pool, &log, None))
        .unwrap()
        .unwrap();
    assert_eq!(s.entries, before.len() as u64);
    assert_eq!(std::fs::read(&log).unwrap(), before, "the tail was not cut");
    // A copy that differs inside a chunk (another node's bytes) is replaced too.
    let mut wrong = before.clone();
    let at = wrong.len() - 10;
    wrong[at] ^= 1;
    std::fs::write(&log, &wrong).unwrap();
    rt.block_on(mirror::sync(&pool, &log, None)).unwrap();
    assert_eq!(
        std::fs::read(&log).unwrap(),
        before,
        "a differing chunk was kept"
    );
    verified(&k, &log);
}

/// `sync` returned at once, having done nothing, whenever the copy's lock was held —
/// also when its holder was the node's own follower thread halfway through a pull, so
/// a caller then read a copy whose entries had arrived and whose checkpoints file had
/// not (`three_nodes_write_one_ledger_exactly_once` failed 1 run in 6 on it). A
/// follower mid-pull is now waited for; only a sequencer's open ledger is left to keep
/// the copy itself.
#[test]
fn sync_during_a_followers_pull_waits_for_a_complete_copy() {
    let (db, k, dir) = twenty_entries_by_a_stopped_node();
    let log = dir.path().join("b").join("model_access.jsonl");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let open = |p: PathBuf| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(p)
            .unwrap()
    };
    // A follower mid-pull: both locks held, the entries there, no checkpoints yet.
    let (queue, lock) = (
        open(log.with_extension("sync")),
        open(log.with_extension("lock")),
    );
    queue.lock().unwrap();
    lock.lock().unwrap();
    std::fs::copy(dir.path().join("a").join("model_access.jsonl"), &log).unwrap();
    let rt = rt();
    let pool = rt.block_on(connect(&db.url)).unwrap();
    let (done, waited) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let r = rt.block_on(mirror::sync(&pool, &log, None));
            done.send(r).unwrap();
        });
        assert!(
            waited.recv_timeout(Duration::from_millis(500)).is_err(),
            "sync returned while a follower was mid-pull"
        );
        drop(lock);
        drop(queue);
        let synced = waited.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(synced.unwrap().is_some(), "the copy was not brought up");
    });
    verified(&k, &log);
    // A sequencer's open ledger holds the copy's lock alone, for as long as it runs:
    // it keeps the copy itself, and is not waited for.
    let lock = open(log.with_extension("lock"));
    lock.lock().unwrap();
    let t = Instant::now();
    assert!(
        rt.block_on(mirror::sync(&pool, &log, None))
            .unwrap()
            .is_none()
    );
    assert!(t.elapsed() < Duration::from_secs(5));
}

/// The prune the sequencer runs every minute matched each checkpoint note against
/// every batch's sizes: 42 s with 48,000 of each (one entry per batch), a stall of the
/// whole cluster's appends. It now goes by age: a note older than the batches kept is
/// named by none of them. The receipts of the batches kept still carry their notes.
#[test]
fn pruning_notes_goes_by_age_so_small_batches_do_not_stall_the_sequencer() {
    let db = fresh_database();
    rt().block_on(async {
        let pool = connect(&db.url).await.unwrap();
        schema::ensure(&pool).await.unwrap();
        // 3,000 one-entry batches and their notes; the first 2,000 twenty minutes old.
        for q in [
            "INSERT INTO ledger_batches (n, done, idx, sizes, refused, created_at)
             SELECT 1, true, ARRAY[i - 1], ARRAY[i], ARRAY[NULL::text],
                    now() - CASE WHEN i <= 2000 THEN interval '20 minutes' ELSE '0' END
             FROM generate_series(1, 3000) i",
            "INSERT INTO ledger_notes (size, note, created_at)
             SELECT i, 'note ' || i,
                    now() - CASE WHEN i <= 2000 THEN interval '20 minutes' ELSE '0' END
             FROM generate_series(1, 3000) i",
        ] {
            sqlx::query(q).execute(&pool).await.unwrap();
        }
        let deleted = queue::prune(&pool, Duration::from_secs(600)).await.unwrap();
        assert_eq!(deleted, 2000, "the old batches go");
        let notes: Vec<i64> = sqlx::query_scalar("SELECT size FROM ledger_notes ORDER BY size")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(
            notes,
            (2001..=3000).collect::<Vec<i64>>(),
            "and their notes"
        );
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM ledger_batches")
            .fetch_all(&pool)
            .await
            .unwrap();
        for (_, outcomes) in queue::outcomes(&pool, &ids).await.unwrap() {
            for o in outcomes {
                match o {
                    queue::Outcome::Written { size, note, .. } => {
                        assert_eq!(note, format!("note {size}"), "a kept receipt lost its note");
                    }
                    o => panic!("{o:?}"),
                }
            }
        }
        // Once everything is old, the newest note stays (the next receipt may name it).
        sqlx::query("UPDATE ledger_notes SET created_at = now() - interval '1 hour'")
            .execute(&pool)
            .await
            .unwrap();
        queue::prune(&pool, Duration::from_secs(600)).await.unwrap();
        let left: Vec<i64> = sqlx::query_scalar("SELECT size FROM ledger_notes")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(left, [3000]);
    });
}

#[test]
fn receipts_lost_with_the_sequencer_are_not_written_twice() {
    let db = fresh_database();
    let k = Arc::new(store::keys());
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let pool = rt.block_on(connect(&db.url)).unwrap();
    rt.block_on(schema::ensure(&pool)).unwrap();
    let entries: Vec<queue::NewEntry> = (0..50u8)
        .map(|i| queue::NewEntry {
            rid: [i; 16],
            kind: "model.access".into(),
            plaintext: store::event(usize::from(i)).to_plaintext().unwrap(),
        })
        .collect();
    let id = rt.block_on(queue::add(&pool, &entries)).unwrap();
    let written = |pool: &sqlx::PgPool| -> Option<Vec<u64>> {
        let found = rt.block_on(queue::outcomes(pool, &[id])).unwrap();
        let (_, outs) = found.into_iter().next()?;
        Some(
            outs.into_iter()
                .map(|o| match o {
                    queue::Outcome::Written { index, .. } => index,
                    queue::Outcome::Refused(r) => panic!("refused: {r}"),
                })
                .collect(),
        )
    };
    let a = node(&db, &k, dir.path(), "a", Duration::from_secs(3));
    wait_for("the queue written", Duration::from_secs(10), || {
        written(&pool).is_some()
    });
    let first = written(&pool).unwrap();
    assert_eq!(first.len(), entries.len());
    a.stop();
    // The sequencer died after committing the batch but before recording its outcomes:
    // the batch looks unwritten again, entries and all.
    rt.block_on(
        sqlx::query(
            "UPDATE ledger_batches SET done = false, idx = NULL, sizes = NULL, refused = NULL, entries = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(queue::encode(&entries).unwrap())
        .execute(&pool),
    )
    .unwrap();
    let b = node(&db, &k, dir.path(), "b", Duration::from_secs(3));
    wait_for("the queue written again", Duration::from_secs(10), || {
        written(&pool).is_some()
    });
    assert_eq!(
        written(&pool).unwrap(),
        first,
        "a resubmitted entry got a new index"
    );
    b.sync().unwrap();
    let log = dir.path().join("b").join("model_access.jsonl");
    verified(&k, &log);
    assert_eq!(
        ids_in(&k, &log).len(),
        entries.len(),
        "an entry was written twice"
    );
    b.stop();
}

#[test]
fn a_batch_committed_after_a_later_one_is_still_written() {
    let db = fresh_database();
    let k = Arc::new(store::keys());
    let dir = tempfile::tempdir().unwrap();
    let a = node(&db, &k, dir.path(), "a", Duration::from_secs(3));
    wait_for("a sequencer", Duration::from_secs(10), || {
        a.sequencer_token().is_some()
    });
    let rt = rt();
    let pool = rt.block_on(connect(&db.url)).unwrap();
    let batch = |i: u8| {
        queue::encode(&[queue::NewEntry {
            rid: [i; 16],
            kind: "model.access".into(),
            plaintext: store::event(usize::from(i)).to_plaintext().unwrap(),
        }])
        .unwrap()
    };
    let insert = "INSERT INTO ledger_batches (entries, n) VALUES ($1, 1) RETURNING id";
    // A node takes an id, and commits only after another node's later batch was written.
    let mut slow = rt.block_on(pool.begin()).unwrap();
    let early: i64 = rt
        .block_on(
            sqlx::query_scalar(insert)
                .bind(batch(1))
                .fetch_one(&mut *slow),
        )
        .unwrap();
    let late = rt.block_on(queue::add(
        &pool,
        &[queue::NewEntry {
            rid: [2; 16],
            kind: "model.access".into(),
            plaintext: store::event(2).to_plaintext().unwrap(),
        }],
    ));
    let late = late.unwrap();
    assert!(late > early);
    let done = |id: i64| {
        !rt.block_on(queue::outcomes(&pool, &[id]))
            .unwrap()
            .is_empty()
    };
    wait_for("the later batch written", Duration::from_secs(10), || {
        done(late)
    });
    rt.block_on(slow.commit()).unwrap();
    wait_for("the earlier batch written", Duration::from_secs(10), || {
        done(early)
    });
    a.stop();
}
