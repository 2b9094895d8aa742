//! The durable export cursor: per sink, the next entry to deliver and the file offsets
//! that lead to it, plus the sink's last status. One JSON file per sink,
//! `<export dir>/<sink>.cursor`, replaced atomically (temporary file, fsync, rename,
//! fsync of the directory) and only after the receiver confirmed everything before it.
//! A lock file keeps two exporters off the same sink.

use crate::error::{SiemError, io};
use crate::source::Position;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Longest sink name.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` can name a sink: 1–64 of `[A-Za-z0-9._-]`, not starting with a dot.
#[must_use]
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What the cursor file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// Sink name.
    pub sink: String,
    /// Destination URL.
    pub to: String,
    /// Message format.
    pub format: String,
    /// What else decides the messages ([`crate::exporter::SinkSpec::sends`]): decrypted
    /// (for which auditor key) or not, with checkpoints or not. Absent in cursors
    /// written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sends: Option<String>,
    /// Where delivery resumes: everything before `position.next` was confirmed.
    pub position: Position,
    /// Entries confirmed delivered by this sink, over its lifetime (duplicates after a
    /// retry count once).
    pub delivered: u64,
    /// Entries covered by a checkpoint when the cursor was last saved.
    pub covered: u64,
    /// When the cursor was last saved (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    /// The last delivery failure, if it has not been followed by a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When that failure happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
}

impl Cursor {
    /// Entries covered by a checkpoint but not yet confirmed delivered.
    #[must_use]
    pub fn lag(&self) -> u64 {
        self.covered.saturating_sub(self.position.next)
    }
}

/// A copy of sinks' cursors kept where every node of a cluster reads it (the cluster's
/// database), so that whichever node exports a sink resumes where the last one stopped.
pub trait SharedCursors: Send + Sync + std::fmt::Debug {
    /// The saved cursor of `sink`, as [`CursorStore::save`] encoded it.
    fn load(&self, sink: &str) -> Result<Option<Vec<u8>>, String>;
    /// Saves `cursor` for `sink`, whose next entry to deliver is `next`; a cursor
    /// further along is kept instead.
    fn save(&self, sink: &str, next: u64, cursor: &[u8]) -> Result<(), String>;
}

/// A sink's cursor file, locked for this process, and its shared copy if any.
#[derive(Debug)]
pub struct CursorStore {
    path: PathBuf,
    name: String,
    shared: Option<std::sync::Arc<dyn SharedCursors>>,
    _lock: File,
}

impl CursorStore {
    /// Opens (creating the directory, 0700) and locks the cursor of sink `name`.
    pub fn open(dir: &Path, name: &str) -> Result<Self, SiemError> {
        use std::os::unix::fs::DirBuilderExt as _;
        if !valid_name(name) {
            return Err(SiemError::Spec {
                what: "name",
                detail: format!("{name:?}: use 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 . _ -"),
            });
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create", dir))?;
        let lock_path = dir.join(format!("{name}.lock"));
        let Some(lock) =
            warden_store::durable::lock_exclusive(&lock_path).map_err(io("lock", &lock_path))?
        else {
            return Err(SiemError::Locked {
                name: name.to_owned(),
                path: lock_path,
            });
        };
        Ok(Self {
            path: dir.join(format!("{name}.cursor")),
            name: name.to_owned(),
            shared: None,
            _lock: lock,
        })
    }

    /// Keeps the cursor in `shared` too: loading takes whichever copy is further along,
    /// saving writes both.
    #[must_use]
    pub fn with_shared(mut self, shared: std::sync::Arc<dyn SharedCursors>) -> Self {
        self.shared = Some(shared);
        self
    }

    fn shared_error(&self, op: &'static str) -> impl FnOnce(String) -> SiemError + '_ {
        move |e| SiemError::Io {
            op,
            path: self.path.clone(),
            source: std::io::Error::other(format!("the cluster's copy: {e}")),
        }
    }

    /// The cursor file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved cursor, if any: of the file and the shared copy, the one further along.
    pub fn load(&self) -> Result<Option<Cursor>, SiemError> {
        let local = read(&self.path)?;
        let Some(shared) = &self.shared else {
            return Ok(local);
        };
        let Some(data) = shared.load(&self.name).map_err(self.shared_error("read"))? else {
            return Ok(local);
        };
        let theirs: Cursor = parse(&data, &self.path)?;
        Ok(Some(match local {
            Some(mine) if mine.position.next > theirs.position.next => mine,
            _ => theirs,
        }))
    }

    /// Saves `c` durably (and in the shared copy).
    pub fn save(&self, c: &Cursor) -> Result<(), SiemError> {
        let mut data = serde_json::to_vec_pretty(c).map_err(|e| SiemError::Io {
            op: "encode",
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        data.push(b'\n');
        warden_store::durable::write_atomic(&self.path, &data, 0o600)
            .map_err(io("write", &self.path))?;
        if let Some(shared) = &self.shared {
            shared
                .save(&self.name, c.position.next, &data)
                .map_err(self.shared_error("save"))?;
        }
        Ok(())
    }
}

fn read(path: &Path) -> Result<Option<Cursor>, SiemError> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", path)(e)),
    };
    parse(&data, path).map(Some)
}

fn parse(data: &[u8], path: &Path) -> Result<Cursor, SiemError> {
    serde_json::from_slice(data).map_err(|e| SiemError::Io {
        op: "parse",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })
}

/// Where a data directory's sinks keep their cursors.
#[must_use]
pub fn export_dir(dir: &warden_store::config::DataDir) -> std::path::PathBuf {
    dir.root.join("export")
}

/// Where each SIEM sink of a data directory stands, for the compliance report's
/// coverage.
pub fn positions(
    dir: &warden_store::config::DataDir,
) -> Result<Vec<warden_store::report::SinkPosition>, SiemError> {
    positions_with(dir, &[])
}

/// [`positions`], with the cursors a cluster's database keeps ([`list_with`]).
pub fn positions_with(
    dir: &warden_store::config::DataDir,
    shared: &[Vec<u8>],
) -> Result<Vec<warden_store::report::SinkPosition>, SiemError> {
    Ok(list_with(&export_dir(dir), shared)?
        .into_iter()
        .map(|c| warden_store::report::SinkPosition {
            sink: c.sink,
            format: c.format,
            next: c.position.next,
        })
        .collect())
}

/// [`list`], with the cursors a cluster's database keeps (`shared`, each as
/// [`CursorStore::save`] encodes it): of two cursors of one sink, the one further along.
pub fn list_with(dir: &Path, shared: &[Vec<u8>]) -> Result<Vec<Cursor>, SiemError> {
    let theirs = shared
        .iter()
        .map(|d| parse(d, dir))
        .collect::<Result<Vec<_>, _>>()?;
    let mut by_sink = std::collections::BTreeMap::new();
    for c in list(dir)?.into_iter().chain(theirs) {
        let keep = by_sink
            .get(&c.sink)
            .is_none_or(|k: &Cursor| k.position.next < c.position.next);
        if keep {
            by_sink.insert(c.sink.clone(), c);
        }
    }
    Ok(by_sink.into_values().collect())
}

/// Every sink's cursor in `dir`, sorted by name.
pub fn list(dir: &Path) -> Result<Vec<Cursor>, SiemError> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("list", dir)(e)),
    };
    for e in rd {
        let p = e.map_err(io("list", dir))?.path();
        if p.extension().is_some_and(|x| x == "cursor")
            && let Some(c) = read(&p)?
        {
            out.push(c);
        }
    }
    out.sort_by(|a, b| a.sink.cmp(&b.sink));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_name("siem-1.tcp_x"));
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_sink_is_locked_by_one_exporter() {
        let d = tempfile::tempdir().unwrap();
        let a = CursorStore::open(d.path(), "s").unwrap();
        assert!(matches!(
            CursorStore::open(d.path(), "s"),
            Err(SiemError::Locked { .. })
        ));
        let c = Cursor {
            sink: "s".into(),
            delivered: 3,
            ..Cursor::default()
        };
        a.save(&c).unwrap();
        assert_eq!(a.load().unwrap(), Some(c.clone()));
        drop(a);
        let b = CursorStore::open(d.path(), "s").unwrap();
        assert_eq!(b.load().unwrap(), Some(c));
        assert_eq!(list(d.path()).unwrap().len(), 1);
    }
}
