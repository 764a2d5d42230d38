//! Plan against the current metadata, commit, and plan again when the commit is refused: the
//! shape of the admin requests that decide per item (ElectLeaders, AlterPartitionReassignments)
//! and commit the accepted items as one all-or-nothing command.

use sluice_controller::{ControllerError, Metadata, MetadataCommand};

use crate::state::Broker;

/// How often a plan whose commit was refused (the state moved in between) is made again.
const ATTEMPTS: usize = 3;

/// Runs `plan` (per-item results and the command carrying the accepted items, if any) and
/// commits its command, planning again up to [`ATTEMPTS`] times when the commit is refused.
/// If the last commit is refused too, every accepted item (`error_of` gives `None`) gets the
/// commit's error. `what` names the change in logs. The caller holds the admin lock.
pub(super) async fn plan_and_commit<R>(
    broker: &Broker,
    what: &str,
    mut plan: impl FnMut(&Metadata) -> (Vec<R>, Option<MetadataCommand>),
    error_of: impl Fn(&mut R) -> &mut Option<ControllerError>,
) -> Vec<R> {
    let mut results = Vec::new();
    let mut last_error: Option<ControllerError> = None;
    for _ in 0..ATTEMPTS {
        let md = broker.metadata();
        let (planned, command) = plan(&md);
        results = planned;
        let Some(cmd) = command else {
            last_error = None;
            break;
        };
        match broker.commit(cmd).await {
            Ok(_) => {
                last_error = None;
                let accepted = results
                    .iter_mut()
                    .map(|r| error_of(r).is_none())
                    .filter(|ok| *ok)
                    .count();
                tracing::info!(accepted, "{what} committed");
                break;
            }
            Err(e) => {
                tracing::debug!("{what} refused at commit ({e}); planning again");
                last_error = Some(e);
            }
        }
    }
    if let Some(e) = last_error {
        for r in results.iter_mut() {
            let err = error_of(r);
            if err.is_none() {
                *err = Some(e.clone());
            }
        }
    }
    results
}
