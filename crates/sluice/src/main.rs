//! The `sluice` binary: broker and console tools.

mod broker_cmd;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "sluice", version, about = "Kafka-compatible event streaming in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker (single node by default: ./data, 127.0.0.1:9092).
    Broker(broker_cmd::BrokerArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Broker(args) => broker_cmd::run(args),
    }
}
