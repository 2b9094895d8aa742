//! What an append returns: a ticket, then the receipt that proves the entry durable.

use crate::error::AppendError;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Proof that an entry is durable: its index and the signed checkpoint covering it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub index: u64,
    /// Size of the tree the checkpoint signs.
    pub size: u64,
    /// The signed checkpoint note.
    pub checkpoint: Arc<str>,
}

#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) first: u64,
    pub(crate) size: u64,
    /// One note for the batch, or one per entry in strict mode.
    pub(crate) notes: Vec<Arc<str>>,
}

#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) done: Mutex<Option<Result<Arc<Outcome>, AppendError>>>,
    pub(crate) cv: Condvar,
    /// Tasks awaiting a ticket of this batch; pushed and taken under `done`'s lock, so
    /// a completion never misses one.
    pub(crate) wakers: Mutex<Vec<std::task::Waker>>,
}

/// A queued append; [`Ticket::wait`] blocks until it is durable or failed.
#[derive(Debug)]
pub struct Ticket {
    pub(crate) slot: Arc<Slot>,
    pub(crate) pos: usize,
}

impl Ticket {
    /// Whether the entry's outcome is known (waiting would not block).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        lock(&self.slot.done).is_some()
    }

    /// Waits for the entry's receipt (blocking the thread; in async code, `.await` the
    /// ticket instead).
    pub fn wait(self) -> Result<Receipt, AppendError> {
        let mut g = lock(&self.slot.done);
        loop {
            if let Some(r) = g.as_ref() {
                return self.receipt(r);
            }
            g = self
                .slot
                .cv
                .wait(g)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    pub(crate) fn receipt(
        &self,
        r: &Result<Arc<Outcome>, AppendError>,
    ) -> Result<Receipt, AppendError> {
        let o = r.clone()?;
        let index = o.first + self.pos as u64;
        let (size, checkpoint) = if o.notes.len() == 1 {
            (
                o.size,
                o.notes.first().cloned().unwrap_or_else(|| Arc::from("")),
            )
        } else {
            (
                index + 1,
                o.notes
                    .get(self.pos)
                    .cloned()
                    .unwrap_or_else(|| Arc::from("")),
            )
        };
        Ok(Receipt {
            index,
            size,
            checkpoint,
        })
    }
}

/// Awaiting a ticket parks the task, not a thread, until the entry is durable.
impl std::future::Future for Ticket {
    type Output = Result<Receipt, AppendError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let g = lock(&self.slot.done);
        if let Some(r) = g.as_ref() {
            return std::task::Poll::Ready(self.receipt(r));
        }
        let mut w = lock(&self.slot.wakers);
        if !w.iter().any(|x| x.will_wake(cx.waker())) {
            w.push(cx.waker().clone());
        }
        std::task::Poll::Pending
    }
}

impl Slot {
    /// Completes the slot's tickets with `r` and wakes their waiters.
    pub(crate) fn complete(&self, r: Result<Arc<Outcome>, AppendError>) {
        let wakers = {
            let mut done = lock(&self.done);
            *done = Some(r);
            std::mem::take(&mut *lock(&self.wakers))
        };
        self.cv.notify_all();
        for w in wakers {
            w.wake();
        }
    }
}

impl Ticket {
    /// A ticket completed from elsewhere (a reply from the writer): the ticket and the
    /// slot to complete.
    pub(crate) fn detached() -> (Self, Arc<Slot>) {
        let slot = Arc::new(Slot::default());
        (
            Self {
                slot: Arc::clone(&slot),
                pos: 0,
            },
            slot,
        )
    }
}

/// Completes a ticket made by [`Ticket::completer`]: how a journal that is not this
/// crate's ledger (a cluster's shared queue) hands its receipts to callers.
#[derive(Debug)]
pub struct Completer(Arc<Slot>);

impl Completer {
    /// Completes the ticket with `r` and wakes whoever waits on it.
    pub fn complete(self, r: Result<Receipt, AppendError>) {
        self.0.complete(r.map(|rc| {
            Arc::new(Outcome {
                first: rc.index,
                size: rc.size,
                notes: vec![rc.checkpoint],
            })
        }));
    }
}

impl Ticket {
    /// A ticket completed by its [`Completer`].
    #[must_use]
    pub fn completer() -> (Self, Completer) {
        let (t, slot) = Self::detached();
        (t, Completer(slot))
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A queued append: the entry's kind and its plaintext event.
pub(crate) struct Pending {
    pub(crate) kind: Box<str>,
    pub(crate) plaintext: Vec<u8>,
    /// The writer-protocol request id, recorded in the entry's header.
    pub(crate) rid: Option<[u8; warden_core::entry::RID_LEN]>,
}
