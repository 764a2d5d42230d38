//! The `sluice` binary: broker and console tools.

mod alloc;
mod bench;
mod broker_cmd;
mod cli;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

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
    /// Load generator: producer and consumer throughput, latency percentiles, end-to-end latency.
    Bench(bench::BenchArgs),
    /// Print a shell completion script (e.g. `sluice completions bash > /etc/bash_completion.d/sluice`).
    Completions {
        /// Shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page in roff (e.g. `sluice man | man -l -`, `sluice man topics create`).
    Man {
        /// Subcommand path whose page to print (default: the `sluice` page).
        command: Vec<String>,
    },
}

/// Writes a generated document to stdout; a closed pipe (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The completion script of `shell` for the `sluice` command line.
fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut out);
    out
}

/// The roff man page of `sluice` or of the subcommand at `path` (titled `sluice-topics-create`).
fn man_page(path: &[String]) -> anyhow::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    // Building gives subcommands their display names (`sluice-topics`) and bin names.
    cmd.build();
    for part in path {
        let sub = cmd
            .find_subcommand(part)
            .with_context(|| {
                format!(
                    "'{}' has no subcommand '{part}'",
                    cmd.get_bin_name().unwrap_or("sluice")
                )
            })?
            .clone();
        cmd = sub;
    }
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .source(format!("sluice {}", env!("CARGO_PKG_VERSION")))
        .render(&mut out)?;
    Ok(out)
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
        Command::Bench(args) => cli::run(cli::Tool::Bench(args)),
        Command::Completions { shell } => write_stdout(&completions(shell)),
        Command::Man { command } => match man_page(&command) {
            Ok(page) => write_stdout(&page),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::exit(2)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn completions_cover_the_subcommands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = String::from_utf8(completions(shell)).unwrap();
            assert!(script.contains("reset-offsets"), "{shell}");
            assert!(script.contains("bootstrap-server"), "{shell}");
        }
    }

    #[test]
    fn man_pages_render_for_commands_and_subcommands() {
        let top = String::from_utf8(man_page(&[]).unwrap()).unwrap();
        assert!(
            top.starts_with(".ie") || top.contains(".TH sluice"),
            "{top}"
        );
        assert!(top.contains("completions"));
        let sub =
            String::from_utf8(man_page(&["topics".into(), "create".into()]).unwrap()).unwrap();
        assert!(
            sub.contains(".TH sluice-topics-create 1  \"sluice "),
            "{sub}"
        );
        assert!(sub.contains("partitions"));
        assert!(man_page(&["nope".into()]).is_err());
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
