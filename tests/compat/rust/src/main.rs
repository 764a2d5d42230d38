//! Sluice compatibility scenarios for Rust clients: `rdkafka` (librdkafka, dynamically linked)
//! and `rskafka`.
//!
//! ```text
//! compat-rust rdkafka|rskafka BOOTSTRAP [SCENARIO...]
//! ```
//!
//! Output protocol (shared by every program of tests/compat): `VERSION name ver`,
//! `PASS scenario detail`, `FAIL scenario reason`, `OBS scenario key=value`. Exit 1 on failure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

type Res<T> = Result<T, String>;

/// One consumed record, client independent.
#[derive(Clone, Debug)]
struct Rec {
    key: String,
    value: String,
    partition: i32,
    offset: i64,
}

fn seq(v: &str) -> i64 {
    v.trim_start_matches('v').parse().unwrap_or(-1)
}

/// Exactly v{from}..v{from+n-1}, each once, keys in one partition, order kept per key.
fn check_produced(rs: &[Rec], from: i64, n: i64) -> Res<()> {
    let mut seen = HashSet::new();
    let mut key_part: HashMap<&str, i32> = HashMap::new();
    let mut last_off: HashMap<i32, i64> = HashMap::new();
    let mut last_seq: HashMap<&str, i64> = HashMap::new();
    for r in rs {
        if !seen.insert(r.value.clone()) {
            return Err(format!("duplicate {}", r.value));
        }
        let s = seq(&r.value);
        if s < from || s >= from + n {
            return Err(format!("unexpected record {}", r.value));
        }
        if *key_part.entry(&r.key).or_insert(r.partition) != r.partition {
            return Err(format!("key {} in two partitions", r.key));
        }
        if last_off.get(&r.partition).is_some_and(|&o| r.offset <= o) {
            return Err(format!("offsets not increasing in partition {}", r.partition));
        }
        last_off.insert(r.partition, r.offset);
        if last_seq.get(r.key.as_str()).is_some_and(|&o| s <= o) {
            return Err(format!("key {} out of order", r.key));
        }
        last_seq.insert(&r.key, s);
    }
    if seen.len() as i64 != n {
        return Err(format!("consumed {} distinct of {n}", seen.len()));
    }
    Ok(())
}

fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:08x}", (nanos as u64 ^ u64::from(std::process::id())) & 0xffff_ffff)
}

// ------------------------------------------------------------------------------- rdkafka

fn rd_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

fn rd_admin(bootstrap: &str) -> Res<AdminClient<DefaultClientContext>> {
    rd_config(bootstrap).create().map_err(|e| e.to_string())
}

