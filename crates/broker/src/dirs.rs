//! Data directory housekeeping: the lock file and `meta.properties`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::BrokerError;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BrokerError + '_ {
    move |source| BrokerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Holds the exclusive lock on a data directory for as long as it lives. The kernel releases
/// a flock when the process dies, so a restart right after SIGKILL finds the directory free.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Creates the data dir if needed and takes its lock.
pub fn lock_data_dir(dir: &Path) -> Result<DirLock, BrokerError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    // SAFETY: flock on a valid, owned file descriptor has no memory-safety preconditions.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(BrokerError::DataDirLocked(dir.to_path_buf()));
    }
    Ok(DirLock { _file: file })
}

/// Identity of a formatted data dir.
#[derive(Debug, Clone)]
pub struct MetaProperties {
    /// Cluster id (22 characters, URL-safe base64 of a random UUID, like Kafka's).
    pub cluster_id: String,
}

/// Reads `meta.properties`, or formats the dir by writing a new one with a fresh cluster id.
pub fn read_meta(dir: &Path, node_id: i32) -> Result<Option<MetaProperties>, BrokerError> {
    let path = dir.join("meta.properties");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut cluster_id = None;
            let mut stored_node = None;
            for line in text.lines() {
                let line = line.trim();
                if line.starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = line.split_once('=') {
                    match k.trim() {
                        "cluster.id" => cluster_id = Some(v.trim().to_string()),
                        "node.id" => stored_node = v.trim().parse::<i32>().ok(),
                        _ => {}
                    }
                }
            }
            let cluster_id = cluster_id.ok_or_else(|| {
                BrokerError::MetaProperties(format!(
                    "{} has no cluster.id; restore it or remove the data directory",
                    path.display()
                ))
            })?;
            if let Some(n) = stored_node {
                if n != node_id {
                    return Err(BrokerError::MetaProperties(format!(
                        "{} belongs to node.id={n} but this broker was started with --node-id {node_id}; \
                         use --node-id {n} or another --data-dir",
                        path.display()
                    )));
                }
            }
            Ok(Some(MetaProperties { cluster_id }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Writes `meta.properties` for a data dir that joined cluster `cluster_id` as `node_id`.
pub fn write_meta(dir: &Path, node_id: i32, cluster_id: &str) -> Result<(), BrokerError> {
    let text = format!(
        "#Written by sluice on first start\nversion=1\ncluster.id={cluster_id}\nnode.id={node_id}\n"
    );
    write_atomically(&dir.join("meta.properties"), text.as_bytes())
}

/// The metadata of a data dir written by the single-node version (its own metadata log in
/// `__cluster_metadata/metadata.log` and no quorum files yet), to seed the quorum with; `None`
/// for a new or already migrated dir. The old store's files are left in place (unused).
pub fn migrate_single_node_store(
    dir: &Path,
    cluster_id: &str,
    node_id: i32,
) -> Result<Option<sluice_controller::Metadata>, BrokerError> {
    let old = dir.join(sluice_controller::store::METADATA_DIR);
    let has_old = old.join(sluice_controller::store::LOG_FILE).exists()
        || old.join(sluice_controller::store::SNAPSHOT_FILE).exists();
    if !has_old || sluice_controller::quorum::quorum_dir(dir).exists() {
        return Ok(None);
    }
    let store = sluice_controller::Controller::open(dir, cluster_id, node_id)?;
    let mut md = (*store.metadata()).clone();
    // Producer ids handed out by the old per-dir allocator must never be given again.
    if let Ok(text) = std::fs::read_to_string(dir.join("producer-id-block")) {
        if let Ok(bound) = text.trim().parse::<i64>() {
            md.next_producer_id = md.next_producer_id.max(bound);
        }
    }
    if md.cluster_id.is_empty() {
        md.cluster_id = cluster_id.to_string();
    }
    tracing::info!(
        topics = md.topics.len(),
        "upgrading a single-node data dir: its metadata seeds the quorum"
    );
    Ok(Some(md))
}

/// Writes a file via temp + fsync + rename + dir fsync.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<(), BrokerError> {
    let tmp: PathBuf = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(data).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(parent) = path.parent() {
        if let Ok(d) = File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// [`write_atomically`] without the fsyncs, for a caller that syncs the whole file system
/// once afterwards (`Backend::sync_all`).
pub fn write_atomically_unsynced(path: &Path, data: &[u8]) -> Result<(), BrokerError> {
    let tmp: PathBuf = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// A random UUID in URL-safe base64 without padding (22 characters), as Kafka formats ids.
pub fn new_cluster_id() -> String {
    base64_url(uuid::Uuid::new_v4().as_bytes())
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_shape() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(base64_url(b"Man"), "TWFu");
        assert_eq!(base64_url(b"Ma"), "TWE");
    }

    #[test]
    fn format_then_reload_and_node_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_meta(dir.path(), 3).unwrap().is_none());
        write_meta(dir.path(), 3, "abc").unwrap();
        let b = read_meta(dir.path(), 3).unwrap().unwrap();
        assert_eq!(b.cluster_id, "abc");
        assert!(read_meta(dir.path(), 4).is_err());
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).unwrap();
        // flock locks are per open file description: a second open in this process conflicts too.
        assert!(matches!(
            lock_data_dir(dir.path()),
            Err(BrokerError::DataDirLocked(_))
        ));
        drop(first);
        assert!(lock_data_dir(dir.path()).is_ok());
    }
}
