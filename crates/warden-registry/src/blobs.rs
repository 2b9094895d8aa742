//! Content-addressed artifact storage through `object_store`: a blob's key is
//! `sha256/<2 hex>/<64 hex>` of its content, so identical files are stored once and a
//! blob's name states what its bytes must hash to.
//!
//! The local filesystem is the default. For it, a new blob is made durable (file and
//! directory fsync) before registration records it, which `object_store` itself does not
//! do; cloud stores acknowledge writes durably by contract.

use crate::error::RegistryError;
use crate::remote::{PART_TIME, Recent, STALL, bounded, stall_bounded};
use aws_lc_rs::digest;
use futures_util::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::{GetResultPayload, ObjectStore, WriteMultipart};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use warden_core::hex;

/// Read chunk size.
pub const CHUNK: usize = 4 << 20;
/// Part size of a multipart upload (S3 refuses parts under 5 MiB but the last).
pub const PART: usize = 8 << 20;

/// The artifact store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// Set for the local filesystem store: its root directory.
    local: Option<PathBuf>,
    /// Recently opened local blobs, shared by concurrent readers.
    open: Arc<OpenFiles>,
    /// Small blobs recently read from a remote store, shared the same way.
    recent: Arc<Recent>,
}

/// How long an opened local blob is reused before it is opened again by name. Reads
/// are positional on the shared handle, so a blob changed in place is seen (and fails
/// verification) at once; a blob replaced by a new file is read from the file it
/// replaced, whose bytes are still verified, until the handle is refreshed.
const OPEN_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// Most local blob handles kept open.
const OPEN_MAX: usize = 1024;
/// Open handles of local blobs by digest, each with the time it was opened.
#[derive(Debug, Default)]
struct OpenFiles(
    std::sync::Mutex<std::collections::HashMap<String, (Arc<std::fs::File>, Instant)>>,
);

impl OpenFiles {
    fn forget(&self, digest: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(digest);
    }

    fn get(&self, digest: &str, path: &Path) -> std::io::Result<Arc<std::fs::File>> {
        let now = Instant::now();
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((f, at)) = map.get(digest)
            && now.duration_since(*at) < OPEN_TTL
        {
            return Ok(Arc::clone(f));
        }
        // Opened under the lock: concurrent first requests for one blob open it once.
        let f = Arc::new(std::fs::File::open(path)?);
        if map.len() >= OPEN_MAX {
            map.retain(|_, (_, at)| now.duration_since(*at) < OPEN_TTL);
            if map.len() >= OPEN_MAX {
                map.clear();
            }
        }
        map.insert(digest.to_owned(), (Arc::clone(&f), now));
        Ok(f)
    }
}

/// A reader over a (possibly shared) blob file that reads at its own offset.
#[derive(Debug)]
pub(crate) struct BlobFile {
    file: Arc<std::fs::File>,
    pos: u64,
    /// The blob's path in the local store, to open a handle of its own.
    path: Option<PathBuf>,
}

impl BlobFile {
    fn new(file: Arc<std::fs::File>, path: Option<PathBuf>) -> Self {
        Self { file, pos: 0, path }
    }

    /// A handle of this reader's own, read sequentially: std reads a `File` straight
    /// into a vector's spare capacity, where a positional reader's bytes would first
    /// be zeroed.
    pub(crate) fn into_own(self) -> std::io::Result<std::fs::File> {
        match self.path {
            Some(p) => std::fs::File::open(p),
            None => Arc::try_unwrap(self.file).or_else(|f| f.try_clone()),
        }
    }
}

impl Read for BlobFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::os::unix::fs::FileExt::read_at(&*self.file, buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A blob as stored: digest (hex) and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: String,
    pub size: u64,
}

/// Where the bytes of one blob come from when read.
pub(crate) enum BlobReader {
    /// A local file (the fast path: large reads, no copies through the runtime).
    File(BlobFile),
    /// Any other store's byte stream.
    Stream(futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>),
}

