//! The raft log and vote on disk (openraft `RaftLogStorage`, storage-v2).
//!
//! Files in `<data_dir>/__cluster_metadata/raft/`:
//!
//! * `log`: a sequence of records `[len: u32 BE][crc32c(payload): u32 BE][payload]`, the
//!   payload being the JSON of a [`LogRecord`]: an entry, a truncation (`since`) or a purge
//!   (`upto`). Replaying the records in order rebuilds the log. A purge rewrites the file
//!   (temp file, fsync, rename, fsync of the directory) so purged entries leave the disk.
//!   On open, a last record that is cut short or fails its checksum is a torn write and is cut
//!   away; a bad record followed by more data is corruption and the open fails.
//! * `vote`: one record holding the vote, replaced atomically (temp, fsync, rename, dir fsync).
//!
//! Every append is fsynced before openraft's `LogFlushed` callback fires, so openraft never
//! counts an entry as durable that a crash could lose. The metadata log is small, so all
//! entries are also kept in memory; I/O is plain blocking file I/O (a few ms per commit).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogId, RaftLogReader, StorageIOError, Vote};
use serde::{Deserialize, Serialize};

use super::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// Largest record accepted when reading a file (a bound before allocating).
const MAX_RECORD: usize = 256 << 20;

/// One record of the `log` file.
#[derive(Debug, Serialize, Deserialize)]
enum LogRecord {
    Entry(Entry),
    Truncate { since: u64 },
    Purge { upto: LogId },
}

/// Frames a payload: length, CRC-32C, bytes.
pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Outcome of reading the records of a file.
pub(crate) struct Records {
    /// Valid payloads in order.
    pub payloads: Vec<Vec<u8>>,
    /// Byte length of the valid prefix.
    pub valid_len: u64,
    /// Whether a torn tail follows the valid prefix.
    pub torn: bool,
}

/// Splits `data` into framed records. A damaged last record is a torn tail; damage followed by
/// more data is an error.
pub(crate) fn read_records(data: &[u8]) -> Result<Records, String> {
    let mut pos = 0usize;
    let mut payloads = Vec::new();
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.len() < 8 {
            return Ok(Records {
                payloads,
                valid_len: pos as u64,
                torn: true,
            });
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD {
            return Err(format!("record at byte {pos} claims {len} bytes"));
        }
        if rest.len() < 8 + len {
            return Ok(Records {
                payloads,
                valid_len: pos as u64,
                torn: true,
            });
        }
        let payload = &rest[8..8 + len];
        if crc32c::crc32c(payload) != crc {
            if rest.len() == 8 + len {
                return Ok(Records {
                    payloads,
                    valid_len: pos as u64,
                    torn: true,
                });
            }
            return Err(format!(
                "checksum mismatch in record at byte {pos} followed by more data"
            ));
        }
        payloads.push(payload.to_vec());
        pos += 8 + len;
    }
    Ok(Records {
        payloads,
        valid_len: pos as u64,
        torn: false,
    })
}

/// fsyncs a directory so a rename or file creation in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces `path` with one framed record: temp file, fsync, rename, dir fsync.
pub(crate) fn write_atomic(path: &Path, payload: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&frame(payload))?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Reads a file written by [`write_atomic`]; `None` if it does not exist.
pub(crate) fn read_atomic(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let recs = read_records(&data).map_err(std::io::Error::other)?;
    match (recs.torn, recs.payloads.len()) {
        (false, 1) => Ok(recs.payloads.into_iter().next()),
        _ => Err(std::io::Error::other(format!(
            "{} is damaged",
            path.display()
        ))),
    }
}

fn log_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

struct LogInner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote<NodeId>>,
}

impl LogInner {
    fn append_records(&mut self, recs: &[LogRecord]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for r in recs {
            let json = serde_json::to_vec(r).map_err(std::io::Error::other)?;
            buf.extend_from_slice(&frame(&json));
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }

    /// Rewrites the log file with only what is live: the purge point and the entries.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let path = self.dir.join("log");
        let tmp = self.dir.join("log.tmp");
        let mut buf = Vec::new();
        let mut push = |r: &LogRecord| -> std::io::Result<()> {
            let json = serde_json::to_vec(r).map_err(std::io::Error::other)?;
            buf.extend_from_slice(&frame(&json));
            Ok(())
        };
        if let Some(upto) = self.last_purged {
            push(&LogRecord::Purge { upto })?;
        }
        for e in self.entries.values() {
            push(&LogRecord::Entry(e.clone()))?;
        }
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        Ok(())
    }
}

/// The raft log store. Cheap to clone; clones share the same state (also the log reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Opens (creating) the log in `dir`, recovering from a torn tail.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("log");
        let mut data = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut data)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let recs = read_records(&data)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        let mut valid_len = 0u64;
        let mut torn = recs.torn;
        let mut offset = 0u64;
        for p in &recs.payloads {
            let rec = match serde_json::from_slice::<LogRecord>(p) {
                Ok(r) => r,
                Err(e) => {
                    // A record with a good checksum that does not parse is corruption unless
                    // it is the last one (then treat it like a torn write).
                    if offset + 8 + p.len() as u64 == recs.valid_len {
                        torn = true;
                        break;
                    }
                    return Err(std::io::Error::other(format!("{}: {e}", path.display())));
                }
            };
            offset += 8 + p.len() as u64;
            valid_len = offset;
            match rec {
                LogRecord::Entry(e) => {
                    entries.insert(e.get_log_id().index, e);
                }
                LogRecord::Truncate { since } => {
                    entries.split_off(&since);
                }
                LogRecord::Purge { upto } => {
                    entries = entries.split_off(&(upto.index + 1));
                    last_purged = Some(upto);
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if torn || valid_len < data.len() as u64 {
            tracing::warn!(
                path = %path.display(),
                kept = valid_len,
                dropped = data.len() as u64 - valid_len,
                "truncating a torn tail of the raft log"
            );
            file.set_len(valid_len)?;
            file.sync_all()?;
        }
        let vote = match read_atomic(&dir.join("vote"))? {
            Some(p) => Some(serde_json::from_slice(&p).map_err(std::io::Error::other)?),
            None => None,
        };
        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogInner {
                dir: dir.to_path_buf(),
                file,
                entries,
                last_purged,
                vote,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the log holds nothing (never initialized).
    pub fn is_empty(&self) -> bool {
        let g = self.lock();
        g.entries.is_empty() && g.last_purged.is_none()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let g = self.lock();
        let last = g
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(g.last_purged);
        Ok(LogState {
            last_purged_log_id: g.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let mut g = self.lock();
        let json = serde_json::to_vec(vote)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))?;
        write_atomic(&g.dir.join("vote"), &json)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))?;
        g.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut g = self.lock();
        let recs: Vec<LogRecord> = entries.iter().cloned().map(LogRecord::Entry).collect();
        match g.append_records(&recs) {
            Ok(()) => {
                for e in entries {
                    g.entries.insert(e.get_log_id().index, e);
                }
                drop(g);
                // Only now, after fsync, is openraft told the entries are durable.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = log_err(std::io::Error::new(e.kind(), e.to_string()));
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        g.append_records(&[LogRecord::Truncate {
            since: log_id.index,
        }])
        .map_err(log_err)?;
        g.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        let keep = g.entries.split_off(&(log_id.index + 1));
        g.entries = keep;
        if g.last_purged.is_none_or(|p| p < log_id) {
            g.last_purged = Some(log_id);
        }
        g.rewrite().map_err(log_err)?;
        Ok(())
    }
}
