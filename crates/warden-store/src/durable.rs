//! Durable file primitives and the append-only file abstraction the sequencer writes
//! through. The contract of [`AppendFile`]: when `sync` returns `Ok`, every byte
//! appended before it is on stable storage.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// An append-only file.
pub trait AppendFile: Send {
    /// Current length in bytes.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends all of `data` (not yet durable).
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes every appended byte durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file back to `len` bytes and makes that durable.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// A real file opened for appending.
#[derive(Debug)]
pub struct FsFile {
    file: File,
    len: u64,
}

impl FsFile {
    /// Opens (creating with mode 0600 if needed) `path` for appending.
    pub fn open(path: &Path) -> io::Result<Self> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)?;
        if !existed {
            file.sync_all()?;
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
        }
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }
}

impl AppendFile for FsFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let r = self.file.write_all(data);
        self.len = match r {
            Ok(()) => self.len + data.len() as u64,
            // Re-read the length: a failed write may have written a prefix.
            Err(_) => self
                .file
                .metadata()
                .map_or(self.len + data.len() as u64, |m| m.len()),
        };
        r
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()?;
        self.len = len;
        Ok(())
    }
}

/// Opens (creating) the lock file `path` and takes its exclusive lock without waiting:
/// `None` when another process holds it. The lock lasts as long as the file is open.
pub fn lock_exclusive(path: &Path) -> io::Result<Option<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// fsyncs a directory, making creations and renames in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Writes `data` to `path` atomically (temp file, fsync, rename, fsync dir) with `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Writes `data` to a new file at `path` (fails if it exists) with `mode`, durably.
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Which failure a [`FaultyFile`] injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The write is refused and nothing is stored (e.g. ENOSPC).
    NotStored,
    /// Half of the data is stored, then the write fails (a torn write).
    Torn,
    /// The data is stored but the call reports failure.
    StoredButFailed,
    /// `sync` fails.
    SyncFails,
}

/// Wraps a file and injects `fault` at the `at`-th operation (appends and syncs
/// counted together), and at every operation after it. For failure-injection tests.
pub struct FaultyFile {
    inner: Box<dyn AppendFile>,
    ops: u64,
    at: u64,
    fault: Fault,
}

impl std::fmt::Debug for FaultyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyFile")
            .field("ops", &self.ops)
            .field("at", &self.at)
            .field("fault", &self.fault)
            .finish()
    }
}

impl FaultyFile {
    /// Fails from the `at`-th operation on.
    #[must_use]
    pub fn new(inner: Box<dyn AppendFile>, at: u64, fault: Fault) -> Self {
        Self {
            inner,
            ops: 0,
            at,
            fault,
        }
    }

    fn tick(&mut self) -> bool {
        self.ops += 1;
        self.ops >= self.at
    }
}

fn injected() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "injected failure: no space left on device",
    )
}

impl AppendFile for FaultyFile {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if !self.tick() {
            return self.inner.append(data);
        }
        match self.fault {
            Fault::NotStored => Err(injected()),
            Fault::Torn => {
                self.inner
                    .append(data.get(..data.len() / 2).unwrap_or_default())?;
                Err(injected())
            }
            Fault::StoredButFailed => {
                self.inner.append(data)?;
                self.inner.sync()?;
                Err(injected())
            }
            Fault::SyncFails => self.inner.append(data),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.tick() && self.fault == Fault::SyncFails {
            return Err(injected());
        }
        self.inner.sync()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if self.ops >= self.at && self.fault == Fault::NotStored {
            return Err(injected());
        }
        self.inner.truncate(len)
    }
}
