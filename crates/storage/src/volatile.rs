//! [`VolatileBackend`]: the real file system, except that written bytes reach the files only
//! when they are synced. Until then they live in this process's memory (and every handle of
//! the same path sees them), so killing the process loses exactly what a power cut would lose:
//! everything written since the file's last [`BackendFile::sync`].
//!
//! For tests only: a broker started with `SLUICE_TEST_VOLATILE_WRITES=1` runs its logs on it,
//! and SIGKILL then stands for a power loss, so a missing fsync (with `flush.messages=1`) shows
//! up as acknowledged data missing after a restart. Directory operations (create, rename,
//! remove) go straight to the file system.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{Backend, BackendFile, FileBackend};

/// A change not yet synced.
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

/// The unsynced changes of one path, in order.
#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
}

type Shared = Arc<Mutex<Pending>>;

/// See the module documentation.
#[derive(Default)]
pub struct VolatileBackend {
    inner: FileBackend,
    pending: Mutex<HashMap<PathBuf, Shared>>,
}

impl VolatileBackend {
    /// Creates the backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn table(&self) -> MutexGuard<'_, HashMap<PathBuf, Shared>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct VolatileFile {
    file: Box<dyn BackendFile>,
    pending: Shared,
}

impl VolatileFile {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn end(pos: u64, n: usize) -> u64 {
    pos.saturating_add(n as u64)
}

impl BackendFile for VolatileFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let p = self.lock();
        // The file as synced, then every unsynced change over it, in order.
        buf.fill(0);
        let mut len = self.file.len()?;
        let mut off = 0;
        while pos < len && off < buf.len() {
            let got = self.file.read_at(&mut buf[off..], end(pos, off))?;
            if got == 0 {
                break;
            }
            off += got;
        }
        let want_end = end(pos, buf.len());
        for op in &p.ops {
            match op {
                Op::SetLen(l) => {
                    len = *l;
                    // What lies past the new length reads as zeros if the file grows again.
                    if *l < want_end {
                        let from = usize::try_from(l.saturating_sub(pos)).unwrap_or(0);
                        buf[from..].fill(0);
                    }
                }
                Op::Write(at, data) => {
                    len = len.max(end(*at, data.len()));
                    let (lo, hi) = ((*at).max(pos), end(*at, data.len()).min(want_end));
                    if lo < hi {
                        let (b0, d0) = ((lo - pos) as usize, (lo - at) as usize);
                        let k = (hi - lo) as usize;
                        buf[b0..b0 + k].copy_from_slice(&data[d0..d0 + k]);
                    }
                }
            }
        }
        Ok(usize::try_from(len.saturating_sub(pos))
            .unwrap_or(usize::MAX)
            .min(buf.len()))
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        self.lock().ops.push(Op::Write(pos, buf.to_vec()));
        Ok(buf.len())
    }

    fn sync(&self) -> io::Result<()> {
        let mut p = self.lock();
        for op in p.ops.drain(..) {
            match op {
                Op::Write(at, data) => self.file.write_all_at(&data, at)?,
                Op::SetLen(l) => self.file.set_len(l)?,
            }
        }
        self.file.sync()
    }

    fn len(&self) -> io::Result<u64> {
        let p = self.lock();
        let mut len = self.file.len()?;
        for op in &p.ops {
            match op {
                Op::SetLen(l) => len = *l,
                Op::Write(at, data) => len = len.max(end(*at, data.len())),
            }
        }
        Ok(len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.lock().ops.push(Op::SetLen(len));
        Ok(())
    }
}

impl Backend for VolatileBackend {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list_dir(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn BackendFile>> {
        let file = self.inner.open(path, create)?;
        let pending = self.table().entry(path.to_path_buf()).or_default().clone();
        Ok(Box::new(VolatileFile { file, pending }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.table().remove(path);
        self.inner.remove_file(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)?;
        let mut t = self.table();
        match t.remove(from) {
            Some(p) => {
                t.insert(to.to_path_buf(), p);
            }
            None => {
                t.remove(to);
            }
        }
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.open(path, false)?.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_bytes_are_visible_but_not_on_disk_until_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let b = VolatileBackend::new();
        let f = b.open(&path, true).unwrap();
        f.write_all_at(b"hello world", 0).unwrap();
        f.write_all_at(b"W", 6).unwrap();
        let mut buf = [0u8; 11];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), 11);
        assert_eq!(&buf, b"hello World");
        // A second handle of the same path sees the same bytes.
        let g = b.open(&path, false).unwrap();
        assert_eq!(g.len().unwrap(), 11);
        // Nothing reached the file yet: a "power cut" (a new process) would see it empty.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        f.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello World");
        // Truncation is pending until the next sync too.
        f.set_len(5).unwrap();
        assert_eq!(f.len().unwrap(), 5);
        let mut short = [0u8; 11];
        assert_eq!(g.read_at(&mut short, 0).unwrap(), 5);
        assert_eq!(&short[..5], b"hello");
        assert_eq!(std::fs::read(&path).unwrap().len(), 11);
        g.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
    }
}