impl BlobStore {
    /// A store on the local filesystem under `root` (created if missing).
    pub fn local(root: &Path) -> Result<Self, RegistryError> {
        crate::db::private_dir(root)?;
        let fs = LocalFileSystem::new_with_prefix(root)?;
        Ok(Self {
            store: Arc::new(fs),
            local: Some(root.to_path_buf()),
            open: Arc::default(),
            recent: Arc::default(),
        })
    }

    /// The store `blobs` names: a directory (relative paths resolved by `resolve`), or
    /// an S3-compatible bucket `s3://bucket/prefix` reached as the AWS variables say.
    pub fn configured(
        blobs: &Path,
        resolve: impl FnOnce(&Path) -> PathBuf,
    ) -> Result<Self, RegistryError> {
        match blobs.to_str() {
            Some(url) if crate::s3::is_bucket_url(url) => Ok(Self::with_store(crate::s3::store(
                url,
                &crate::s3::S3Options::from_env(),
            )?)),
            _ => Self::local(&resolve(blobs)),
        }
    }

    /// Any `object_store` backend (S3, GCS, Azure, in-memory).
    #[must_use]
    pub fn with_store(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            local: None,
            open: Arc::default(),
            recent: Arc::default(),
        }
    }

    /// The key of the blob with hex digest `digest`.
    #[must_use]
    pub fn key(digest: &str) -> ObjPath {
        let prefix = digest.get(..2).unwrap_or("00");
        ObjPath::from(format!("sha256/{prefix}/{digest}"))
    }

    /// The local file of a blob, when the store is local (tests tamper with it).
    #[must_use]
    pub fn local_path(&self, digest: &str) -> Option<PathBuf> {
        self.local
            .as_ref()
            .map(|r| r.join(Self::key(digest).as_ref()))
    }

    /// Uploads the file at `path` while hashing it, and stores it under its digest.
    /// `progress` is called with the number of bytes read after each chunk.
    pub async fn put_file(
        &self,
        path: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<StoredBlob, RegistryError> {
        let mut file = std::fs::File::open(path).map_err(RegistryError::io("open", path))?;
        let mut w = self.writer().await?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    w.abort().await;
                    return Err(RegistryError::io("read", path)(e));
                }
            };
            w.write(buf.get(..n).unwrap_or_default()).await?;
            progress(w.size());
        }
        w.finish(None).await
    }

    /// A writer that stages a new blob, hashing what it is given; `finish` installs it
    /// under its digest.
    pub async fn writer(&self) -> Result<BlobWriter, RegistryError> {
        let staging = ObjPath::from(format!("staging/{}", random_name()?));
        let upload = bounded(STALL, self.store.put_multipart(&staging)).await?;
        Ok(BlobWriter {
            store: self.clone(),
            staging,
            w: WriteMultipart::new_with_chunk_size(upload, PART),
            ctx: digest::Context::new(&digest::SHA256),
            size: 0,
        })
    }

    fn make_durable(&self, digest: &str) -> Result<(), RegistryError> {
        let Some(p) = self.local_path(digest) else {
            return Ok(());
        };
        let f = std::fs::File::open(&p).map_err(RegistryError::io("open", &p))?;
        f.sync_all().map_err(RegistryError::io("fsync", &p))?;
        if let Some(dir) = p.parent() {
            warden_store::durable::sync_dir(dir).map_err(RegistryError::io("fsync", dir))?;
        }
        Ok(())
    }

    /// Opens a blob for reading. Crate-private: bytes leave the registry only through
    /// the audited load path.
    pub(crate) async fn open(&self, digest: &str) -> Result<BlobReader, RegistryError> {
        // The local store's file is opened directly (no hop through a blocking thread)
        // and its handle reused for a moment by the next requests for the same blob.
        if let Some(p) = self.local_path(digest) {
            return self
                .open
                .get(digest, &p)
                .map(|f| BlobReader::File(BlobFile::new(f, Some(p.clone()))))
                .map_err(RegistryError::io("open", &p));
        }
        if let Some(bytes) = self.recent.get(digest) {
            return Ok(BlobReader::Stream(
                futures_util::stream::once(async move { Ok(bytes) }).boxed(),
            ));
        }
        let r = bounded(STALL, self.store.get(&Self::key(digest))).await?;
        let size = r.meta.size;
        Ok(match r.payload {
            GetResultPayload::File(f, _) => BlobReader::File(BlobFile::new(Arc::new(f), None)),
            GetResultPayload::Stream(s) if self.recent.keeps(size) => {
                let bytes = self.recent.fill(digest, stall_bounded(s), size).await?;
                BlobReader::Stream(futures_util::stream::once(async move { Ok(bytes) }).boxed())
            }
            GetResultPayload::Stream(s) => BlobReader::Stream(stall_bounded(s)),
        })
    }

    /// The size of a stored blob, or `None` when there is none.
    pub async fn size(&self, digest: &str) -> Result<Option<u64>, RegistryError> {
        match bounded(STALL, self.store.head(&Self::key(digest))).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a blob exists.
    pub async fn exists(&self, digest: &str) -> Result<bool, RegistryError> {
        match bounded(STALL, self.store.head(&Self::key(digest))).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// A blob being written: bytes are hashed as they arrive and staged; nothing is
/// visible under a digest until [`BlobWriter::finish`] checks it.
pub struct BlobWriter {
    store: BlobStore,
    staging: ObjPath,
    w: WriteMultipart,
    ctx: digest::Context,
    size: u64,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("staging", &self.staging)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `chunk` (waits while two chunks are in flight).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), RegistryError> {
        self.ctx.update(chunk);
        if let Err(e) = bounded(PART_TIME, self.w.wait_for_capacity(2)).await {
            return Err(e.into());
        }
        self.w.write(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    /// Drops the staged upload.
    pub async fn abort(self) {
        bounded(PART_TIME, self.w.abort()).await.ok();
        bounded(STALL, self.store.store.delete(&self.staging))
            .await
            .ok();
    }

    /// Completes the upload and installs it under its digest. With `expected`, a
    /// different digest removes the upload and fails with [`RegistryError::DigestMismatch`].
    pub async fn finish(self, expected: Option<&str>) -> Result<StoredBlob, RegistryError> {
        let BlobWriter {
            store,
            staging,
            w,
            ctx,
            size,
        } = self;
        bounded(PART_TIME, w.finish()).await?;
        let digest = hex::encode(ctx.finish().as_ref());
        if let Some(want) = expected.filter(|want| *want != digest) {
            bounded(STALL, store.store.delete(&staging)).await.ok();
            return Err(RegistryError::DigestMismatch {
                expected: want.to_owned(),
                actual: digest,
            });
        }
        let key = BlobStore::key(&digest);
        // Always install the upload just hashed, even over an existing blob of the same
        // digest: if that one was damaged, storing the content again repairs it.
        if let Err(e) = bounded(PART_TIME, store.store.rename(&staging, &key)).await {
            bounded(STALL, store.store.delete(&staging)).await.ok();
            return Err(e.into());
        }
        store.make_durable(&digest)?;
        // Readers now open the file just installed, not a handle to the one it replaced.
        store.open.forget(&digest);
        store.recent.forget(&digest);
        Ok(StoredBlob { digest, size })
    }
}

impl BlobReader {
    /// Reads the whole blob through `sink` in chunks, hashing it; returns the digest and
    /// size. Runs the file case on a blocking thread.
    pub(crate) async fn drain<S: ChunkSink + Send + 'static>(
        self,
        mut sink: S,
    ) -> Result<(String, u64, S), RegistryError> {
        match self {
            BlobReader::File(f) => tokio::task::spawn_blocking(move || drain_file(f, sink))
                .await
                .map_err(|e| RegistryError::invalid("blob reader", e.to_string()))?,
            BlobReader::Stream(mut s) => {
                let mut ctx = digest::Context::new(&digest::SHA256);
                let mut size = 0u64;
                while let Some(chunk) = s.next().await {
                    let chunk = chunk?;
                    ctx.update(&chunk);
                    sink.accept(&chunk)?;
                    size += chunk.len() as u64;
                }
                Ok((hex::encode(ctx.finish().as_ref()), size, sink))
            }
        }
    }
}

/// Largest file staged in memory by one load.
pub const MAX_MEMORY_LOAD: u64 = 16 << 30;

impl BlobReader {
    /// Reads the whole blob into memory, hashing it. A local file is read straight into
    /// the returned buffer on this thread while another thread hashes each filled chunk,
    /// so the bytes are copied once and the load runs at the hashing rate. `expected` is
    /// the size the signed manifest gives; a longer file is reported as longer (and so
    /// fails the check) without being read further.
    pub(crate) async fn drain_to_memory(
        self,
        expected: u64,
    ) -> Result<(String, u64, MemoryBlob), RegistryError> {
        if expected > MAX_MEMORY_LOAD {
            return Err(RegistryError::invalid(
                "load",
                format!(
                    "{expected} bytes is more than the {MAX_MEMORY_LOAD} a load stages in memory; load to a file"
                ),
            ));
        }
        match self {
            BlobReader::File(f) => {
                tokio::task::spawn_blocking(move || read_into_memory(f, expected))
                    .await
                    .map_err(|e| RegistryError::invalid("blob reader", e.to_string()))?
            }
            stream @ BlobReader::Stream(_) => {
                let cap = usize::try_from(expected).unwrap_or(0);
                let (d, n, v) = stream.drain(Vec::with_capacity(cap)).await?;
                Ok((d, n, MemoryBlob(Memory::Heap(v))))
            }
        }
    }
}

fn read_full(f: &mut impl Read, buf: &mut [u8]) -> Result<usize, RegistryError> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
        match f.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(RegistryError::io("read", Path::new("blob"))(e)),
        }
    }
    Ok(filled)
}

