//! Single-node persistence of the metadata: a snapshot plus an append-only command log in
//! `<data_dir>/__cluster_metadata/`. See the crate docs for the on-disk format.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::ControllerError;
use crate::metadata::{Metadata, MetadataCommand};

/// Name of the metadata directory inside the data dir.
pub const METADATA_DIR: &str = "__cluster_metadata";
/// Log file name inside [`METADATA_DIR`].
pub const LOG_FILE: &str = "metadata.log";
/// Snapshot file name inside [`METADATA_DIR`].
pub const SNAPSHOT_FILE: &str = "snapshot.json";
const SNAPSHOT_TMP: &str = "snapshot.json.tmp";
/// Snapshot format version.
const SNAPSHOT_FORMAT: u32 = 1;
/// Default number of log entries after which the log is compacted into a snapshot.
pub const DEFAULT_SNAPSHOT_EVERY: usize = 1000;

/// Options for [`Controller::open_with_options`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Compact the log into a snapshot once it holds this many entries (minimum 1).
    pub snapshot_every: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
        }
    }
}

#[derive(Serialize)]
struct LogRecordRef<'a> {
    offset: u64,
    cmd: &'a MetadataCommand,
}

#[derive(Deserialize)]
struct LogRecord {
    offset: u64,
    cmd: MetadataCommand,
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    format: u32,
    last_offset: u64,
    metadata: &'a Metadata,
}

#[derive(Deserialize)]
struct Snapshot {
    format: u32,
    last_offset: u64,
    metadata: Metadata,
}

/// Encodes one framed line: 8 hex digits of CRC-32C of the JSON, a space, the JSON, `\n`.
fn frame(json: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(json.len() + 10);
    line.extend_from_slice(format!("{:08x} ", crc32c::crc32c(json)).as_bytes());
    line.extend_from_slice(json);
    line.push(b'\n');
    line
}

/// Checks a line (without its `\n`) and returns its JSON payload.
fn unframe(line: &[u8]) -> Option<&[u8]> {
    let (head, json) = (line.get(..8)?, line.get(9..)?);
    if line.get(8) != Some(&b' ') {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(head).ok()?, 16).ok()?;
    (crc32c::crc32c(json) == crc).then_some(json)
}

fn storage(context: &str, e: impl std::fmt::Display) -> ControllerError {
    ControllerError::Storage(format!("{context}: {e}"))
}

struct Inner {
    dir: PathBuf,
    log: File,
    /// Bytes of valid log.
    log_len: u64,
    /// Entries in the log file (including any already covered by the snapshot).
    log_entries: usize,
    /// Offset of the last command applied (0 = none).
    last_offset: u64,
    snapshot_every: usize,
    /// Set when the log could not be restored after a failed write; commits are refused.
    failed: bool,
}

/// Owns the metadata store and the current [`Metadata`]. `Send + Sync`; commits are
/// serialised, readers get a cheap `Arc` snapshot.
pub struct Controller {
    inner: Mutex<Inner>,
    current: RwLock<Arc<Metadata>>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("last_offset", &self.last_offset())
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// Opens `<data_dir>/__cluster_metadata/` (creating it), replays snapshot + log to rebuild
    /// the metadata, truncating a torn or corrupt last line. A store written for a different
    /// cluster id is refused.
    pub fn open(
        data_dir: &Path,
        cluster_id: &str,
        controller_id: i32,
    ) -> Result<Controller, ControllerError> {
        Self::open_with_options(data_dir, cluster_id, controller_id, StoreOptions::default())
    }

