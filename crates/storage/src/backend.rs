//! Storage backends: a tiny file-system abstraction so tests can inject faults and crashes.
//!
//! [`FileBackend`] maps directly onto `std::fs` with positional I/O. [`MemoryBackend`] keeps
//! files in memory, remembers which bytes were made durable by [`BackendFile::sync`], and can
//! simulate a power cut ([`MemoryBackend::crash`]) as well as write/sync failures.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// An open file supporting positional I/O. Implementations must be safe to share between
/// threads; positional reads may run concurrently with writes at other positions.
pub trait BackendFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `pos`; returns the number read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes up to `buf.len()` bytes at `pos`, extending the file if needed; may be short.
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize>;
    /// Makes all written data (and the file length) durable.
    fn sync(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Writes all of `buf` at `pos`, retrying short writes.
    fn write_all_at(&self, mut buf: &[u8], mut pos: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, pos) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
                Ok(n) => {
                    buf = buf.get(n..).unwrap_or(&[]);
                    pos += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes `bufs` back to back from `pos`, as one vectored write where the backend has one
    /// (the log writes a batch's patched header prefix and the bytes as received this way,
    /// without copying them into one buffer first).
    fn write_all_vectored_at(&self, bufs: &[&[u8]], mut pos: u64) -> io::Result<()> {
        for b in bufs {
            self.write_all_at(b, pos)?;
            pos += b.len() as u64;
        }
        Ok(())
    }

    /// Reads until `buf` is full or end of file; returns the number of bytes read.
    fn read_full_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let rest = buf.get_mut(done..).unwrap_or(&mut []);
            match self.read_at(rest, pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Appends `buf` at the current end of the file.
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let end = self.len()?;
        self.write_all_at(buf, end)
    }

    /// Opens the underlying file now if it is opened lazily ([`LazyFile`]); a no-op for
    /// files that are open already. Called before the file's path is renamed over or
    /// removed, so the handle keeps seeing the contents it was created for.
    fn ensure_open(&self) -> io::Result<()> {
        Ok(())
    }
}

/// A minimal directory/file namespace.
pub trait Backend: Send + Sync {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Lists the entries (full paths) of a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Opens a file for reading and writing, creating it if `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn BackendFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Whether a file or directory exists.
    fn exists(&self, path: &Path) -> bool;
    /// Makes directory entry changes (creations, renames, removals) durable.
    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    /// Length of the file at `path`, without keeping it open.
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.open(path, false)?.len()
    }
}

/// A file opened on first use: many partitions can be open without holding a descriptor
/// each until they are read or written. Once opened it stays open.
pub struct LazyFile {
    backend: Arc<dyn Backend>,
    path: PathBuf,
    file: std::sync::OnceLock<Box<dyn BackendFile>>,
}

impl LazyFile {
    /// A handle on the existing file `path`, opened by `backend` on first use.
    pub fn new(backend: Arc<dyn Backend>, path: PathBuf) -> LazyFile {
        LazyFile {
            backend,
            path,
            file: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> io::Result<&dyn BackendFile> {
        if let Some(f) = self.file.get() {
            return Ok(&**f);
        }
        let opened = self.backend.open(&self.path, false)?;
        // A racing opener may have won; its handle is as good as ours.
        let f = self.file.get_or_init(|| opened);
        Ok(&**f)
    }
}

impl BackendFile for LazyFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.get()?.read_at(buf, pos)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        self.get()?.write_at(buf, pos)
    }
    fn sync(&self) -> io::Result<()> {
        self.get()?.sync()
    }
    fn len(&self) -> io::Result<u64> {
        match self.file.get() {
            Some(f) => f.len(),
            None => self.backend.file_len(&self.path),
        }
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.get()?.set_len(len)
    }
    fn ensure_open(&self) -> io::Result<()> {
        self.get().map(|_| ())
    }
}

/// [`Backend`] over the real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileBackend;

impl FileBackend {
    /// Creates the backend.
    pub fn new() -> Self {
        FileBackend
    }
}

struct StdFile(File);

impl BackendFile for StdFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        self.0.write_at(buf, pos)
    }
    /// Seek, then `writev` until everything is written. The file position is used only
    /// here, and callers write a file under their log's writer lock; reads are positional.
    fn write_all_vectored_at(&self, bufs: &[&[u8]], pos: u64) -> io::Result<()> {
        use std::io::{IoSlice, Seek, SeekFrom, Write};
        let mut f = &self.0;
        f.seek(SeekFrom::Start(pos))?;
        let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match f.write_vectored(rest) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Backend for FileBackend {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(path)? {
            out.push(e?.path());
        }
        Ok(out)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn BackendFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Box::new(StdFile(f)))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }
}

#[derive(Default)]
struct MemFileState {
    data: Vec<u8>,
    synced: Vec<u8>,
}

struct MemFile {
    state: Mutex<MemFileState>,
    faults: Arc<Faults>,
}

/// Countdowns for fault injection; 0 means "off". Each fires once.
#[derive(Default)]
struct Faults {
    fail_write_in: AtomicU64,
    fail_sync_in: AtomicU64,
    short_write_in: AtomicU64,
    fail_rename_in: AtomicU64,
    /// `u64::MAX` = unlimited.
    space_left: AtomicU64,
}

/// Decrements a countdown; true when it reaches zero now.
fn fires(c: &AtomicU64) -> bool {
    c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok_and(|prev| prev == 1)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemFile {
    fn st(&self) -> MutexGuard<'_, MemFileState> {
        lock(&self.state)
    }
}

impl BackendFile for MemFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let st = self.st();
        let Ok(pos) = usize::try_from(pos) else {
            return Ok(0);
        };
        if pos >= st.data.len() {
            return Ok(0);
        }
        let n = buf.len().min(st.data.len() - pos);
        buf[..n].copy_from_slice(&st.data[pos..pos + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        let f = &self.faults;
        if fires(&f.fail_write_in) {
            return Err(io::Error::other("injected write failure"));
        }
        let mut n = buf.len();
        if fires(&f.short_write_in) && n > 1 {
            n /= 2;
        }
        let mut enospc = false;
        let left = f.space_left.load(Ordering::SeqCst);
        if left != u64::MAX {
            if (n as u64) > left {
                n = left as usize;
                enospc = true;
            }
            f.space_left.fetch_sub(n as u64, Ordering::SeqCst);
        }
        let pos = usize::try_from(pos).map_err(io::Error::other)?;
        {
            let mut st = self.st();
            if st.data.len() < pos + n {
                st.data.resize(pos + n, 0);
            }
            st.data[pos..pos + n].copy_from_slice(&buf[..n]);
        }
        if enospc && n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected: no space left on device",
            ));
        }
        Ok(n)
    }

    fn sync(&self) -> io::Result<()> {
        let f = &self.faults;
        if fires(&f.fail_sync_in) {
            return Err(io::Error::other("injected sync failure"));
        }
        let mut st = self.st();
        st.synced = st.data.clone();
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.st().data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        self.st().data.resize(len, 0);
        Ok(())
    }
}

#[derive(Default)]
struct MemNs {
    files: HashMap<PathBuf, Arc<MemFile>>,
    dirs: BTreeSet<PathBuf>,
}

/// In-memory [`Backend`] with crash simulation and fault injection.
///
/// Durability model: file contents become durable on [`BackendFile::sync`]; directory
/// operations (create, rename, remove) are durable immediately. [`MemoryBackend::crash`]
/// reverts every file to its last synced contents, as after a power cut. Handles opened
/// before a crash stay usable (they see the reverted contents).
///
/// Fault switches count calls across all files of the backend, starting from the moment
/// the switch is set, and fire once: `fail_nth_write(1)` makes the very next `write_at` fail.
#[derive(Clone)]
pub struct MemoryBackend {
    ns: Arc<Mutex<MemNs>>,
    faults: Arc<Faults>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").finish_non_exhaustive()
    }
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", p.display()),
    )
}

impl MemoryBackend {
    /// Creates an empty backend.
    pub fn new() -> Self {
        let faults = Faults::default();
        faults.space_left.store(u64::MAX, Ordering::SeqCst);
        MemoryBackend {
            ns: Arc::new(Mutex::new(MemNs::default())),
            faults: Arc::new(faults),
        }
    }

    /// Simulated power cut: every file loses the bytes written since its last sync.
    pub fn crash(&self) {
        let ns = lock(&self.ns);
        for f in ns.files.values() {
            let mut st = f.st();
            st.data = st.synced.clone();
        }
    }

    /// The `n`-th `write_at` from now (1-based) fails with an I/O error. 0 disables.
    pub fn fail_nth_write(&self, n: u64) {
        self.faults.fail_write_in.store(n, Ordering::SeqCst);
    }

    /// The `n`-th `sync` from now (1-based) fails. 0 disables.
    pub fn fail_nth_sync(&self, n: u64) {
        self.faults.fail_sync_in.store(n, Ordering::SeqCst);
    }

    /// The `n`-th `rename` from now (1-based) fails without renaming. 0 disables.
    pub fn fail_nth_rename(&self, n: u64) {
        self.faults.fail_rename_in.store(n, Ordering::SeqCst);
    }

    /// The `n`-th `write_at` from now writes only half its buffer (a legal short write).
    pub fn short_nth_write(&self, n: u64) {
        self.faults.short_write_in.store(n, Ordering::SeqCst);
    }

    /// After `n` more bytes are written, writes fail with `StorageFull` (ENOSPC).
    /// `None` removes the limit.
    pub fn enospc_after(&self, n: Option<u64>) {
        self.faults
            .space_left
            .store(n.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Full current contents of a file (for tests).
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let ns = lock(&self.ns);
        ns.files.get(path).map(|f| f.st().data.clone())
    }

    /// Replaces the contents of a file, marking them durable (for tests that corrupt data).
    pub fn set_contents(&self, path: &Path, data: Vec<u8>) {
        let mut ns = lock(&self.ns);
        let f = ns
            .files
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                Arc::new(MemFile {
                    state: Mutex::new(MemFileState::default()),
                    faults: self.faults.clone(),
                })
            })
            .clone();
        drop(ns);
        let mut st = f.st();
        st.synced = data.clone();
        st.data = data;
    }
}

impl Backend for MemoryBackend {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut ns = lock(&self.ns);
        for a in path.ancestors() {
            if a.as_os_str().is_empty() {
                break;
            }
            ns.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let ns = lock(&self.ns);
        if !ns.dirs.contains(path) {
            return Err(not_found(path));
        }
        let mut out: Vec<PathBuf> = ns
            .files
            .keys()
            .filter(|p| p.parent() == Some(path))
            .cloned()
            .collect();
        out.extend(ns.dirs.iter().filter(|p| p.parent() == Some(path)).cloned());
        out.sort();
        Ok(out)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn BackendFile>> {
        let mut ns = lock(&self.ns);
        if let Some(f) = ns.files.get(path) {
            return Ok(Box::new(MemHandle(f.clone())));
        }
        if !create {
            return Err(not_found(path));
        }
        let parent_ok = path.parent().is_some_and(|p| ns.dirs.contains(p));
        if !parent_ok {
            return Err(not_found(path));
        }
        let f = Arc::new(MemFile {
            state: Mutex::new(MemFileState::default()),
            faults: self.faults.clone(),
        });
        ns.files.insert(path.to_path_buf(), f.clone());
        Ok(Box::new(MemHandle(f)))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut ns = lock(&self.ns);
        ns.files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let mut ns = lock(&self.ns);
        if !ns.dirs.contains(path) {
            return Err(not_found(path));
        }
        let busy = ns.files.keys().any(|p| p.starts_with(path))
            || ns.dirs.iter().any(|d| d != path && d.starts_with(path));
        if busy {
            return Err(io::Error::new(
                io::ErrorKind::DirectoryNotEmpty,
                format!("{}: directory not empty", path.display()),
            ));
        }
        ns.dirs.remove(path);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        if fires(&self.faults.fail_rename_in) {
            return Err(io::Error::other("injected rename failure"));
        }
        let mut ns = lock(&self.ns);
        let f = ns.files.remove(from).ok_or_else(|| not_found(from))?;
        ns.files.insert(to.to_path_buf(), f);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let ns = lock(&self.ns);
        ns.files.contains_key(path) || ns.dirs.contains(path)
    }
}

struct MemHandle(Arc<MemFile>);

impl BackendFile for MemHandle {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        self.0.write_at(buf, pos)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(b: &dyn Backend, dir: &Path) {
        b.create_dir_all(dir).unwrap();
        let p = dir.join("a.log");
        assert!(!b.exists(&p));
        assert!(b.open(&p, false).is_err());
        let f = b.open(&p, true).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.append(b" world").unwrap();
        assert_eq!(f.len().unwrap(), 11);
        let mut buf = [0u8; 5];
        assert_eq!(f.read_full_at(&mut buf, 6).unwrap(), 5);
        assert_eq!(&buf, b"world");
        assert_eq!(f.read_at(&mut buf, 11).unwrap(), 0);
        f.set_len(5).unwrap();
        f.sync().unwrap();
        assert_eq!(f.len().unwrap(), 5);
        let q = dir.join("b.log");
        b.rename(&p, &q).unwrap();
        assert!(!b.exists(&p) && b.exists(&q));
        assert_eq!(b.list_dir(dir).unwrap(), vec![q.clone()]);
        b.sync_dir(dir).unwrap();
        b.remove_file(&q).unwrap();
        assert!(b.list_dir(dir).unwrap().is_empty());
    }

    #[test]
    fn file_backend_roundtrip() {
        let t = tempfile::tempdir().unwrap();
        roundtrip(&FileBackend, &t.path().join("x"));
    }

    #[test]
    fn memory_backend_roundtrip() {
        roundtrip(&MemoryBackend::new(), Path::new("/m/x"));
    }

    #[test]
    fn crash_drops_unsynced() {
        let b = MemoryBackend::new();
        b.create_dir_all(Path::new("/d")).unwrap();
        let f = b.open(Path::new("/d/f"), true).unwrap();
        f.write_all_at(b"abc", 0).unwrap();
        f.sync().unwrap();
        f.write_all_at(b"XYZdef", 1).unwrap();
        b.crash();
        let mut buf = [0u8; 10];
        let n = f.read_full_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"abc");
    }

    #[test]
    fn faults() {
        let b = MemoryBackend::new();
        b.create_dir_all(Path::new("/d")).unwrap();
        let f = b.open(Path::new("/d/f"), true).unwrap();
        b.fail_nth_write(2);
        f.write_all_at(b"1", 0).unwrap();
        assert!(f.write_all_at(b"2", 1).is_err());
        f.write_all_at(b"3", 1).unwrap();
        b.fail_nth_sync(1);
        assert!(f.sync().is_err());
        f.sync().unwrap();
        b.short_nth_write(1);
        assert_eq!(f.write_at(b"abcd", 0).unwrap(), 2);
        b.enospc_after(Some(3));
        let e = f.write_all_at(b"abcdef", 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert_eq!(&b.contents(Path::new("/d/f")).unwrap()[..3], b"abc");
        b.enospc_after(None);
        f.write_all_at(b"abcdef", 0).unwrap();
    }
}