fn read_into_memory(
    mut f: BlobFile,
    expected: u64,
) -> Result<(String, u64, MemoryBlob), RegistryError> {
    let len = usize::try_from(expected)
        .map_err(|_| RegistryError::invalid("load", "the artifact is too large for memory"))?;
    // A fresh anonymous mapping, not the allocator's memory: its pages are zero-filled
    // by the kernel as the reads first touch them, with no zeroing pass and without the
    // transparent-huge-page advice mimalloc gives its own memory (under which the page
    // faults of a 1 GiB load cost about a quarter of its rate).
    let mut map = memmap2::MmapMut::map_anon(len.max(1))
        .map_err(|e| RegistryError::io("map", Path::new("memory"))(e))?;
    let (digest, total, extra) = read_hash_into(&mut f, map.get_mut(..len).unwrap_or_default())?;
    let map = map
        .make_read_only()
        .map_err(|e| RegistryError::io("map", Path::new("memory"))(e))?;
    Ok((
        digest,
        (total + extra) as u64,
        MemoryBlob(Memory::Mapped { map, len: total }),
    ))
}

/// Reads `f` into `buf` on this thread while another thread hashes each filled chunk.
/// Returns the digest of what was read, how much was read, and whether the file holds
/// more than `buf` (1 when it does, so a longer file fails the size check).
fn read_hash_into(
    f: &mut BlobFile,
    buf: &mut [u8],
) -> Result<(String, usize, usize), RegistryError> {
    let len = buf.len();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<&[u8]>(8);
        let hasher = scope.spawn(move || {
            let mut ctx = digest::Context::new(&digest::SHA256);
            for chunk in rx {
                ctx.update(chunk);
            }
            hex::encode(ctx.finish().as_ref())
        });
        let mut total = 0usize;
        let mut result = Ok(());
        for chunk in buf.chunks_mut(CHUNK) {
            let want = chunk.len();
            let n = match read_full(f, chunk) {
                Ok(n) => n,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            total += n;
            let done: &[u8] = chunk;
            if tx.send(done.get(..n).unwrap_or_default()).is_err() || n < want {
                break;
            }
        }
        drop(tx);
        // Anything past the signed size makes the blob the wrong size.
        let mut probe = [0u8; 1];
        let extra = if result.is_ok() && total == len {
            read_full(f, &mut probe).unwrap_or(0)
        } else {
            0
        };
        let digest = hasher
            .join()
            .map_err(|_| RegistryError::invalid("blob reader", "the hashing thread failed"))?;
        result.map(|()| (digest, total, extra))
    })
}

