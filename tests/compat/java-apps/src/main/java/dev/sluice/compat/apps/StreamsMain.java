package dev.sluice.compat.apps;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.LongSerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;

/**
 * Kafka Streams scenarios: the classic word count (repartition + changelog topics, DeleteRecords
 * purging, restore from the changelog after the local state is deleted) and a tumbling-window
 * aggregation over records with explicit timestamps. Each checks the output topic (last value
 * per key) against results computed here.
 */
public final class StreamsMain {
    static final String[] WORDS = {
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
        "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon"};

    private StreamsMain() {}

    public static void main(String[] args) {
        Map<String, Common.Scenario> all = new LinkedHashMap<>();
        all.put("wordcount", StreamsMain::wordCount);
        all.put("windowed", StreamsMain::windowed);
        Common.main(args, "kafka-streams " + Common.kafkaVersion(), all);
    }

    static Properties streamsProps(String appId, Path stateDir) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, Common.bootstrap);
        p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir.toString());
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 100);
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        // replication.factor stays at its default (-1: the broker's default.replication.factor).
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 6_000);
        return p;
    }

    /** Starts {@code streams} and waits until it is RUNNING; fails fast on ERROR. */
    static void startAndAwaitRunning(KafkaStreams streams) throws Exception {
        AtomicReference<Throwable> err = new AtomicReference<>();
        streams.setUncaughtExceptionHandler(e -> {
            err.set(e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                .SHUTDOWN_CLIENT;
        });
        streams.start();
        Common.waitFor(60_000, "KafkaStreams RUNNING", () -> {
            if (err.get() != null) {
                throw new IllegalStateException("stream thread died: " + err.get(), err.get());
            }
            return streams.state() == KafkaStreams.State.RUNNING ? null : "state " + streams.state();
        });
    }

    /** Closes with a LeaveGroup so the next instance's rebalance needn't wait out the session. */
    static void closeLeaving(KafkaStreams s) {
        s.close(new KafkaStreams.CloseOptions().timeout(Duration.ofSeconds(30)).leaveGroup(true));
    }

    static void produceLines(String topic, List<String> lines) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, Common.bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        try (KafkaProducer<String, String> pr = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < lines.size(); i++) {
                pr.send(new ProducerRecord<>(topic, "line-" + i, lines.get(i)));
            }
            pr.flush();
        }
    }

    static List<String> randomLines(Random rnd, int n) {
        List<String> lines = new java.util.ArrayList<>();
        for (int i = 0; i < n; i++) {
            int words = 1 + rnd.nextInt(8);
            StringBuilder sb = new StringBuilder();
            for (int w = 0; w < words; w++) {
                String word = WORDS[rnd.nextInt(WORDS.length)];
                sb.append(w == 0 ? "" : (rnd.nextBoolean() ? " " : ", "));
                sb.append(rnd.nextInt(4) == 0 ? word.toUpperCase() : word);
            }
            lines.add(sb.toString());
        }
        return lines;
    }

    static void countWords(List<String> lines, Map<String, Long> counts) {
        for (String l : lines) {
            for (String w : l.toLowerCase().split("\\W+")) {
                if (!w.isEmpty()) {
                    counts.merge(w, 1L, Long::sum);
                }
            }
        }
    }

    static KafkaStreams wordCountApp(String appId, Path state, String in, String out) {
        StreamsBuilder b = new StreamsBuilder();
        b.stream(in, Consumed.with(Serdes.String(), Serdes.String()))
            .flatMapValues(v -> Arrays.asList(v.toLowerCase().split("\\W+")))
            .filter((k, w) -> !w.isEmpty())
            .groupBy((k, w) -> w, Grouped.with("words", Serdes.String(), Serdes.String()))
            .count(Materialized.as("counts"))
            .toStream()
            .to(out, Produced.with(Serdes.String(), Serdes.Long()));
        return new KafkaStreams(b.build(), streamsProps(appId, state));
    }

    static String wordCount() throws Exception {
        String sc = "wordcount";
        String app = "compat-wc-" + Common.RUN;
        String in = "wc-in-" + Common.RUN;
        String out = "wc-out-" + Common.RUN;
        Random rnd = new Random(42);
        Map<String, Long> expected = new TreeMap<>();
        Path state = Common.tempDir("compat-streams-wc-");
        try (Admin admin = Common.admin()) {
            Common.createTopic(admin, in, 3, Map.of());
            Common.createTopic(admin, out, 3, Map.of());
            List<String> batch1 = randomLines(rnd, 500);
            countWords(batch1, expected);
            produceLines(in, batch1);
            Common.step("wordcount: topics created, batch 1 produced");
            try (KafkaStreams s = wordCountApp(app, state, in, out)) {
                startAndAwaitRunning(s);
                Common.step("wordcount: phase 1 RUNNING");
                awaitCounts(out, expected, sc + " phase 1");
                Common.step("wordcount: phase 1 counts equal");
                // Repartition topics are purged with DeleteRecords after each commit.
                String repartition = app + "-words-repartition";
                Common.waitFor(30_000, "DeleteRecords on " + repartition, () -> {
                    long start = startOffsetSum(admin, repartition);
                    return start > 0 ? null : "log start offset sum " + start;
                });
                Common.step("wordcount: repartition topic purged");
                closeLeaving(s);
                Common.step("wordcount: phase 1 closed");
            }
            Set<String> internal = admin.listTopics(new ListTopicsOptions().listInternal(true)).names().get()
                .stream().filter(t -> t.startsWith(app + "-")).map(t -> t.substring(app.length() + 1))
                .collect(Collectors.toCollection(TreeSet::new));
            Common.obs(sc, "internal_topics", String.join(",", internal));
            Common.check(internal.equals(Set.of("counts-changelog", "words-repartition")),
                "internal topics " + internal);
            String changelogPolicy = topicConfig(admin, app + "-counts-changelog", "cleanup.policy");
            String repartitionPolicy = topicConfig(admin, app + "-words-repartition", "cleanup.policy");
            Common.obs(sc, "changelog_cleanup_policy", changelogPolicy);
            Common.obs(sc, "repartition_cleanup_policy", repartitionPolicy);
            Common.check(changelogPolicy.equals("compact"), "changelog cleanup.policy " + changelogPolicy);
            Map<String, TopicDescription> d = admin.describeTopics(List.of(app + "-words-repartition",
                app + "-counts-changelog")).allTopicNames().get();
            Common.obs(sc, "repartition_partitions", d.get(app + "-words-repartition").partitions().size());
            Common.obs(sc, "changelog_partitions", d.get(app + "-counts-changelog").partitions().size());

            // Phase 2: local state deleted, so the store is restored from the changelog topic;
            // the group's committed offsets make the app resume after batch 1.
            Common.deleteTree(state);
            state = Common.tempDir("compat-streams-wc-");
            List<String> batch2 = randomLines(rnd, 300);
            countWords(batch2, expected);
            produceLines(in, batch2);
            try (KafkaStreams s = wordCountApp(app, state, in, out)) {
                startAndAwaitRunning(s);
                Common.step("wordcount: phase 2 RUNNING (restored)");
                awaitCounts(out, expected, sc + " phase 2 (after restore)");
                Common.step("wordcount: phase 2 counts equal");
                closeLeaving(s);
                Common.step("wordcount: phase 2 closed");
            }
            Common.obs(sc, "counts_match", true);
            long total = expected.values().stream().mapToLong(Long::longValue).sum();
            return "800 lines, " + total + " words, " + expected.size()
                + " distinct: counts equal in both phases; internal topics " + internal
                + ", repartition purged by DeleteRecords, store restored from the changelog";
        } finally {
            Common.deleteTree(state);
        }
    }

    static void awaitCounts(String out, Map<String, Long> expected, String what) throws Exception {
        AtomicReference<Map<String, Long>> last = new AtomicReference<>(Map.of());
        Common.waitFor(60_000, what + " counts in " + out, () -> {
            Map<String, Long> got = new TreeMap<>(Common.latestPerKey(out, new StringDeserializer(),
                new LongDeserializer(), 10_000));
            last.set(got);
            return got.equals(expected) ? null : Common.mapDiff(expected, got);
        });
    }

    static long startOffsetSum(Admin admin, String topic) {
        try {
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
            Map<TopicPartition, OffsetSpec> req = new HashMap<>();
            d.partitions().forEach(p -> req.put(new TopicPartition(topic, p.partition()), OffsetSpec.earliest()));
            return admin.listOffsets(req).all().get().values().stream().mapToLong(i -> i.offset()).sum();
        } catch (Exception e) {
            return -1;
        }
    }

    static String topicConfig(Admin admin, String topic, String key) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        return admin.describeConfigs(List.of(r)).all().get().get(r).get(key).value();
    }

    static String windowed() throws Exception {
        String sc = "windowed";
        String app = "compat-win-" + Common.RUN;
        String in = "win-in-" + Common.RUN;
        String out = "win-out-" + Common.RUN;
        long minute = 60_000;
        // Ten whole minutes in the past, so every window is closed by stream time but within retention.
        long base = (System.currentTimeMillis() / minute - 12) * minute;
        Random rnd = new Random(7);
        String[] users = {"ann", "bob", "cy", "dee", "eve"};
        Map<String, String> expected = new TreeMap<>();
        Map<String, long[]> acc = new TreeMap<>();
        Path state = Common.tempDir("compat-streams-win-");
        try (Admin admin = Common.admin()) {
            Common.createTopic(admin, in, 2, Map.of());
            Common.createTopic(admin, out, 2, Map.of());
            Properties pp = new Properties();
            pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, Common.bootstrap);
            pp.put(ProducerConfig.ACKS_CONFIG, "all");
            int n = 600;
            try (KafkaProducer<String, Long> pr = new KafkaProducer<>(pp, new StringSerializer(), new LongSerializer())) {
                for (int i = 0; i < n; i++) {
                    String u = users[rnd.nextInt(users.length)];
                    long ts = base + i * 1_000L + rnd.nextInt(1000); // 600 s: windows base .. base+10 min
                    long amount = 1 + rnd.nextInt(100);
                    pr.send(new ProducerRecord<>(in, null, ts, u, amount));
                    long[] a = acc.computeIfAbsent(u + "@" + (ts / minute * minute - base) / 1000, k -> new long[2]);
                    a[0]++;
                    a[1] += amount;
                }
                pr.flush();
            }
            acc.forEach((k, a) -> expected.put(k, a[0] + ":" + a[1]));
            StreamsBuilder b = new StreamsBuilder();
            b.stream(in, Consumed.with(Serdes.String(), Serdes.Long()))
                .groupByKey()
                .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMinutes(1), Duration.ofHours(1)))
                .aggregate(() -> "0:0", (k, v, agg) -> {
                    String[] p = agg.split(":");
                    return (Long.parseLong(p[0]) + 1) + ":" + (Long.parseLong(p[1]) + v);
                }, Materialized.<String, String, org.apache.kafka.streams.state.WindowStore<org.apache.kafka.common.utils.Bytes, byte[]>>as("sums")
                    .withKeySerde(Serdes.String()).withValueSerde(Serdes.String()))
                .toStream()
                .map((wk, v) -> KeyValue.pair(wk.key() + "@" + (wk.window().start() - base) / 1000, v))
                .to(out, Produced.with(Serdes.String(), Serdes.String()));
            try (KafkaStreams s = new KafkaStreams(b.build(), streamsProps(app, state))) {
                startAndAwaitRunning(s);
                Common.waitFor(60_000, "window aggregates in " + out, () -> {
                    Map<String, String> got = new TreeMap<>(Common.latestPerKey(out, new StringDeserializer(),
                        new StringDeserializer(), 10_000));
                    return got.equals(expected) ? null : Common.mapDiff(expected, got);
                });
                closeLeaving(s);
            }
            String changelog = app + "-sums-changelog";
            String policy = topicConfig(admin, changelog, "cleanup.policy");
            Common.obs(sc, "changelog_cleanup_policy", policy);
            Common.check(Set.of(policy.split(",")).equals(Set.of("compact", "delete")),
                "windowed changelog cleanup.policy " + policy);
            Common.obs(sc, "aggregates_match", true);
            return n + " records over 10+ one-minute tumbling windows x 5 keys: " + expected.size()
                + " (count:sum) aggregates equal; changelog cleanup.policy=" + policy;
        } finally {
            Common.deleteTree(state);
        }
    }
}
