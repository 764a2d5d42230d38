//! The `sluice` binary: broker and console tools.

mod broker_cmd;
mod cli;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Kafka-compatible event streaming in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker (single node by default: ./data, 127.0.0.1:9092).
    Broker(broker_cmd::BrokerArgs),
    /// Create, list, describe, alter and delete topics.
    Topics(cli::TopicsArgs),
    /// Write stdin lines to a topic, one record per line.
    Produce(cli::ProduceArgs),
    /// Print records of a topic to stdout.
    Consume(cli::ConsumeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Broker(args) => broker_cmd::run(args),
        Command::Topics(args) => cli::run(cli::Tool::Topics(args)),
        Command::Produce(args) => cli::run(cli::Tool::Produce(args)),
        Command::Consume(args) => cli::run(cli::Tool::Consume(args)),
    }
}
