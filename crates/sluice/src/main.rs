//! The `sluice` binary: broker and console tools.

mod alloc;
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
    /// List, describe (with lag), delete consumer groups and reset their offsets.
    Groups(cli::GroupsArgs),
    /// Describe and alter topic and broker configs.
    Configs(cli::ConfigsArgs),
    /// Cluster status: nodes, metadata quorum (leader, voters' lag), partitions led.
    Cluster(cli::ClusterArgs),
}

/// `sluice --bootstrap-server H:P topics ...`: the shared connection flag may also come before
/// the subcommand (as in Kafka's and rpk's examples); it is moved behind it for clap.
fn hoist_bootstrap(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let flag = |a: &std::ffi::OsString| a.to_str().map(|s| s.to_string());
    let mut moved = Vec::new();
    while args.len() > 1 {
        match flag(&args[1]).as_deref() {
            Some("--bootstrap-server") if args.len() > 2 => {
                moved.push(args.remove(1));
                moved.push(args.remove(1));
            }
            Some(s) if s.starts_with("--bootstrap-server=") => moved.push(args.remove(1)),
            _ => break,
        }
    }
    if !moved.is_empty() && args.len() > 1 {
        let at = 2.min(args.len());
        for (i, a) in moved.into_iter().enumerate() {
            args.insert(at + i, a);
        }
    }
    args
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_from(hoist_bootstrap(std::env::args_os().collect()));
    match cli.command {
        Command::Broker(args) => {
            alloc::register_stats();
            broker_cmd::run(args)
        }
        Command::Topics(args) => cli::run(cli::Tool::Topics(args)),
        Command::Produce(args) => cli::run(cli::Tool::Produce(args)),
        Command::Consume(args) => cli::run(cli::Tool::Consume(args)),
        Command::Groups(args) => cli::run(cli::Tool::Groups(args)),
        Command::Configs(args) => cli::run(cli::Tool::Configs(args)),
        Command::Cluster(args) => cli::run(cli::Tool::Cluster(args)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bootstrap_server_before_the_subcommand() {
        let args = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let got = hoist_bootstrap(args(&[
            "sluice",
            "--bootstrap-server",
            "h:1",
            "topics",
            "create",
            "t",
        ]));
        assert_eq!(
            got,
            args(&[
                "sluice",
                "topics",
                "--bootstrap-server",
                "h:1",
                "create",
                "t"
            ])
        );
        let cli = Cli::try_parse_from(got).unwrap();
        assert!(matches!(cli.command, Command::Topics(_)));
        let same = args(&["sluice", "topics", "list"]);
        assert_eq!(hoist_bootstrap(same.clone()), same);
    }

    #[test]
    fn console_tools_parse() {
        let cli = Cli::try_parse_from([
            "sluice",
            "topics",
            "--bootstrap-server",
            "127.0.0.1:1",
            "create",
            "t",
            "--partitions",
            "3",
            "--config",
            "retention.ms=1",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Topics(_)));
        // Shared options may also follow the subcommand.
        let cli = Cli::try_parse_from(["sluice", "topics", "list", "--output", "json"]).unwrap();
        assert!(matches!(cli.command, Command::Topics(_)));
        let cli = Cli::try_parse_from([
            "sluice",
            "consume",
            "t",
            "--from-beginning",
            "--max-messages",
            "5",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Consume(_)));
        assert!(Cli::try_parse_from([
            "sluice",
            "consume",
            "t",
            "--from-beginning",
            "--offset",
            "3"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["sluice", "produce", "t", "--acks", "2"]).is_err());
        assert!(
            Cli::try_parse_from(["sluice", "produce", "t", "--compression", "brotli"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["sluice", "topics", "create", "t", "--config", "novalue"])
                .is_err()
        );
    }
}