/// A blob read into memory: a local file into an anonymous mapping of its own
/// (read-only once loaded), any other store's stream into a vector.
#[derive(Debug)]
pub struct MemoryBlob(Memory);

#[derive(Debug)]
enum Memory {
    Mapped { map: memmap2::Mmap, len: usize },
    Heap(Vec<u8>),
}

impl std::ops::Deref for MemoryBlob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Memory::Mapped { map, len } => map.get(..*len).unwrap_or_default(),
            Memory::Heap(v) => v,
        }
    }
}

impl AsRef<[u8]> for MemoryBlob {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Reads a local blob on this thread (read and stage) while another thread hashes what
/// was read: the two run in parallel, so the load runs at the slower of the two instead
/// of their sum. Buffers circulate between the threads; none is allocated per chunk.
fn drain_file<S: ChunkSink>(
    mut f: BlobFile,
    mut sink: S,
) -> Result<(String, u64, S), RegistryError> {
    use std::sync::mpsc::sync_channel;
    const BUFFERS: usize = 4;
    let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        free_tx
            .send(vec![0u8; CHUNK])
            .map_err(|_| RegistryError::invalid("blob reader", "buffer pool"))?;
    }
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut ctx = digest::Context::new(&digest::SHA256);
            while let Ok((buf, n)) = full_rx.recv() {
                ctx.update(buf.get(..n).unwrap_or_default());
                if free_tx.send(buf).is_err() {
                    break;
                }
            }
            hex::encode(ctx.finish().as_ref())
        });
        let mut size = 0u64;
        let mut result = Ok(());
        while let Ok(mut buf) = free_rx.recv() {
            let n = match read_full(&mut f, &mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            if let Err(e) = sink.accept(buf.get(..n).unwrap_or_default()) {
                result = Err(e);
                break;
            }
            size += n as u64;
            if full_tx.send((buf, n)).is_err() {
                break;
            }
        }
        drop(full_tx);
        let digest = hasher
            .join()
            .map_err(|_| RegistryError::invalid("blob reader", "the hashing thread failed"))?;
        result.map(|()| (digest, size))
    })
    .map(|(d, n)| (d, n, sink))
}

/// Where verified-to-be bytes go while they are hashed.
pub(crate) trait ChunkSink {
    fn accept(&mut self, chunk: &[u8]) -> Result<(), RegistryError>;
}

impl ChunkSink for Vec<u8> {
    fn accept(&mut self, chunk: &[u8]) -> Result<(), RegistryError> {
        self.extend_from_slice(chunk);
        Ok(())
    }
}

/// A private staging file.
pub(crate) struct FileSink {
    pub(crate) file: tempfile::NamedTempFile,
}

impl ChunkSink for FileSink {
    fn accept(&mut self, chunk: &[u8]) -> Result<(), RegistryError> {
        use std::io::Write;
        let path = self.file.path().to_path_buf();
        self.file
            .write_all(chunk)
            .map_err(RegistryError::io("write", &path))
    }
}

fn random_name() -> Result<String, RegistryError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| RegistryError::invalid("entropy", "the system random source failed"))?;
    Ok(hex::encode(&b))
}
