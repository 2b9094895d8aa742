//! Requests the ledger has seen, by the request id a writer-protocol client chose, so a
//! client that retries after a lost reply gets the first attempt's receipt instead of
//! a second entry.
//!
//! Contract: a request id is remembered from the moment its entry is queued. After a
//! restart, ids are recovered from the `rid` header of the last [`RECOVER_ENTRIES`]
//! entries of the active segment (only entries a checkpoint covers survive a restart,
//! so a recovered id always names a durable entry). At most [`REMEMBER`] ids are kept,
//! oldest forgotten first; clients retry within their deadline (at most
//! [`crate::writer::proto::MAX_DEADLINE_MS`]) and reconnect at once, so the window is
//! what matters around a crash. A remembered receipt keeps its batch's checkpoint note
//! (one per entry in strict mode, about 3.3 KB each), which bounds the memory.

use crate::ticket::{Outcome, Slot};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use warden_core::entry::RID_LEN;

/// A client's id for one entry.
pub type RequestId = [u8; RID_LEN];

/// Most request ids remembered.
pub const REMEMBER: usize = 100_000;
/// Entries at the end of the active segment searched for request ids on open.
pub const RECOVER_ENTRIES: usize = 100_000;

#[derive(Default)]
pub(crate) struct Requests {
    seen: HashMap<RequestId, (Arc<Slot>, usize)>,
    order: VecDeque<RequestId>,
}

impl Requests {
    /// The ticket's slot and position for `rid`, if it was seen.
    pub(crate) fn get(&self, rid: &RequestId) -> Option<(Arc<Slot>, usize)> {
        self.seen.get(rid).map(|(s, p)| (Arc::clone(s), *p))
    }

    pub(crate) fn insert(&mut self, rid: RequestId, slot: Arc<Slot>, pos: usize) {
        if self.seen.insert(rid, (slot, pos)).is_none() {
            self.order.push_back(rid);
        }
        while self.order.len() > REMEMBER {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    /// Remembers an entry found durable on open: its receipt is `index` under the
    /// checkpoint `note` of `size` entries.
    pub(crate) fn recovered(&mut self, rid: RequestId, index: u64, size: u64, note: &Arc<str>) {
        let slot = Arc::new(Slot::default());
        *crate::ticket::lock(&slot.done) = Some(Ok(Arc::new(Outcome {
            first: index,
            size,
            notes: vec![Arc::clone(note)],
        })));
        self.insert(rid, slot, 0);
    }

    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}
