//! `sluice broker`: configuration loading (flag > env > TOML file > default) and startup.
//! Owned by the broker work; main.rs only dispatches to it.

use clap::Args;

/// Arguments of `sluice broker`.
#[derive(Debug, Args)]
pub struct BrokerArgs {}

/// Runs the broker until SIGTERM/Ctrl-C.
pub fn run(_args: BrokerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
