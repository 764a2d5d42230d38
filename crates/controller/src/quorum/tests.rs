//! Storage tests: openraft's own suite against our log store + state machine, and torn-tail
//! recovery of the log file.

use std::io::Write;

use openraft::storage::RaftLogStorage;
use openraft::testing::{log_id, StoreBuilder, Suite};
use openraft::{Entry, EntryPayload, RaftLogReader};

use super::log_store::LogStore;
use super::state_machine::StateMachine;
use super::types::{RaftCommand, StorageError, TypeConfig};
use crate::{BrokerRegistration, MetadataCommand};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(dir.path()).expect("open log");
        let sm = StateMachine::open(dir.path()).expect("open sm");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}

fn entry(index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(RaftCommand::Metadata(MetadataCommand::RegisterBroker(
            BrokerRegistration {
                incarnation_id: uuid::Uuid::nil(),
                node_id: index as i32,
                host: "h".into(),
                port: 9092,
                rack: None,
                inter_broker: None,
            },
        ))),
    }
}

async fn append(log: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
    use openraft::storage::RaftLogStorageExt;
    log.blocking_append(entries).await.expect("append");
}

#[tokio::test]
async fn torn_tail_is_truncated_and_log_stays_usable() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut log = LogStore::open(dir.path()).expect("open");
        append(&mut log, (1..=5).map(entry).collect()).await;
        log.truncate(log_id(1, 1, 5)).await.expect("truncate");
        append(&mut log, vec![entry(5)]).await;
        log.purge(log_id(1, 1, 1)).await.expect("purge");
    }
    let path = dir.path().join("log");
    let full = std::fs::read(&path).expect("read");
    // Cut the last record in half: a torn write.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(&[0, 0, 1, 0, 9, 9]).expect("write");
    drop(f);
    {
        let mut log = LogStore::open(dir.path()).expect("reopen after torn tail");
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 1)));
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
        let got = log.try_get_log_entries(0..100).await.expect("read");
        assert_eq!(
            got.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
            vec![2, 3, 4, 5]
        );
        assert_eq!(
            std::fs::read(&path).expect("read").len(),
            full.len(),
            "tail cut away"
        );
        append(&mut log, vec![entry(6)]).await;
    }
    // A record whose checksum fails at the very end is torn too.
    let mut data = std::fs::read(&path).expect("read");
    let n = data.len();
    data[n - 2] ^= 0xff;
    std::fs::write(&path, &data).expect("write");
    {
        let mut log = LogStore::open(dir.path()).expect("reopen after bad last crc");
        let state = log.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
    }
    // Damage in the middle, followed by good records, is corruption, not a torn tail.
    let mut data = std::fs::read(&path).expect("read");
    data[12] ^= 0xff;
    std::fs::write(&path, &data).expect("write");
    assert!(
        LogStore::open(dir.path()).is_err(),
        "mid-file damage must be refused"
    );
}

#[tokio::test]
async fn vote_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vote = openraft::Vote::new(3, 2);
    {
        let mut log = LogStore::open(dir.path()).expect("open");
        log.save_vote(&vote).await.expect("save");
    }
    let mut log = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(log.read_vote().await.expect("read"), Some(vote));
}
