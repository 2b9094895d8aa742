//! Rate-limit budgets shared through the cluster's database (`warden_cluster::budgets`)
//! on a real PostgreSQL server: takes racing from several connections grant the burst
//! and not one cell more, a spent budget names the wait, and cells given back are
//! granted again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::pg::fresh_database;
use std::time::Duration;
use warden_cluster::budgets::{self, Taken};
use warden_cluster::node::connect;
use warden_cluster::schema;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn racing_takes_grant_the_burst_exactly_and_then_name_the_wait() {
    let db = fresh_database();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let first = connect(&db.url).await.unwrap();
        schema::ensure(&first).await.unwrap();
        // Three "nodes", each with its own pool, eight takes in flight each: a budget of
        // 50 failures a minute taken one cell at a time, as failed logins are.
        let mut tasks = Vec::new();
        // Every cell is granted after this instant, so the last one frees no earlier
        // than one period after it, however slowly a loaded machine runs the takes.
        let started = std::time::Instant::now();
        for _ in 0..3 {
            let pool = connect(&db.url).await.unwrap();
            for _ in 0..8 {
                let pool = pool.clone();
                tasks.push(tokio::spawn(async move {
                    let mut got = 0u32;
                    for _ in 0..10 {
                        match budgets::take(&pool, "auth:203.0.113.0", MINUTE / 50, 50, 1, 0)
                            .await
                            .unwrap()
                        {
                            Taken::Cells(n) => got += n,
                            Taken::Wait(_) => {}
                        }
                    }
                    got
                }));
            }
        }
        let mut granted = 0;
        for t in tasks {
            granted += t.await.unwrap();
        }
        assert_eq!(granted, 50, "240 takes raced for a burst of 50");
        match budgets::take(&first, "auth:203.0.113.0", MINUTE / 50, 50, 1, 0)
            .await
            .unwrap()
        {
            Taken::Wait(w) => {
                let asked = started.elapsed();
                assert!(
                    w + asked + Duration::from_millis(100) >= MINUTE / 50 && w <= MINUTE / 50,
                    "the next cell frees one period after the last: {w:?}, {asked:?} after the first take"
                );
            }
            t => panic!("a spent budget granted {t:?}"),
        }
        // Chunks: a burst of 100 taken 16 at a time ends with the 4 left.
        let mut sizes = Vec::new();
        while let Taken::Cells(n) = budgets::take(&first, "ip:x", MINUTE, 100, 16, 0)
            .await
            .unwrap()
        {
            sizes.push(n);
        }
        assert_eq!(sizes, [16, 16, 16, 16, 16, 16, 4]);
        // Cells given back are free again, and only those.
        assert_eq!(
            budgets::take(&first, "ip:x", MINUTE, 100, 16, 5)
                .await
                .unwrap(),
            Taken::Cells(5)
        );
        assert!(matches!(
            budgets::take(&first, "ip:x", MINUTE, 100, 16, 0)
                .await
                .unwrap(),
            Taken::Wait(_)
        ));
        // Nothing here has been full for an hour.
        assert_eq!(budgets::tidy(&first).await.unwrap(), 0);
    });
}
