//! Console tools: `sluice topics`, `sluice produce`, `sluice consume`, `sluice groups`,
//! `sluice configs`, `sluice cluster`.
//!
//! Each tool runs on its own tokio runtime (the binary's `main` stays synchronous because
//! `sluice broker` builds its own runtime). Errors are printed as `error: ...` with exit code 1;
//! a closed stdout (e.g. `| head`) ends a tool quietly with exit code 0.

mod cluster;
mod configs;
mod consume;
mod groups;
mod output;
mod produce;
mod topics;

use std::time::Duration;

use clap::{Args, ValueEnum};
use sluice_client::{Client, ClientConfig};

pub use cluster::ClusterArgs;
pub use configs::ConfigsArgs;
pub use consume::ConsumeArgs;
pub use groups::GroupsArgs;
pub use produce::ProduceArgs;
pub use topics::TopicsArgs;

/// Output format of a console tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable aligned columns / plain lines.
    Table,
    /// Machine-readable JSON.
    Json,
}

/// Connection and output options shared by every console tool.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Broker(s) to bootstrap from, comma-separated.
    #[arg(
        long,
        global = true,
        env = "SLUICE_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT[,HOST:PORT...]"
    )]
    pub bootstrap_server: String,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

impl CommonArgs {
    async fn connect(&self) -> anyhow::Result<Client> {
        let config = ClientConfig {
            bootstrap: self.bootstrap_server.clone(),
            client_id: "sluice-cli".into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retries: 8,
        };
        Ok(Client::connect(config).await?)
    }
}

/// A console tool invocation.
pub enum Tool {
    /// `sluice topics ...`
    Topics(TopicsArgs),
    /// `sluice produce ...`
    Produce(ProduceArgs),
    /// `sluice consume ...`
    Consume(ConsumeArgs),
    /// `sluice groups ...`
    Groups(GroupsArgs),
    /// `sluice configs ...`
    Configs(ConfigsArgs),
    /// `sluice cluster ...`
    Cluster(ClusterArgs),
    /// `sluice bench ...`
    Bench(crate::bench::BenchArgs),
}

/// Runs a console tool to completion and exits the process with its status.
pub fn run(tool: Tool) -> ! {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        match tool {
            Tool::Topics(args) => topics::run(args).await,
            Tool::Produce(args) => produce::run(args).await,
            Tool::Consume(args) => consume::run(args).await,
            Tool::Groups(args) => groups::run(args).await,
            Tool::Configs(args) => configs::run(args).await,
            Tool::Cluster(args) => cluster::run(args).await,
            Tool::Bench(args) => crate::bench::run(args).await,
        }
    });
    // Do not wait for the blocking stdin reader thread (it may be parked in a read).
    runtime.shutdown_background();
    let code = match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code)
}

/// True if the error (or one of its causes) is a closed-pipe write error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_pipe_is_detected_through_context() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
        let e = anyhow::Error::new(io).context("writing output");
        assert!(is_broken_pipe(&e));
        let other = anyhow::anyhow!("something else");
        assert!(!is_broken_pipe(&other));
    }
}
