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

    /// Writes the object at `path`.
    pub async fn put(&self, path: &str, data: Vec<u8>) -> Result<(), String> {
        self.store
            .put(&ObjPath::from(path), data.into())
            .await
            .map(|_| ())
            .map_err(|e| format!("{}: {path}: {e}", self.url))
    }

    /// Reads the object at `path`, refusing one larger than `max` bytes; `None` when
    /// there is none.
    pub async fn get(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        let r = match self.store.get(&ObjPath::from(path)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(format!("{}: {path}: {e}", self.url)),
        };
        if r.meta.size > max {
            return Err(format!(
                "{}: {path} is {} bytes, more than the {max} it may hold",
                self.url, r.meta.size
            ));
        }
        r.bytes()
            .await
            .map(|b| Some(b.to_vec()))
            .map_err(|e| format!("{}: {path}: {e}", self.url))
    }
}
