//! The sequencer's files on a cluster: each write goes to the node's local copy and to
//! an outbox; syncing the checkpoints file commits the outbox (the batch's entries and
//! the checkpoint records covering them) to the database in one fenced transaction
//! ([`crate::chunks::commit`]). The ledger acknowledges nothing before that commit, so
//! an acknowledged entry is in the database; a failed commit fails the batch, the ledger
//! rolls its files back and stops, and the node gives up its role.

use crate::chunks::{Append, CHECKPOINTS, ENTRIES, commit};
use crate::lease::Lease;
use crate::mirror::Synced;
use sqlx::PgPool;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use warden_store::durable::AppendFile;

/// Longest a commit may take before the batch fails (the lease's holder must not wait
/// on a database that stopped answering past its own expiry).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes written since the last commit, per stream, and where each stream's committed
/// part ends.
pub(crate) struct Outbox {
    rt: Handle,
    pool: PgPool,
    lease: Lease,
    /// Logical offset of the local entries file's first byte ([`crate::base`]).
    start: u64,
    committed: [u64; 2],
    pending: [Vec<u8>; 2],
}

impl Outbox {
    /// An outbox for the local copy just synced with the database (`synced`).
    pub(crate) fn new(rt: Handle, pool: PgPool, lease: Lease, synced: Synced) -> Self {
        Self {
            rt,
            pool,
            lease,
            start: synced.start,
            committed: [synced.entries, synced.checkpoints],
            pending: [Vec::new(), Vec::new()],
        }
    }

    fn commit(&mut self) -> io::Result<()> {
        let [e, c] = &self.pending;
        if e.is_empty() && c.is_empty() {
            return Ok(());
        }
        let appends = [
            Append {
                stream: ENTRIES,
                offset: self.start + self.committed[0],
                data: e,
            },
            Append {
                stream: CHECKPOINTS,
                offset: self.committed[1],
                data: c,
            },
        ];
        let fut = commit(&self.pool, &self.lease, &appends);
        // The timer is made inside the runtime (the sequencer's thread is not in one).
        match self
            .rt
            .block_on(async { tokio::time::timeout(COMMIT_TIMEOUT, fut).await })
        {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(io::Error::other(err.to_string())),
            Err(_) => {
                return Err(io::Error::other(format!(
                    "the cluster database did not commit the batch within {} s",
                    COMMIT_TIMEOUT.as_secs()
                )));
            }
        }
        for (at, buf) in self.committed.iter_mut().zip(self.pending.iter_mut()) {
            *at += buf.len() as u64;
            buf.clear();
        }
        Ok(())
    }
}

/// One of the sequencer's two files.
pub(crate) struct TeeFile {
    local: Box<dyn AppendFile>,
    outbox: Arc<Mutex<Outbox>>,
    /// 0 for the entries file, 1 for the checkpoints file.
    stream: usize,
}

impl TeeFile {
    pub(crate) fn pair(
        entries: Box<dyn AppendFile>,
        checkpoints: Box<dyn AppendFile>,
        outbox: Outbox,
    ) -> (Box<dyn AppendFile>, Box<dyn AppendFile>) {
        let outbox = Arc::new(Mutex::new(outbox));
        (
            Box::new(Self {
                local: entries,
                outbox: Arc::clone(&outbox),
                stream: 0,
            }),
            Box::new(Self {
                local: checkpoints,
                outbox,
                stream: 1,
            }),
        )
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl AppendFile for TeeFile {
    fn len(&self) -> u64 {
        self.local.len()
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.local.append(data)?;
        let stream = self.stream;
        if let Some(buf) = self.outbox().pending.get_mut(stream) {
            buf.extend_from_slice(data);
        }
        Ok(())
    }

    /// The entries become durable with the checkpoint that follows them: syncing the
    /// entries file commits nothing (a commit of entries alone would store entries no
    /// checkpoint covers); syncing the checkpoints file commits both.
    fn sync(&mut self) -> io::Result<()> {
        if self.stream == 0 {
            return Ok(());
        }
        self.outbox().commit()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let stream = self.stream;
        let outbox = Arc::clone(&self.outbox);
        let mut ob = outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let committed = ob.committed.get(stream).copied().unwrap_or(0);
        if len < committed {
            return Err(io::Error::other(
                "refusing to cut ledger bytes already committed to the cluster database",
            ));
        }
        self.local.truncate(len)?;
        if let Some(buf) = ob.pending.get_mut(stream) {
            buf.truncate(usize::try_from(len - committed).unwrap_or(usize::MAX));
        }
        Ok(())
    }
}
