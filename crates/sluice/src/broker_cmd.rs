//! `sluice broker`: configuration loading (flag > environment > TOML file > default) and startup.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use sluice_broker::{BrokerConfig, BrokerSettings};

/// Arguments of `sluice broker`. Every flag can also be set as `SLUICE_<NAME>` in the
/// environment or in the TOML file given by `--config`; a flag beats the environment, which
/// beats the file, which beats the built-in default.
#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// TOML config file: keys `listen`, `advertised`, `data-dir`, `node-id`, `http`,
    /// `log-level`, `log-format`, plus Kafka broker settings as quoted keys
    /// (`"num.partitions" = 3`).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka listener address [default: 127.0.0.1:9092].
    #[arg(long, env = "SLUICE_LISTEN")]
    pub listen: Option<String>,
    /// Address given to clients in Metadata [default: the listen address].
    #[arg(long, env = "SLUICE_ADVERTISED")]
    pub advertised: Option<String>,
    /// Data directory [default: ./data].
    #[arg(long, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Node id of this broker [default: 1].
    #[arg(long, env = "SLUICE_NODE_ID")]
    pub node_id: Option<i32>,
    /// HTTP listener for /health and /metrics, or `off` [default: 127.0.0.1:9644].
    #[arg(long, env = "SLUICE_HTTP")]
    pub http: Option<String>,
    /// Address of this node's metadata-quorum (Raft) listener, `HOST:PORT`. Needed when this
    /// node is a voter in `--controller-quorum`.
    #[arg(long, env = "SLUICE_CONTROLLER_LISTEN")]
    pub controller_listen: Option<String>,
    /// The metadata quorum's voters, `ID@HOST:PORT,...` (their `--controller-listen`
    /// addresses). Without it the node is a quorum of one.
    #[arg(long, env = "SLUICE_CONTROLLER_QUORUM")]
    pub controller_quorum: Option<String>,
    /// `broker`, `controller` or `combined` (default: combined when --node-id is in the
    /// quorum, broker otherwise).
    #[arg(long, env = "SLUICE_ROLE")]
    pub role: Option<String>,
    /// Rack of this broker, for rack-aware replica placement.
    #[arg(long, env = "SLUICE_RACK")]
    pub rack: Option<String>,
    /// Cluster id to use when this node's quorum forms a new cluster (default: random).
    #[arg(long, env = "SLUICE_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// A second Kafka listener, `HOST:PORT`, that other brokers fetch replicas from (like
    /// Kafka's inter.broker.listener.name) [default: followers use --listen].
    #[arg(long, env = "SLUICE_INTER_BROKER_LISTEN")]
    pub inter_broker_listen: Option<String>,
    /// The inter-broker address registered for other brokers [default:
    /// --inter-broker-listen].
    #[arg(long, env = "SLUICE_INTER_BROKER_ADVERTISED")]
    pub inter_broker_advertised: Option<String>,
    /// Broker setting with Kafka's name, e.g. `--set num.partitions=3`. Repeatable. In the
    /// environment: SLUICE_SET="k1=v1,k2=v2".
    #[arg(
        long = "set",
        value_name = "KEY=VALUE",
        env = "SLUICE_SET",
        value_delimiter = ','
    )]
    pub set: Vec<String>,
    /// Log level (error, warn, info, debug, trace) unless RUST_LOG is set [default: info].
    #[arg(long, env = "SLUICE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "SLUICE_LOG_FORMAT")]
    pub log_format: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct FileConfig {
    listen: Option<String>,
    advertised: Option<String>,
    #[serde(rename = "data-dir")]
    data_dir: Option<PathBuf>,
    #[serde(rename = "node-id")]
    node_id: Option<i32>,
    http: Option<String>,
    #[serde(rename = "controller-listen")]
    controller_listen: Option<String>,
    #[serde(rename = "controller-quorum")]
    controller_quorum: Option<String>,
    role: Option<String>,
    rack: Option<String>,
    #[serde(rename = "cluster-id")]
    cluster_id: Option<String>,
    #[serde(rename = "inter-broker-listen")]
    inter_broker_listen: Option<String>,
    #[serde(rename = "inter-broker-advertised")]
    inter_broker_advertised: Option<String>,
    #[serde(rename = "log-level")]
    log_level: Option<String>,
    #[serde(rename = "log-format")]
    log_format: Option<String>,
    #[serde(flatten)]
    settings: BTreeMap<String, toml::Value>,
}

fn toml_scalar(key: &str, v: &toml::Value) -> anyhow::Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(a) => a
            .iter()
            .map(|x| toml_scalar(key, x))
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(","),
        other => bail!("setting {key:?}: unsupported TOML value {other}"),
    })
}

/// The merged configuration plus logging choices.
pub struct Resolved {
    pub broker: BrokerConfig,
    pub log_level: String,
    pub log_format: String,
}

