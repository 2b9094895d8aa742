//! Reading from a remote store (a bucket): bounds on silence, and a brief cache of
//! small blobs.
//!
//! A bucket answers each request after tens of milliseconds (the first byte of an S3
//! GET), far longer than the few hundred microseconds the rest of an audited download
//! takes, so a hot small file would be bound by the bucket. Its bytes are kept in
//! memory for a moment ([`RECENT_TTL`], as the local store keeps a blob's open handle)
//! and shared by the requests for it. Every read is still verified against the signed
//! digest; a blob changed in the bucket is seen once the cached bytes expire.

use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a store may go without answering (a response to a request, the next chunk
/// of a download) before the operation fails as unavailable: a stalled bucket refuses
/// the request (503) within seconds, while a long transfer that keeps moving is never
/// cut, whatever its size.
pub(crate) const STALL: Duration = Duration::from_secs(10);
/// Bound on one whole operation that moves at most one part (a part's upload, completing
/// an upload, the rename that installs a blob).
pub(crate) const PART_TIME: Duration = Duration::from_secs(120);

/// `op`, failed as unavailable when it does not finish within `limit`.
pub(crate) async fn bounded<T>(
    limit: Duration,
    op: impl std::future::Future<Output = object_store::Result<T>>,
) -> object_store::Result<T> {
    tokio::time::timeout(limit, op)
        .await
        .unwrap_or_else(|_| Err(stalled(limit)))
}

fn stalled(limit: Duration) -> object_store::Error {
    object_store::Error::Generic {
        store: "blob store",
        source: format!("no answer within {} s", limit.as_secs()).into(),
    }
}

/// `s`, ended with an unavailable error when no chunk arrives within [`STALL`].
pub(crate) fn stall_bounded(
    s: futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
) -> futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>> {
    futures_util::stream::unfold(Some(s), |s| async move {
        let mut s = s?;
        match tokio::time::timeout(STALL, s.next()).await {
            Ok(Some(item)) => Some((item, Some(s))),
            Ok(None) => None,
            Err(_) => Some((Err(stalled(STALL)), None)),
        }
    })
    .boxed()
}

/// How long a small blob's bytes read from a remote store are reused.
pub(crate) const RECENT_TTL: Duration = Duration::from_secs(1);
/// Largest blob kept in memory after a remote read.
pub(crate) const RECENT_MAX_BLOB: u64 = 1 << 20;
/// Most bytes kept in memory at once.
const RECENT_MAX_BYTES: usize = 64 << 20;

/// Small blobs recently read from a remote store, with the time each was read.
#[derive(Debug, Default)]
pub(crate) struct Recent(Mutex<HashMap<String, (Bytes, Instant)>>);

impl Recent {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Bytes, Instant)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a blob of `size` bytes is kept after it is read.
    pub(crate) fn keeps(&self, size: u64) -> bool {
        size <= RECENT_MAX_BLOB
    }

    /// The bytes of `digest` if they were read less than [`RECENT_TTL`] ago.
    pub(crate) fn get(&self, digest: &str) -> Option<Bytes> {
        let map = self.map();
        map.get(digest)
            .filter(|(_, at)| at.elapsed() < RECENT_TTL)
            .map(|(b, _)| b.clone())
    }

    /// Reads all of `s` (a blob of `size` bytes) and keeps it, room permitting.
    pub(crate) async fn fill(
        &self,
        digest: &str,
        mut s: futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>,
        size: u64,
    ) -> object_store::Result<Bytes> {
        let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        while let Some(chunk) = s.next().await {
            buf.extend_from_slice(&chunk?);
            // A blob longer than announced is not read further nor kept: what was read
            // already fails verification (it is longer than the signed size).
            if buf.len() as u64 > size {
                return Ok(Bytes::from(buf));
            }
        }
        let bytes = Bytes::from(buf);
        let mut map = self.map();
        map.retain(|_, (_, at)| at.elapsed() < RECENT_TTL);
        let held: usize = map.values().map(|(b, _)| b.len()).sum();
        if held + bytes.len() <= RECENT_MAX_BYTES {
            map.insert(digest.to_owned(), (bytes.clone(), Instant::now()));
        }
        Ok(bytes)
    }

    /// Drops `digest`'s bytes (its blob was just stored again).
    pub(crate) fn forget(&self, digest: &str) {
        self.map().remove(digest);
    }
}
