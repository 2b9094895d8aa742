//! A database notification channel as a wake-up signal.
//!
//! `PgListener::try_recv` is not safe to cancel: dropped by a timeout or a `select!`
//! while a notification is being read, it loses it, and the waiter sleeps until its
//! fallback poll. Measured under load, the sequencer slept through its 20 ms fallback
//! on one wait in eight and the journal through its 25 ms poll on one in twenty, which
//! held the cluster's audited downloads to a third of what the queue could carry. So
//! one task owns each listener, receives without ever being cancelled, and turns every
//! notification into a permit of a `Notify`, whose waiting may be cancelled freely.
//! After the listener's connection is lost it wakes its waiter once (a notification
//! may have been missed meanwhile) and listens again.

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Wakes when `channel` is notified. Dropping it stops the listening task.
pub(crate) struct Signal {
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Signal {
    /// Starts listening to `channel` on `rt`.
    pub(crate) fn listen(rt: &tokio::runtime::Handle, pool: PgPool, channel: &'static str) -> Self {
        let notify = Arc::new(Notify::new());
        let n = Arc::clone(&notify);
        let task = rt.spawn(async move {
            loop {
                if let Ok(mut l) = PgListener::connect_with(&pool).await
                    && l.listen(channel).await.is_ok()
                {
                    n.notify_one();
                    while l.recv().await.is_ok() {
                        n.notify_one();
                    }
                }
                n.notify_one();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { notify, task }
    }

    /// Waits for a notification (one that came since the last wait counts), at most
    /// `limit`.
    pub(crate) async fn wait(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.notify.notified()).await;
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        self.task.abort();
    }
}
