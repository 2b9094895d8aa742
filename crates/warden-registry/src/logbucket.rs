//! Where the ledger is published as static objects (`warden_core::tiles`): a bucket
//! (`s3://bucket/prefix`, reached as [`crate::s3`] describes) or a local directory.

use crate::error::RegistryError;
use crate::s3::{S3Options, is_bucket_url, store};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use std::sync::Arc;

/// The published log's store.
#[derive(Clone)]
pub struct LogBucket {
    store: Arc<dyn ObjectStore>,
    url: String,
}

impl std::fmt::Debug for LogBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBucket").field("url", &self.url).finish()
    }
}

impl LogBucket {
    /// Opens `url`: `s3://bucket/prefix`, or a directory (created when missing).
    pub fn open(url: &str) -> Result<Self, RegistryError> {
        let store: Arc<dyn ObjectStore> = if is_bucket_url(url) {
            store(url, &S3Options::from_env())?
        } else {
            std::fs::create_dir_all(url).map_err(|e| {
                RegistryError::invalid("published log directory", format!("{url}: {e}"))
            })?;
            Arc::new(LocalFileSystem::new_with_prefix(url)?)
        };
        Ok(Self {
            store,
            url: url.to_owned(),
        })
    }

    /// Where it is.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes the object at `path`, trying again after a failure that may pass.
    pub async fn put(&self, path: &str, data: Vec<u8>) -> Result<(), String> {
        let data = bytes::Bytes::from(data);
        let mut tried = 0;
        loop {
            match self
                .store
                .put(&ObjPath::from(path), data.clone().into())
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if tried < RETRIES.len() => {
                    pause(&mut tried).await;
                    drop(e);
                }
                Err(e) => return Err(format!("{}: {path}: {e}", self.url)),
            }
        }
    }

    /// Reads the object at `path`, refusing one larger than `max` bytes; `None` when
    /// there is none. A failure that may pass (a connection dropped, a 5xx) is tried
    /// again.
    pub async fn get(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        let mut tried = 0;
        loop {
            match self.get_once(path, max).await {
                Err(Failure::Transient(_)) if tried < RETRIES.len() => pause(&mut tried).await,
                Err(Failure::Transient(e) | Failure::Final(e)) => return Err(e),
                Ok(r) => return Ok(r),
            }
        }
    }

    async fn get_once(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, Failure> {
        let r = match self.store.get(&ObjPath::from(path)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Failure::Transient(format!("{}: {path}: {e}", self.url))),
        };
        if r.meta.size > max {
            return Err(Failure::Final(format!(
                "{}: {path} is {} bytes, more than the {max} it may hold",
                self.url, r.meta.size
            )));
        }
        r.bytes()
            .await
            .map(|b| Some(b.to_vec()))
            .map_err(|e| Failure::Transient(format!("{}: {path}: {e}", self.url)))
    }
}

/// Pauses before the next try of a request that failed in a way that may pass (the
/// bucket's client retries some failures itself, not a connection dropped between
/// requests).
const RETRIES: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(50),
    std::time::Duration::from_millis(250),
    std::time::Duration::from_millis(1000),
];

async fn pause(tried: &mut usize) {
    if let Some(d) = RETRIES.get(*tried) {
        tokio::time::sleep(*d).await;
    }
    *tried += 1;
}

/// Why a read failed.
enum Failure {
    /// Possibly passing: tried again.
    Transient(String),
    /// Not worth trying again.
    Final(String),
}