async fn rd_create(admin: &AdminClient<DefaultClientContext>, topic: &str, parts: i32) -> Res<()> {
    let r = admin
        .create_topics(&[NewTopic::new(topic, parts, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .map_err(|e| e.to_string())?;
    match r.into_iter().next() {
        Some(Ok(_)) => Ok(()),
        Some(Err((_, code))) => Err(format!("{code:?}")),
        None => Err("empty CreateTopics result".into()),
    }
}

async fn rd_produce(bootstrap: &str, topic: &str, from: i64, n: i64, keys: i64) -> Res<()> {
    let p: FutureProducer = rd_config(bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .map_err(|e| e.to_string())?;
    let mut futs = Vec::new();
    let p = &p;
    for i in 0..n {
        let key = format!("k{}", i % keys);
        let value = format!("v{}", from + i);
        futs.push(async move {
            p.send(FutureRecord::to(topic).key(&key).payload(&value), Duration::from_secs(20))
                .await
                .map_err(|(e, _)| e.to_string())
        });
    }
    for r in futures::future::join_all(futs).await {
        r?;
    }
    Ok(())
}

fn rd_rec(m: &rdkafka::message::BorrowedMessage<'_>) -> Rec {
    Rec {
        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
        value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        partition: m.partition(),
        offset: m.offset(),
    }
}

async fn rd_produce_consume(bootstrap: String, id: String) -> Res<String> {
    let topic = format!("rdkafka-pc-{id}");
    rd_create(&rd_admin(&bootstrap)?, &topic, 3).await?;
    rd_produce(&bootstrap, &topic, 0, 300, 10).await?;
    let bs = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || -> Res<Vec<Rec>> {
        let c: BaseConsumer = rd_config(&bs)
            .set("group.id", "unused-assign-only")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| e.to_string())?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset(&topic, p, Offset::Beginning).map_err(|e| e.to_string())?;
        }
        c.assign(&tpl).map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(30);
        while got.len() < 300 && Instant::now() < end {
            if let Some(m) = c.poll(Duration::from_millis(200)) {
                let m = m.map_err(|e| e.to_string())?;
                got.push(rd_rec(&m));
            }
        }
        Ok(got)
    })
    .await
    .map_err(|e| e.to_string())??;
    check_produced(&got, 0, 300)?;
    println!("OBS produce_consume records={}", got.len());
    Ok("300 records, order ok".into())
}

async fn rd_describe(admin: &AdminClient<DefaultClientContext>, t: &str) -> Res<BTreeMap<String, Option<String>>> {
    let r = admin
        .describe_configs(&[ResourceSpecifier::Topic(t)], &AdminOptions::new())
        .await
        .map_err(|e| e.to_string())?;
    let res = r.into_iter().next().ok_or("no describe result")?.map_err(|e| e.to_string())?;
    Ok(res.entries.into_iter().map(|e| (e.name, e.value)).collect())
}

async fn rd_admin_scenario(bootstrap: String, id: String) -> Res<String> {
    let topic = format!("rdkafka-admin-{id}");
    let admin = rd_admin(&bootstrap)?;
    rd_create(&admin, &topic, 1).await?;
    let opts = AdminOptions::new();
    let cfg = rd_describe(&admin, &topic).await?;
    if !cfg.contains_key("retention.ms") {
        return Err("describe_configs lacks retention.ms".into());
    }
    println!("OBS admin topic_config_keys={}", cfg.keys().cloned().collect::<Vec<_>>().join(","));
    let alter = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("retention.ms", "3600000");
    let r = admin.alter_configs(&[alter], &opts).await.map_err(|e| e.to_string())?;
    if let Some(Err((_, code))) = r.into_iter().next() {
        return Err(format!("alter_configs: {code:?}"));
    }
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let cfg = rd_describe(&admin, &topic).await?;
        if cfg.get("retention.ms").cloned().flatten().as_deref() == Some("3600000") {
            break;
        }
        if Instant::now() > end {
            return Err(format!("retention.ms after alter: {:?}", cfg.get("retention.ms")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = admin
        .create_partitions(&[NewPartitions::new(&topic, 3)], &opts)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(Err((_, code))) = r.into_iter().next() {
        return Err(format!("create_partitions: {code:?}"));
    }
    let md = admin
        .inner()
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let parts = md.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    if parts != 3 {
        return Err(format!("metadata after create_partitions: {parts} partitions"));
    }
    let r = admin.delete_topics(&[&topic], &opts).await.map_err(|e| e.to_string())?;
    if let Some(Err((_, code))) = r.into_iter().next() {
        return Err(format!("delete_topics: {code:?}"));
    }
    Ok(format!("create/configs({} keys)/alter/partitions/metadata/delete ok", cfg.len()))
}

async fn rd_errors(bootstrap: String, id: String) -> Res<String> {
    let topic = format!("rdkafka-err-{id}");
    let admin = rd_admin(&bootstrap)?;
    rd_create(&admin, &topic, 2).await?;
    let mut seen = BTreeMap::new();
    let name = |r: Res<()>| r.err().unwrap_or_else(|| "none".into());
    seen.insert("create_existing", name(rd_create(&admin, &topic, 1).await));
    seen.insert("create_invalid_name", name(rd_create(&admin, "bad/name", 1).await));
    let r = admin
        .create_partitions(&[NewPartitions::new(&topic, 1)], &AdminOptions::new())
        .await
        .map_err(|e| e.to_string())?;
    seen.insert(
        "partitions_decrease",
        match r.into_iter().next() {
            Some(Err((_, code))) => format!("{code:?}"),
            _ => "none".into(),
        },
    );
    for (k, v) in &seen {
        println!("OBS errors {k}={v}");
    }
    let want = [
        ("create_existing", "TopicAlreadyExists"),
        ("create_invalid_name", "InvalidTopic"),
        ("partitions_decrease", "InvalidPartitions"),
    ];
    for (k, w) in want {
        if seen.get(k).map(String::as_str) != Some(w) {
            return Err(format!("{k}: {:?}, want {w}", seen.get(k)));
        }
    }
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
    Ok(format!("{} error cases as expected", seen.len()))
}

fn rd_member(bootstrap: &str, group: &str, topic: &str) -> Res<BaseConsumer> {
    let c: BaseConsumer = rd_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .map_err(|e| e.to_string())?;
    c.subscribe(&[topic]).map_err(|e| e.to_string())?;
    Ok(c)
}

/// One generation of a 2-member group: produce `before` records, start, wait for 2/2, produce
/// `after`, consume until all distinct records arrived, commit, close. Returns redeliveries.
async fn rd_generation(bootstrap: &str, group: &str, topic: &str, from: i64, before: i64, after: i64) -> Res<usize> {
    if before > 0 {
        rd_produce(bootstrap, topic, from, before, 16).await?;
    }
    let (bs, g, t) = (bootstrap.to_string(), group.to_string(), topic.to_string());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Res<()>>();
    let worker = tokio::task::spawn_blocking(move || -> Res<Vec<Vec<Rec>>> {
        let ms = [rd_member(&bs, &g, &t)?, rd_member(&bs, &g, &t)?];
        let mut got: Vec<Vec<Rec>> = vec![Vec::new(), Vec::new()];
        let end = Instant::now() + Duration::from_secs(30);
        let mut ready_tx = Some(ready_tx);
        let n = (before + after) as usize;
        let mut produced_after = false;
        loop {
            for (i, c) in ms.iter().enumerate() {
                if let Some(m) = c.poll(Duration::from_millis(100)) {
                    let m = m.map_err(|e| e.to_string())?;
                    got[i].push(rd_rec(&m));
                }
            }
            let balanced = ms.iter().all(|c| c.assignment().map(|a| a.count()).unwrap_or(0) == 2);
            if balanced && ready_tx.is_some() {
                if let Some(r) = ready_tx.take() {
                    let _ = r.send(Ok(()));
                }
            }
            if !produced_after && rx.try_recv().is_ok() {
                produced_after = true;
            }
            let distinct: HashSet<&str> = got.iter().flatten().map(|r| r.value.as_str()).collect();
            if produced_after && distinct.len() >= n {
                break;
            }
            if Instant::now() > end {
                if let Some(r) = ready_tx.take() {
                    let _ = r.send(Err("group never balanced 2/2".into()));
                }
                return Err(format!("consumed {} distinct of {n}", distinct.len()));
            }
        }
        for c in &ms {
            c.commit_consumer_state(CommitMode::Sync).map_err(|e| format!("commit: {e}"))?;
        }
        for c in &ms {
            c.unsubscribe();
        }
        Ok(got)
    });
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(worker.await.map_err(|e| e.to_string())?.err().unwrap_or_default()),
    }
    rd_produce(bootstrap, topic, from + before, after, 16).await?;
    let _ = tx.send(());
    let got = worker.await.map_err(|e| e.to_string())??;
    let all: Vec<Rec> = got.iter().flatten().cloned().collect();
    for r in &all {
        if seq(&r.value) < from {
            return Err(format!("re-consumed committed record {}", r.value));
        }
    }
    if before == 0 {
        check_produced(&all, from, after)?;
    }
    let distinct: HashSet<&str> = all.iter().map(|r| r.value.as_str()).collect();
    Ok(all.len() - distinct.len())
}

async fn rd_group(bootstrap: String, id: String) -> Res<String> {
    let topic = format!("rdkafka-grp-{id}");
    let group = format!("rdkafka-group-{id}");
    rd_create(&rd_admin(&bootstrap)?, &topic, 4).await?;
    rd_generation(&bootstrap, &group, &topic, 0, 0, 200).await.map_err(|e| format!("first generation: {e}"))?;
    let dupes = rd_generation(&bootstrap, &group, &topic, 200, 50, 50)
        .await
        .map_err(|e| format!("after restart: {e}"))?;
    Ok(format!(
        "2 members x 2 partitions, 200 exactly once + committed; restart resumed with the 100 new ({dupes} redelivered)"
    ))
}

// ------------------------------------------------------------------------------- rskafka

async fn rs_client(bootstrap: &str) -> Res<rskafka::client::Client> {
    rskafka::client::ClientBuilder::new(vec![bootstrap.to_string()])
        .build()
        .await
        .map_err(|e| e.to_string())
}

async fn rs_produce_consume(bootstrap: String, id: String) -> Res<String> {
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    let topic = format!("rskafka-pc-{id}");
    let client = rs_client(&bootstrap).await?;
    client
        .controller_client()
        .map_err(|e| e.to_string())?
        .create_topic(&topic, 3, 1, 10_000)
        .await
        .map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    for p in 0..3 {
        let pc = client
            .partition_client(topic.clone(), p, UnknownTopicHandling::Retry)
            .await
            .map_err(|e| e.to_string())?;
        // rskafka has no partitioner: key k{j} goes to partition j % 3, as a partitioner would.
        for batch in 0..4 {
            let records: Vec<_> = (0..25)
                .map(|i| {
                    let n = batch * 25 + i;
                    let key = format!("k{}", p + 3 * (n % 3));
                    rskafka::record::Record {
                        key: Some(key.into_bytes()),
                        value: Some(format!("v{}", p as i64 * 1000 + n as i64).into_bytes()),
                        headers: BTreeMap::from([("h".to_string(), b"1".to_vec())]),
                        timestamp: chrono::Utc::now(),
                    }
                })
                .collect();
            pc.produce(records, Compression::NoCompression).await.map_err(|e| e.to_string())?;
        }
        let mut offset = 0;
        let end = Instant::now() + Duration::from_secs(20);
        while offset < 100 && Instant::now() < end {
            let (recs, hw) = pc.fetch_records(offset, 1..1_000_000, 500).await.map_err(|e| e.to_string())?;
            if hw != 100 {
                return Err(format!("partition {p} high watermark {hw}, want 100"));
            }
            for r in recs {
                if r.offset < offset {
                    continue; // a batch may start before the requested offset
                }
                offset = r.offset + 1;
                if r.record.headers.get("h").map(Vec::as_slice) != Some(b"1".as_slice()) {
                    return Err("header lost".into());
                }
                all.push(Rec {
                    key: String::from_utf8_lossy(&r.record.key.unwrap_or_default()).into_owned(),
                    value: String::from_utf8_lossy(&r.record.value.unwrap_or_default()).into_owned(),
                    partition: p,
                    offset: r.offset,
                });
            }
        }
        let earliest = pc.get_offset(rskafka::client::partition::OffsetAt::Earliest).await.map_err(|e| e.to_string())?;
        let latest = pc.get_offset(rskafka::client::partition::OffsetAt::Latest).await.map_err(|e| e.to_string())?;
        if (earliest, latest) != (0, 100) {
            return Err(format!("partition {p} offsets {earliest}..{latest}"));
        }
    }
    if all.len() != 300 {
        return Err(format!("consumed {} of 300", all.len()));
    }
    let mut last: HashMap<i32, i64> = HashMap::new();
    for r in &all {
        let s = seq(&r.value) % 1000;
        if last.get(&r.partition).is_some_and(|&l| s != l + 1) || (!last.contains_key(&r.partition) && s != 0) {
            return Err(format!("partition {} out of order at {}", r.partition, r.value));
        }
        last.insert(r.partition, s);
    }
    let topics = client.list_topics().await.map_err(|e| e.to_string())?;
    if !topics.iter().any(|t| t.name == topic && t.partitions.len() == 3) {
        return Err("list_topics lacks topic".into());
    }
    println!("OBS produce_consume records={}", all.len());
    Ok("300 records in 12 batches, order + headers + list offsets ok".into())
}

async fn rs_errors(bootstrap: String, id: String) -> Res<String> {
    let topic = format!("rskafka-err-{id}");
    let client = rs_client(&bootstrap).await?;
    let cc = client.controller_client().map_err(|e| e.to_string())?;
    cc.create_topic(&topic, 1, 1, 10_000).await.map_err(|e| e.to_string())?;
    let code = |r: Result<(), rskafka::client::error::Error>| match r {
        Ok(()) => "none".to_string(),
        Err(rskafka::client::error::Error::ServerError { protocol_error, .. }) => format!("{protocol_error:?}"),
        Err(e) => format!("other: {e}"),
    };
    let existing = code(cc.create_topic(&topic, 1, 1, 10_000).await);
    let invalid = code(cc.create_topic("bad/name", 1, 1, 10_000).await);
    println!("OBS errors create_existing={existing}");
    println!("OBS errors create_invalid_name={invalid}");
    if existing != "TopicAlreadyExists" || invalid != "InvalidTopicException" {
        return Err(format!("create existing: {existing}, invalid name: {invalid}"));
    }
    cc.delete_topic(&topic, 10_000).await.map_err(|e| e.to_string())?;
    Ok("2 error cases as expected".into())
}

// ------------------------------------------------------------------------------- main

type ScenarioFn = fn(String, String) -> std::pin::Pin<Box<dyn std::future::Future<Output = Res<String>> + Send>>;

macro_rules! sc {
    ($name:literal, $f:ident) => {
        ($name, (|b, i| Box::pin($f(b, i))) as ScenarioFn)
    };
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: compat-rust rdkafka|rskafka BOOTSTRAP [SCENARIO...]");
        std::process::exit(2);
    }
    let (client, bootstrap) = (args[1].as_str(), args[2].clone());
    let all: Vec<(&str, ScenarioFn)> = match client {
        "rdkafka" => {
            let (_, v) = rdkafka::util::get_rdkafka_version();
            println!("VERSION rdkafka 0.29 (librdkafka {v})");
            vec![
                sc!("produce_consume", rd_produce_consume),
                sc!("admin", rd_admin_scenario),
                sc!("errors", rd_errors),
                sc!("group", rd_group),
            ]
        }
        "rskafka" => {
            println!("VERSION rskafka 0.6");
            vec![sc!("produce_consume", rs_produce_consume), sc!("errors", rs_errors)]
        }
        other => {
            eprintln!("unknown client {other}");
            std::process::exit(2);
        }
    };
    let selected: Vec<String> = if args.len() > 3 {
        args[3..].to_vec()
    } else {
        all.iter().map(|(n, _)| n.to_string()).collect()
    };
    let id = run_id();
    let mut failed = false;
    for name in selected {
        let Some((_, f)) = all.iter().find(|(n, _)| *n == name) else {
            println!("FAIL {name} unknown scenario");
            failed = true;
            continue;
        };
        let t0 = Instant::now();
        match tokio::time::timeout(Duration::from_secs(90), f(bootstrap.clone(), id.clone())).await {
            Ok(Ok(detail)) => println!("PASS {name} {detail} ({} ms)", t0.elapsed().as_millis()),
            Ok(Err(e)) => {
                failed = true;
                println!("FAIL {name} {}", e.replace('\n', " "));
            }
            Err(_) => {
                failed = true;
                println!("FAIL {name} scenario timed out after 90s");
            }
        }
    }
    std::process::exit(i32::from(failed));
}