    /// [`Controller::open`] with explicit options.
    pub fn open_with_options(
        data_dir: &Path,
        cluster_id: &str,
        controller_id: i32,
        options: StoreOptions,
    ) -> Result<Controller, ControllerError> {
        let dir = data_dir.join(METADATA_DIR);
        fs::create_dir_all(&dir).map_err(|e| storage("creating metadata dir", e))?;
        let tmp = dir.join(SNAPSHOT_TMP);
        if tmp.exists() {
            fs::remove_file(&tmp).map_err(|e| storage("removing stale snapshot temp", e))?;
        }

        let snapshot_path = dir.join(SNAPSHOT_FILE);
        let (mut md, snapshot_offset, have_snapshot) = if snapshot_path.exists() {
            let snap = read_snapshot(&snapshot_path)?;
            if snap.metadata.cluster_id != cluster_id {
                return Err(ControllerError::Storage(format!(
                    "metadata in {} belongs to cluster '{}', not '{cluster_id}'",
                    dir.display(),
                    snap.metadata.cluster_id
                )));
            }
            (snap.metadata, snap.last_offset, true)
        } else {
            (Metadata::new(cluster_id, controller_id), 0, false)
        };
        md.controller_id = controller_id;
        md.rebuild_index();

        let log_path = dir.join(LOG_FILE);
        let replay = replay_log(&log_path, &mut md, snapshot_offset)?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| storage("opening metadata log", e))?;
        if replay.truncate_to < replay.file_len {
            tracing::warn!(
                path = %log_path.display(),
                valid = replay.truncate_to,
                len = replay.file_len,
                "truncating torn/corrupt tail of the metadata log"
            );
            log.set_len(replay.truncate_to)
                .and_then(|_| log.sync_all())
                .map_err(|e| storage("truncating metadata log", e))?;
        }

