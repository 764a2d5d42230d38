//! The replicated state machine (openraft `RaftStateMachine`) around [`Metadata`], and its
//! snapshots.
//!
//! The state machine lives in memory; what makes it durable is the snapshot file
//! `<data_dir>/__cluster_metadata/raft/snapshot` (one framed record, see `log_store`, holding
//! the snapshot meta and the [`SnapshotPayload`]), written atomically with fsync. After a
//! restart openraft re-applies the committed log entries after the snapshot.
//!
//! A command that [`Metadata::apply`] refuses is a deterministic no-op on every node: the
//! entry still counts as applied and the proposer gets the error back in [`ApplyResult`].

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::log_store::{read_atomic, write_atomic};
use super::types::{
    ApplyResult, Committed, Entry, LogId, RaftCommand, StorageError, StoredMembership, TypeConfig,
    WireError,
};
use crate::{ControllerError, Metadata};

/// What a snapshot carries (also the bytes sent to a lagging follower).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotPayload {
    /// Format version.
    pub format: u32,
    /// Whether any `Metadata`/`Seed` entry was applied (a later `Seed` is refused).
    pub seeded: bool,
    /// The metadata.
    pub metadata: Metadata,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, openraft::BasicNode>,
    payload: SnapshotPayload,
}

struct SmInner {
    dir: PathBuf,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    metadata: Metadata,
    seeded: bool,
    snapshot: Option<(SnapshotMeta<u64, openraft::BasicNode>, Vec<u8>)>,
    snapshot_seq: u64,
    tx: watch::Sender<Committed>,
}

impl SmInner {
    fn publish(&self) {
        self.tx.send_replace(Committed {
            offset: self.last_applied.map(|l| l.index).unwrap_or(0),
            metadata: Arc::new(self.metadata.clone()),
        });
    }
}

/// The state machine. Cheap to clone; clones share state (also the snapshot builder).
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<SmInner>>,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(&e)).into()
}

fn snap_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from the snapshot file if there is one.
    pub fn open(dir: &Path) -> std::io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let (tx, _) = watch::channel(Committed::default());
        let mut inner = SmInner {
            dir: dir.to_path_buf(),
            last_applied: None,
            membership: StoredMembership::default(),
            metadata: Metadata::default(),
            seeded: false,
            snapshot: None,
            snapshot_seq: 0,
            tx,
        };
        if let Some(bytes) = read_atomic(&dir.join("snapshot"))? {
            let file: SnapshotFile =
                serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
            let data = serde_json::to_vec(&file.payload).map_err(std::io::Error::other)?;
            inner.install(&file.meta, file.payload);
            inner.snapshot = Some((file.meta, data));
        }
        inner.publish();
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SmInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The applied state as a watch.
    pub fn subscribe(&self) -> watch::Receiver<Committed> {
        self.lock().tx.subscribe()
    }

    /// Whether a `Metadata` or `Seed` entry was applied.
    pub fn seeded(&self) -> bool {
        self.lock().seeded
    }
}

impl SmInner {
    fn install(&mut self, meta: &SnapshotMeta<u64, openraft::BasicNode>, p: SnapshotPayload) {
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.metadata = p.metadata;
        self.metadata.rebuild_index();
        self.seeded = p.seeded;
    }

    fn payload_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&SnapshotPayload {
            format: 1,
            seeded: self.seeded,
            metadata: self.metadata.clone(),
        })
    }

    /// Writes the snapshot file (atomically, fsynced) and keeps the snapshot in memory.
    fn persist_snapshot(
        &mut self,
        meta: SnapshotMeta<u64, openraft::BasicNode>,
        data: Vec<u8>,
    ) -> std::io::Result<()> {
        let payload: SnapshotPayload =
            serde_json::from_slice(&data).map_err(std::io::Error::other)?;
        let file = SnapshotFile {
            meta: meta.clone(),
            payload,
        };
        let json = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        write_atomic(&self.dir.join("snapshot"), &json)?;
        self.snapshot = Some((meta, data));
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let mut g = self.lock();
        let data = g.payload_bytes().map_err(snap_err)?;
        g.snapshot_seq += 1;
        let snapshot_id = match g.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, g.snapshot_seq),
            None => format!("none-{}", g.snapshot_seq),
        };
        let meta = SnapshotMeta {
            last_log_id: g.last_applied,
            last_membership: g.membership.clone(),
            snapshot_id,
        };
        g.persist_snapshot(meta.clone(), data.clone())
            .map_err(snap_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let g = self.lock();
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut g = self.lock();
        let mut out = Vec::new();
        for e in entries {
            g.last_applied = Some(e.log_id);
            let res = match e.payload {
                EntryPayload::Blank => ApplyResult::default(),
                EntryPayload::Membership(m) => {
                    g.membership = StoredMembership::new(Some(e.log_id), m);
                    ApplyResult::default()
                }
                EntryPayload::Normal(RaftCommand::Metadata(cmd)) => {
                    g.seeded = true;
                    match g.metadata.apply(&cmd) {
                        Ok(()) => ApplyResult::default(),
                        Err(err) => ApplyResult {
                            error: Some(WireError::from(&err)),
                        },
                    }
                }
                EntryPayload::Normal(RaftCommand::Seed(md)) => {
                    if g.seeded {
                        let err = ControllerError::InvalidRequest(
                            "the metadata quorum already holds state; seed ignored".into(),
                        );
                        ApplyResult {
                            error: Some(WireError::from(&err)),
                        }
                    } else {
                        g.seeded = true;
                        g.metadata = *md;
                        g.metadata.rebuild_index();
                        ApplyResult::default()
                    }
                }
            };
            out.push(res);
        }
        g.publish();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let payload: SnapshotPayload = serde_json::from_slice(&data).map_err(sm_err)?;
        let mut g = self.lock();
        g.persist_snapshot(meta.clone(), data).map_err(snap_err)?;
        g.install(meta, payload);
        g.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let g = self.lock();
        Ok(g.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}
