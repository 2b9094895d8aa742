//! The boundary between what records entries and what stores them.
//!
//! The registry, the HTTP service and the CLI append through a [`Journal`]: the
//! in-process [`Ledger`] when this process owns the data directory, or a
//! [`crate::writer::client::Remote`] that sends entries to the writer that does.

use crate::error::AppendError;
use crate::layout::DurableState;
use crate::ledger::Ledger;
use crate::ticket::{Receipt, Ticket};
use std::path::Path;
use std::sync::Arc;
use warden_core::entry::Event;

/// Called with an entry another process appended, once it is durable: its kind, its
/// event and its index.
pub type Observer = Arc<dyn Fn(&str, &Event, u64) + Send + Sync>;

/// Called with `true` when this process starts detecting for the ledger (before the
/// first entry it detects) and with `false` when it stops (after the last one), from a
/// thread that may block: the detectors resume their saved state, and save it.
pub type Handover = Arc<dyn Fn(bool) + Send + Sync>;

/// Where entries are appended.
///
/// Contract for every implementation:
/// - **Durable on receipt.** A ticket yields a receipt only once the entry and a signed
///   checkpoint covering it are on stable storage; the receipt's index is the entry's
///   position, its checkpoint covers that index.
/// - **Nothing reported stored that is not.** Any failure fails the ticket; an entry
///   whose ticket failed may or may not be in the ledger (a retry through the writer
///   protocol with the same request id resolves which).
/// - **Safe for concurrent use.** `submit` may be called from many threads and tasks at
///   once; entries of one caller are ordered as that caller submitted them.
pub trait Journal: Send + Sync + std::fmt::Debug {
    /// Queues an entry (blocking only for back-pressure).
    fn submit(&self, kind: &str, event: &Event) -> Result<Ticket, AppendError>;

    /// The entries file, which readers read directly.
    fn path(&self) -> &Path;

    /// The files' consistent prefix after the last durable batch, when this process
    /// writes them; `None` for a remote writer (readers then read the checkpoint-covered
    /// prefix themselves).
    fn durable_state(&self) -> Option<DurableState>;

    /// Appends one entry and waits until it is durable.
    fn append(&self, kind: &str, event: &Event) -> Result<Receipt, AppendError> {
        self.submit(kind, event)?.wait()
    }

    /// The ledger itself, when this process owns it (retention runs only there).
    fn local(&self) -> Option<&Ledger> {
        None
    }

    /// Whether this process's detectors should see the entries it appends itself. On a
    /// cluster only the node that sequences detects, so that every node's entries meet
    /// in one detector ([`Journal::observe_others`]) and an attack spread over nodes is
    /// one attack.
    fn detects_own(&self) -> bool {
        true
    }

    /// Hands `f` every entry other processes append that this one writes into the
    /// ledger (a cluster's sequencer). Nothing by default.
    fn observe_others(&self, _f: Observer) {}

    /// Hands `f` the changes of whether this process detects ([`Handover`]). A process
    /// that detects from the start (one that owns its ledger) calls `f(true)` at once,
    /// on the calling thread.
    fn on_handover(&self, f: Handover) {
        f(true);
    }
}

impl Journal for Ledger {
    fn submit(&self, kind: &str, event: &Event) -> Result<Ticket, AppendError> {
        Ledger::submit(self, kind, event)
    }

    fn path(&self) -> &Path {
        Ledger::path(self)
    }

    fn durable_state(&self) -> Option<DurableState> {
        Ledger::durable_state(self)
    }

    fn local(&self) -> Option<&Ledger> {
        Some(self)
    }
}