        let mut inner = Inner {
            dir,
            log,
            log_len: replay.truncate_to,
            log_entries: replay.entries,
            last_offset: replay.last_offset.max(snapshot_offset),
            snapshot_every: options.snapshot_every.max(1),
            failed: false,
        };
        if !have_snapshot && replay.entries == 0 {
            // Fresh store: record the cluster id right away.
            write_snapshot(&inner.dir, &md, inner.last_offset)?;
        } else if inner.log_entries >= inner.snapshot_every {
            compact_locked(&mut inner, &md)?;
        }
        Ok(Controller {
            inner: Mutex::new(inner),
            current: RwLock::new(Arc::new(md)),
        })
    }

    /// The current metadata (a cheap `Arc` clone).
    pub fn metadata(&self) -> Arc<Metadata> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Offset of the last committed command (0 when none).
    pub fn last_offset(&self) -> u64 {
        self.lock().last_offset
    }

    /// Applies a command: validates it against the current state, appends it to the log with
    /// fsync, then publishes the new metadata. A command that changes nothing (e.g. the same
    /// broker registering again) is not written.
    pub fn commit(&self, cmd: MetadataCommand) -> Result<Arc<Metadata>, ControllerError> {
        let mut inner = self.lock();
        if inner.failed {
            return Err(ControllerError::Storage(
                "metadata log is in a failed state after an earlier write error".into(),
            ));
        }
        let current = self.metadata();
        let mut next = (*current).clone();
        next.apply(&cmd)?;
        if next == *current {
            return Ok(current);
        }
        let offset = inner.last_offset + 1;
        let json = serde_json::to_vec(&LogRecordRef { offset, cmd: &cmd })
            .map_err(|e| storage("encoding command", e))?;
        let line = frame(&json);
        let written = inner
            .log
            .write_all(&line)
            .and_then(|_| inner.log.sync_data());
        if let Err(e) = written {
            let len = inner.log_len;
            let restored = inner.log.set_len(len).and_then(|_| inner.log.sync_all());
            if restored.is_err() {
                inner.failed = true;
            }
            return Err(storage("appending to metadata log", e));
        }
        inner.log_len += line.len() as u64;
        inner.log_entries += 1;
        inner.last_offset = offset;
        let next = Arc::new(next);
        match self.current.write() {
            Ok(mut g) => *g = Arc::clone(&next),
            Err(p) => *p.into_inner() = Arc::clone(&next),
        }
        if inner.log_entries >= inner.snapshot_every {
            // The command is durable already; a failed compaction is retried next time.
            if let Err(e) = compact_locked(&mut inner, &next) {
                tracing::warn!(error = %e, "metadata snapshot failed");
            }
        }
        Ok(next)
    }

    /// Writes a snapshot of the current metadata and empties the log.
    pub fn compact(&self) -> Result<(), ControllerError> {
        let mut inner = self.lock();
        let md = self.metadata();
        compact_locked(&mut inner, &md)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_snapshot(path: &Path) -> Result<Snapshot, ControllerError> {
    let bytes = fs::read(path).map_err(|e| storage("reading snapshot", e))?;
    let line = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let json = unframe(line).ok_or_else(|| {
        ControllerError::Storage(format!("snapshot {} is corrupt", path.display()))
    })?;
    let snap: Snapshot =
        serde_json::from_slice(json).map_err(|e| storage("decoding snapshot", e))?;
    if snap.format != SNAPSHOT_FORMAT {
        return Err(ControllerError::Storage(format!(
            "unsupported snapshot format {}",
            snap.format
        )));
    }
    Ok(snap)
}

fn write_snapshot(dir: &Path, md: &Metadata, last_offset: u64) -> Result<(), ControllerError> {
    let json = serde_json::to_vec(&SnapshotRef {
        format: SNAPSHOT_FORMAT,
        last_offset,
        metadata: md,
    })
    .map_err(|e| storage("encoding snapshot", e))?;
    let tmp = dir.join(SNAPSHOT_TMP);
    let mut f = File::create(&tmp).map_err(|e| storage("creating snapshot", e))?;
    f.write_all(&frame(&json))
        .and_then(|_| f.sync_all())
        .map_err(|e| storage("writing snapshot", e))?;
    drop(f);
    fs::rename(&tmp, dir.join(SNAPSHOT_FILE)).map_err(|e| storage("renaming snapshot", e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| storage("syncing metadata dir", e))?;
    Ok(())
}

fn compact_locked(inner: &mut Inner, md: &Metadata) -> Result<(), ControllerError> {
    write_snapshot(&inner.dir, md, inner.last_offset)?;
    // Entries left behind by a crash here are <= the snapshot offset and skipped on replay.
    inner
        .log
        .set_len(0)
        .and_then(|_| inner.log.sync_all())
        .map_err(|e| storage("truncating metadata log after snapshot", e))?;
    inner.log_len = 0;
    inner.log_entries = 0;
    Ok(())
}

struct Replay {
    file_len: u64,
    truncate_to: u64,
    entries: usize,
    last_offset: u64,
}

/// Replays the log onto `md`, skipping entries covered by the snapshot. A bad final line
/// (torn write) marks the truncation point; a bad line followed by more data is corruption.
fn replay_log(
    path: &Path,
    md: &mut Metadata,
    snapshot_offset: u64,
) -> Result<Replay, ControllerError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes)
                .map_err(|e| storage("reading metadata log", e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(storage("opening metadata log", e)),
    }
    let file_len = bytes.len() as u64;
    let mut pos = 0usize;
    let mut entries = 0usize;
    let mut last_offset = snapshot_offset;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            break; // torn: no terminating newline
        };
        let record =
            unframe(&rest[..nl]).and_then(|json| serde_json::from_slice::<LogRecord>(json).ok());
        let Some(record) = record else {
            if pos + nl + 1 == bytes.len() {
                break; // bad last line: treat as torn
            }
            return Err(ControllerError::Storage(format!(
                "metadata log {} is corrupt at byte {pos}",
                path.display()
            )));
        };
        if record.offset > snapshot_offset {
            if record.offset != last_offset + 1 {
                return Err(ControllerError::Storage(format!(
                    "metadata log gap: offset {} follows {last_offset}",
                    record.offset
                )));
            }
            md.apply(&record.cmd).map_err(|e| {
                ControllerError::Storage(format!(
                    "replaying metadata log offset {}: {e}",
                    record.offset
                ))
            })?;
            last_offset = record.offset;
        }
        entries += 1;
        pos += nl + 1;
    }
    Ok(Replay {
        file_len,
        truncate_to: pos as u64,
        entries,
        last_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerSettings;
    use crate::metadata::{plan_create_topic, BrokerRegistration};
    use std::collections::BTreeMap;

    fn register(c: &Controller, id: i32) {
        c.commit(MetadataCommand::RegisterBroker(BrokerRegistration {
            incarnation_id: uuid::Uuid::nil(),
            node_id: id,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            inter_broker: None,
        }))
        .unwrap();
    }

    fn create(c: &Controller, name: &str) -> Result<Arc<Metadata>, ControllerError> {
        let cmd = plan_create_topic(
            &c.metadata(),
            name,
            2,
            1,
            &BTreeMap::new(),
            &BrokerSettings::default(),
        )?;
        c.commit(cmd)
    }

    fn log_path(dir: &Path) -> PathBuf {
        dir.join(METADATA_DIR).join(LOG_FILE)
    }

    #[test]
    fn is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Controller>();
    }

    #[test]
    fn roundtrip_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let before = {
            let c = Controller::open(tmp.path(), "clu", 1).unwrap();
            assert_eq!(c.metadata().cluster_id, "clu");
            register(&c, 1);
            create(&c, "a").unwrap();
            create(&c, "b").unwrap();
            let md = c
                .commit(MetadataCommand::DeleteTopic { name: "a".into() })
                .unwrap();
            assert!(md.topic("a").is_none());
            assert_eq!(c.last_offset(), 4);
            // Re-registering the same broker writes nothing.
            register(&c, 1);
            assert_eq!(c.last_offset(), 4);
            // A rejected command is not logged.
            assert_eq!(create(&c, "b").unwrap_err().error_code(), 36);
            assert_eq!(c.last_offset(), 4);
            c.metadata()
        };
        let c = Controller::open(tmp.path(), "clu", 7).unwrap();
        let after = c.metadata();
        assert_eq!(after.controller_id, 7);
        assert_eq!(after.topics, before.topics);
        assert_eq!(after.brokers, before.brokers);
        let id = after.topics["b"].id;
        assert_eq!(after.topic_by_id(&id).unwrap().name, "b");
        assert_eq!(c.last_offset(), 4);
        create(&c, "c").unwrap();
        assert_eq!(c.last_offset(), 5);
    }

    #[test]
    fn torn_tail_truncated() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let c = Controller::open(tmp.path(), "clu", 1).unwrap();
            register(&c, 1);
            create(&c, "a").unwrap();
        }
        let path = log_path(tmp.path());
        let good_len = fs::metadata(&path).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"1234abcd {\"offset\":3,\"cmd\":{\"DeleteT")
            .unwrap();
        drop(f);
        {
            let c = Controller::open(tmp.path(), "clu", 1).unwrap();
            assert!(c.metadata().topic("a").is_some());
            assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
            create(&c, "b").unwrap();
        }
        let c = Controller::open(tmp.path(), "clu", 1).unwrap();
        assert!(c.metadata().topic("b").is_some());
        assert_eq!(c.last_offset(), 3);
    }

    #[test]
    fn corrupt_last_line_truncated_but_middle_is_error() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let c = Controller::open(tmp.path(), "clu", 1).unwrap();
            register(&c, 1);
            create(&c, "a").unwrap();
            create(&c, "b").unwrap();
        }
        let path = log_path(tmp.path());
        let mut bytes = fs::read(&path).unwrap();
        // Flip a byte inside the last line's JSON: bad CRC on a complete last line.
        let last_start = bytes[..bytes.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        bytes[last_start + 20] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        {
            let c = Controller::open(tmp.path(), "clu", 1).unwrap();
            assert!(c.metadata().topic("a").is_some());
            assert!(c.metadata().topic("b").is_none());
            assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64);
        }
        // Corrupt the first line while later lines are intact: refuse to open.
        let mut bytes = fs::read(&path).unwrap();
        bytes[12] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        let e = Controller::open(tmp.path(), "clu", 1).unwrap_err();
        assert_eq!(e.error_code(), 56);
    }

    #[test]
    fn compaction_and_crash_between_snapshot_and_truncate() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = StoreOptions { snapshot_every: 3 };
        let path = log_path(tmp.path());
        let expected;
        let stale_log;
        {
            let c = Controller::open_with_options(tmp.path(), "clu", 1, opts.clone()).unwrap();
            register(&c, 1);
            create(&c, "t0").unwrap();
            stale_log = fs::read(&path).unwrap(); // 2 entries, about to be compacted
            for i in 1..6 {
                create(&c, &format!("t{i}")).unwrap();
            }
            // 7 commits with snapshot every 3: log holds 1 entry.
            let text = fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), 1);
            assert!(tmp.path().join(METADATA_DIR).join(SNAPSHOT_FILE).exists());
            assert_eq!(c.last_offset(), 7);
            expected = c.metadata();
        }
        {
            let c = Controller::open_with_options(tmp.path(), "clu", 1, opts.clone()).unwrap();
            assert_eq!(c.metadata().topics, expected.topics);
            assert_eq!(c.last_offset(), 7);
            c.compact().unwrap();
        }
        // Simulate a crash after the snapshot rename but before the log was emptied: the log
        // still holds old entries already covered by the snapshot.
        fs::write(&path, &stale_log).unwrap();
        let c = Controller::open_with_options(tmp.path(), "clu", 1, opts).unwrap();
        assert_eq!(c.metadata().topics, expected.topics);
        assert_eq!(c.last_offset(), 7);
        create(&c, "after").unwrap();
        assert_eq!(c.last_offset(), 8);
    }

    #[test]
    fn cluster_id_mismatch_refused() {
        let tmp = tempfile::tempdir().unwrap();
        drop(Controller::open(tmp.path(), "one", 1).unwrap());
        let e = Controller::open(tmp.path(), "two", 1).unwrap_err();
        assert_eq!(e.error_code(), 56);
        assert!(Controller::open(tmp.path(), "one", 1).is_ok());
    }

    #[test]
    fn concurrent_commits() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Arc::new(
            Controller::open_with_options(tmp.path(), "clu", 1, StoreOptions { snapshot_every: 5 })
                .unwrap(),
        );
        register(&c, 1);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..5 {
                        let name = format!("t{t}-{i}");
                        // Planning races with other commits; retry on a stale plan is not
                        // needed because names are unique.
                        create(&c, &name).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.metadata().topics.len(), 20);
        drop(c);
        let c = Controller::open(tmp.path(), "clu", 1).unwrap();
        assert_eq!(c.metadata().topics.len(), 20);
        assert_eq!(c.last_offset(), 21);
    }

    /// Random mix of planned commands: the store (with frequent snapshots and reopens) must
    /// always agree with a plain in-memory state machine fed the same commands.
    #[test]
    fn replay_matches_in_memory_state_machine() {
        use crate::metadata::{plan_alter_configs, plan_create_partitions, plan_delete_topic};
        let tmp = tempfile::tempdir().unwrap();
        let opts = StoreOptions { snapshot_every: 4 };
        let mut c = Controller::open_with_options(tmp.path(), "clu", 1, opts.clone()).unwrap();
        let mut mirror = Metadata::new("clu", 1);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut applied = 0;
        for step in 0..200 {
            let md = c.metadata();
            let name = format!("t{}", next(8));
            let cmd = match next(5) {
                0 => Ok(MetadataCommand::RegisterBroker(BrokerRegistration {
                    incarnation_id: uuid::Uuid::nil(),
                    node_id: next(3) as i32,
                    host: "127.0.0.1".into(),
                    port: 9000 + next(3) as i32,
                    rack: None,
                    inter_broker: None,
                })),
                1 => plan_create_topic(
                    &md,
                    &name,
                    1 + next(3) as i32,
                    1,
                    &BTreeMap::new(),
                    &BrokerSettings::default(),
                ),
                2 => plan_delete_topic(&md, &name),
                3 => plan_create_partitions(&md, &name, 1 + next(6) as i32),
                _ => plan_alter_configs(
                    &md,
                    &name,
                    &[(
                        "retention.ms".to_string(),
                        (next(2) == 0).then(|| next(100_000).to_string()),
                    )]
                    .into(),
                ),
            };
            let Ok(cmd) = cmd else { continue };
            let mut expect = mirror.clone();
            let r_mem = expect.apply(&cmd);
            let r_store = c.commit(cmd);
            assert_eq!(r_mem.is_ok(), r_store.is_ok(), "step {step}");
            if r_mem.is_ok() {
                mirror = expect;
                applied += 1;
            }
            if step % 37 == 0 {
                drop(c);
                c = Controller::open_with_options(tmp.path(), "clu", 1, opts.clone()).unwrap();
            }
            assert_eq!(*c.metadata(), mirror, "step {step}");
        }
        assert!(applied > 50, "only {applied} commands applied");
    }

    #[test]
    fn frame_unframe() {
        let f = frame(b"{\"a\":1}");
        assert_eq!(unframe(&f[..f.len() - 1]), Some(&b"{\"a\":1}"[..]));
        assert_eq!(unframe(b"zzzzzzzz {}"), None);
        assert_eq!(unframe(b"short"), None);
    }
}