/// Merges flags/env (already merged by clap), the TOML file and defaults.
pub fn resolve(args: BrokerArgs) -> anyhow::Result<Resolved> {
    let file: FileConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("config file {} is not valid", path.display()))?
        }
        None => FileConfig::default(),
    };
    let mut settings = BTreeMap::new();
    for (k, v) in &file.settings {
        if !k.contains('.') {
            bail!(
                "config file: unknown key {k:?}; broker settings use Kafka names with dots, quoted (\"num.partitions\" = 3)"
            );
        }
        settings.insert(k.clone(), toml_scalar(k, v)?);
    }
    for kv in &args.set {
        let (k, v) = kv.split_once('=').with_context(|| {
            format!("--set {kv:?}: expected KEY=VALUE, e.g. --set num.partitions=3")
        })?;
        settings.insert(k.trim().to_string(), v.trim().to_string());
    }
    let (settings, warnings) = BrokerSettings::from_map(&settings)
        .map_err(|e| anyhow::anyhow!("invalid broker setting: {e}"))?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let http = args
        .http
        .or(file.http)
        .unwrap_or_else(|| "127.0.0.1:9644".to_string());
    let http = if http.eq_ignore_ascii_case("off") || http.is_empty() {
        None
    } else {
        Some(http)
    };
    let node_id = args.node_id.or(file.node_id).unwrap_or(1);
    let voters = match args.controller_quorum.or(file.controller_quorum) {
        Some(q) => sluice_broker::parse_quorum(&q)
            .map_err(|e| anyhow::anyhow!("--controller-quorum: {e}"))?,
        None => BTreeMap::new(),
    };
    let role = match args.role.or(file.role).as_deref() {
        None => None,
        Some(r) => Some(sluice_broker::NodeRole::parse(r).ok_or_else(|| {
            anyhow::anyhow!("--role {r:?}: expected broker, controller or combined")
        })?),
    };
    let mut cluster = sluice_broker::ClusterConfig::new(
        node_id,
        voters,
        args.controller_listen.or(file.controller_listen),
        role,
        args.rack.or(file.rack),
        args.cluster_id.or(file.cluster_id),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    cluster.inter_broker_listen = args.inter_broker_listen.or(file.inter_broker_listen);
    cluster.inter_broker_advertised = args
        .inter_broker_advertised
        .or(file.inter_broker_advertised);
    if cluster.inter_broker_advertised.is_some() && cluster.inter_broker_listen.is_none() {
        anyhow::bail!(
            "--inter-broker-advertised needs --inter-broker-listen (the listener it points at)"
        );
    }
    Ok(Resolved {
        broker: BrokerConfig {
            cluster,
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:9092".to_string()),
            advertised: args.advertised.or(file.advertised),
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            node_id,
            http,
            settings,
        },
        log_level: args
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".to_string()),
        log_format: args
            .log_format
            .or(file.log_format)
            .unwrap_or_else(|| "text".to_string()),
    })
}

fn init_logging(level: &str, format: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        // openraft logs every election step at info and every failed send to a down peer
        // as an error; keep its warnings, minus those repeats (`sluice cluster status` shows
        // unreachable voters).
        _ => EnvFilter::try_new(format!(
            "{level},openraft=warn,openraft::replication=off,openraft::engine::handler::replication_handler=off"
        ))
            .with_context(|| format!("--log-level {level:?} is not a valid level"))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => bail!("--log-format {other:?}: expected text or json"),
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
    }
}

/// Runs the broker until SIGTERM/Ctrl-C. Errors are printed as one `error: ...` line (with
/// their causes) and the process exits 1.
pub fn run(args: BrokerArgs) -> anyhow::Result<()> {
    if let Err(e) = run_inner(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

/// Caps glibc's per-thread malloc arenas. Without a cap every worker and blocking thread may get
/// its own arena that keeps freed memory, so a busy broker's RSS creeps up for a long time
/// before it levels off; two arenas keep memory flat at no measurable cost for this workload.
fn run_inner(args: BrokerArgs) -> anyhow::Result<()> {
    let resolved = resolve(args)?;
    init_logging(&resolved.log_level, &resolved.log_format)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(sluice_broker::run(resolved.broker, shutdown_signal()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: BrokerArgs,
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1234\"\nnode-id = 7\n\"num.partitions\" = 4\n",
        )
        .unwrap();
        let t = T::parse_from([
            "x",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:5555",
            "--set",
            "num.partitions=6",
        ]);
        let r = resolve(t.a).unwrap();
        assert_eq!(r.broker.listen, "127.0.0.1:5555");
        assert_eq!(r.broker.node_id, 7);
        assert_eq!(r.broker.settings.num_partitions(), 6);
        assert_eq!(r.broker.data_dir, PathBuf::from("./data"));
        assert_eq!(r.broker.http.as_deref(), Some("127.0.0.1:9644"));
    }

    #[test]
    fn bad_inputs_are_explained() {
        let t = T::parse_from(["x", "--set", "novalue"]);
        assert!(resolve(t.a).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let t = T::parse_from(["x", "--config", path.to_str().unwrap()]);
        let err = resolve(t.a).err().unwrap().to_string();
        assert!(
            err.contains("unknown key") || err.contains("not valid"),
            "{err}"
        );
        let t = T::parse_from(["x", "--http", "off"]);
        assert!(resolve(t.a).unwrap().broker.http.is_none());
    }
}
