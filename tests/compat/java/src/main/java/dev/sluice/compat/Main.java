package dev.sluice.compat;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Compatibility scenarios for the Java client (kafka-clients), the AdminClient and Kafka's own
 * command-line tool classes, run against the broker given as the first argument.
 *
 * <p>Output protocol (shared by every client program of tests/compat): {@code VERSION name ver},
 * {@code PASS scenario detail}, {@code FAIL scenario reason}, {@code OBS scenario key=value}
 * (observations compared between Kafka and Sluice). Exit status 1 if any scenario failed.
 */
public final class Main {
    static final Duration POLL = Duration.ofMillis(200);
    static final long DEADLINE_MS = 30_000;

    static String bootstrap;
    static final String RUN = UUID.randomUUID().toString().substring(0, 8);
    static boolean failed = false;

    interface Scenario {
        String run() throws Exception;
    }

    /** kafka-clients' version from the jar's kafka/kafka-version.properties (AppInfoParser, which
     *  reads it, moved to an internals package in 4.4 and is no API). */
    static String kafkaVersion() {
        try (var in = Main.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            Properties p = new Properties();
            if (in != null) p.load(in);
            return p.getProperty("version", "unknown");
        } catch (IOException e) {
            return "unknown";
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: Main BOOTSTRAP [SCENARIO...]");
            System.exit(2);
        }
        bootstrap = args[0];
        Map<String, Scenario> all = new LinkedHashMap<>();
        all.put("produce_consume", Main::produceConsume);
        all.put("admin", Main::adminScenario);
        all.put("errors", Main::errors);
        all.put("group", Main::group);
        all.put("admin_groups", Main::adminGroups);
        all.put("cli_topics", Main::cliTopics);
        all.put("cli_console", Main::cliConsole);
        all.put("cli_consumer_groups", Main::cliConsumerGroups);
        all.put("perf", Main::perf);
        List<String> selected = args.length > 1
            ? Arrays.asList(args).subList(1, args.length) : new ArrayList<>(all.keySet());
        System.out.println("VERSION kafka-clients " + kafkaVersion());
        for (String name : selected) {
            Scenario s = all.get(name);
            if (s == null) {
                fail(name, "unknown scenario");
                continue;
            }
            long t0 = System.nanoTime();
            try {
                String detail = s.run();
                long ms = (System.nanoTime() - t0) / 1_000_000;
                System.out.println("PASS " + name + " " + detail + " (" + ms + " ms)");
            } catch (Throwable e) {
                Throwable c = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
                fail(name, c.getClass().getSimpleName() + ": " + oneLine(String.valueOf(c.getMessage())));
            }
            System.out.flush();
        }
        System.exit(failed ? 1 : 0);
    }

    static void fail(String name, String why) {
        failed = true;
        System.out.println("FAIL " + name + " " + why);
    }

    static void obs(String scenario, String key, Object value) {
        System.out.println("OBS " + scenario + " " + key + "=" + oneLine(String.valueOf(value)));
    }

    static String oneLine(String s) {
        return s.replace('\n', ' ').replace('\r', ' ');
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static String topic(String base) {
        return "java-" + base + "-" + RUN;
    }

    // ---------------------------------------------------------------- clients

    static Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        return Admin.create(p);
    }

    static KafkaProducer<String, String> producer() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
    }

    static KafkaConsumer<String, String> consumer(String group) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        }
        return new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer());
    }

    static void createTopic(Admin admin, String name, int partitions) throws Exception {
        admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1))).all().get(20, TimeUnit.SECONDS);
    }

    /** Produces {@code n} keyed records (key k{i%keys}, value "v{start+i}"); returns key->partition. */
    static Map<String, Integer> produce(String t, int start, int n, int keys) throws Exception {
        Map<String, Integer> keyPartition = new HashMap<>();
        try (KafkaProducer<String, String> p = producer()) {
            List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                fs.add(p.send(new ProducerRecord<>(t, "k" + (i % keys), "v" + (start + i))));
            }
            p.flush();
            for (int i = 0; i < n; i++) {
                RecordMetadata md = fs.get(i).get(30, TimeUnit.SECONDS);
                String k = "k" + (i % keys);
                Integer prev = keyPartition.put(k, md.partition());
                check(prev == null || prev == md.partition(), "key " + k + " went to two partitions");
            }
        }
        return keyPartition;
    }

    /** Checks per-partition order: values of one key appear in increasing production order. */
    static void checkOrder(List<ConsumerRecord<String, String>> recs) {
        Map<Integer, Long> lastOffset = new HashMap<>();
        Map<String, Integer> lastSeq = new HashMap<>();
        for (ConsumerRecord<String, String> r : recs) {
            Long lo = lastOffset.get(r.partition());
            check(lo == null || r.offset() > lo, "offsets not increasing in partition " + r.partition());
            lastOffset.put(r.partition(), r.offset());
            int seq = Integer.parseInt(r.value().substring(1));
            Integer ls = lastSeq.get(r.key());
            check(ls == null || seq > ls, "key " + r.key() + " out of order: " + seq + " after " + ls);
            lastSeq.put(r.key(), seq);
        }
    }

    // ---------------------------------------------------------------- scenarios

    static String produceConsume() throws Exception {
        String t = topic("pc");
        int n = 300;
        try (Admin admin = admin()) {
            createTopic(admin, t, 3);
        }
        Map<String, Integer> kp = produce(t, 0, n, 10);
        List<ConsumerRecord<String, String>> got = new ArrayList<>();
        try (KafkaConsumer<String, String> c = consumer(null)) {
            List<TopicPartition> tps = List.of(new TopicPartition(t, 0), new TopicPartition(t, 1), new TopicPartition(t, 2));
            c.assign(tps);
            c.seekToBeginning(tps);
            long end = System.currentTimeMillis() + DEADLINE_MS;
            while (got.size() < n && System.currentTimeMillis() < end) {
                for (ConsumerRecord<String, String> r : c.poll(POLL)) {
                    got.add(r);
                }
            }
            Map<TopicPartition, Long> ends = c.endOffsets(tps);
            long total = ends.values().stream().mapToLong(Long::longValue).sum();
            check(total == n, "end offsets sum " + total + " != " + n);
        }
        check(got.size() == n, "consumed " + got.size() + " of " + n);
        Set<String> values = new HashSet<>();
        for (ConsumerRecord<String, String> r : got) {
            values.add(r.value());
            check(kp.get(r.key()) == r.partition(), "record of " + r.key() + " in unexpected partition");
        }
        check(values.size() == n, "duplicates or missing values: " + values.size());
        checkOrder(got);
        obs("produce_consume", "records", got.size());
        obs("produce_consume", "partitions_used", new TreeSet<>(kp.values()).size());
        return n + " records, order ok";
    }

    static String adminScenario() throws Exception {
        String t = topic("admin");
        try (Admin admin = admin()) {
            createTopic(admin, t, 1);
            Set<String> names = admin.listTopics().names().get(20, TimeUnit.SECONDS);
            check(names.contains(t), "listTopics lacks " + t);
            TopicDescription d = admin.describeTopics(List.of(t)).allTopicNames().get(20, TimeUnit.SECONDS).get(t);
            check(d.partitions().size() == 1, "describeTopics partitions " + d.partitions().size());
            check(d.topicId() != null && !d.topicId().toString().isEmpty(), "no topic id");
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, t);
            Config cfg = admin.describeConfigs(List.of(res)).all().get(20, TimeUnit.SECONDS).get(res);
            Set<String> keys = cfg.entries().stream().map(ConfigEntry::name).collect(Collectors.toCollection(TreeSet::new));
            check(keys.contains("retention.ms") && keys.contains("cleanup.policy"), "describeConfigs keys " + keys);
            obs("admin", "topic_config_keys", String.join(",", keys));
            obs("admin", "retention.ms.default", cfg.get("retention.ms").value() + "/" + cfg.get("retention.ms").source());
            admin.incrementalAlterConfigs(Map.of(res, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET))))
                .all().get(20, TimeUnit.SECONDS);
            // Kafka (KRaft) applies config changes asynchronously: re-read for a few seconds.
            ConfigEntry ret = null;
            for (int i = 0; i < 25; i++) {
                cfg = admin.describeConfigs(List.of(res)).all().get(20, TimeUnit.SECONDS).get(res);
                ret = cfg.get("retention.ms");
                if ("3600000".equals(ret.value())) {
                    break;
                }
                Thread.sleep(200);
            }
            check("3600000".equals(ret.value()), "retention.ms after alter = " + ret.value());
            obs("admin", "retention.ms.altered", ret.value() + "/" + ret.source());
            admin.createPartitions(Map.of(t, NewPartitions.increaseTo(3))).all().get(20, TimeUnit.SECONDS);
            d = admin.describeTopics(List.of(t)).allTopicNames().get(20, TimeUnit.SECONDS).get(t);
            check(d.partitions().size() == 3, "after createPartitions: " + d.partitions().size());
            DescribeClusterResult cl = admin.describeCluster();
            int nodes = cl.nodes().get(20, TimeUnit.SECONDS).size();
            check(nodes >= 1, "describeCluster nodes " + nodes);
            check(cl.clusterId().get(20, TimeUnit.SECONDS) != null, "no cluster id");
            check(cl.controller().get(20, TimeUnit.SECONDS) != null, "no controller");
            obs("admin", "cluster_nodes", nodes);
            ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(cl.nodes().get().iterator().next().id()));
            Config bcfg = admin.describeConfigs(List.of(broker)).all().get(20, TimeUnit.SECONDS).get(broker);
            check(bcfg.get("num.partitions") != null, "broker config lacks num.partitions");
            admin.deleteTopics(List.of(t)).all().get(20, TimeUnit.SECONDS);
            long end = System.currentTimeMillis() + 15_000;
            while (admin.listTopics().names().get(20, TimeUnit.SECONDS).contains(t)) {
                check(System.currentTimeMillis() < end, "topic still listed after delete");
                Thread.sleep(200);
            }
            return "create/list/describe/configs/alter/partitions/cluster/delete ok, " + keys.size() + " topic config keys";
        }
    }

    static String errorName(KafkaFuture<?> f) {
        try {
            f.get(20, TimeUnit.SECONDS);
            return "none";
        } catch (ExecutionException e) {
            return e.getCause().getClass().getSimpleName();
        } catch (Exception e) {
            return e.getClass().getSimpleName();
        }
    }

    static String errors() throws Exception {
        String t = topic("err");
        try (Admin admin = admin()) {
            createTopic(admin, t, 2);
            Map<String, String> seen = new TreeMap<>();
            seen.put("create_existing", errorName(admin.createTopics(List.of(new NewTopic(t, 1, (short) 1))).all()));
            seen.put("create_invalid_name", errorName(admin.createTopics(List.of(new NewTopic("bad/name", 1, (short) 1))).all()));
            seen.put("create_zero_partitions", errorName(admin.createTopics(List.of(new NewTopic(topic("zero"), 0, (short) 1))).all()));
            seen.put("create_bad_config", errorName(admin.createTopics(List.of(new NewTopic(topic("badcfg"), 1, (short) 1)
                .configs(Map.of("cleanup.policy", "bogus")))).all()));
            seen.put("create_rf_too_big", errorName(admin.createTopics(List.of(new NewTopic(topic("rf"), 1, (short) 3))).all()));
            seen.put("partitions_decrease", errorName(admin.createPartitions(Map.of(t, NewPartitions.increaseTo(1))).all()));
            seen.put("delete_unknown", errorName(admin.deleteTopics(List.of(topic("nosuch"))).all()));
            ConfigResource unknown = new ConfigResource(ConfigResource.Type.TOPIC, topic("nosuch"));
            seen.put("describe_configs_unknown", errorName(admin.describeConfigs(List.of(unknown)).all()));
            seen.put("alter_unknown_key", errorName(admin.incrementalAlterConfigs(Map.of(
                new ConfigResource(ConfigResource.Type.TOPIC, t),
                List.of(new AlterConfigOp(new ConfigEntry("no.such.config", "1"), AlterConfigOp.OpType.SET)))).all()));
            for (Map.Entry<String, String> e : seen.entrySet()) {
                obs("errors", e.getKey(), e.getValue());
            }
            check(seen.get("create_existing").equals("TopicExistsException"), "create_existing: " + seen.get("create_existing"));
            check(seen.get("create_invalid_name").equals("InvalidTopicException"), "invalid name: " + seen.get("create_invalid_name"));
            check(seen.get("partitions_decrease").equals("InvalidPartitionsException"), "decrease: " + seen.get("partitions_decrease"));
            check(seen.get("delete_unknown").equals("UnknownTopicOrPartitionException"), "delete unknown: " + seen.get("delete_unknown"));
            admin.deleteTopics(List.of(t)).all().get(20, TimeUnit.SECONDS);
            return seen.size() + " error cases as expected";
        }
    }

    /** Polls members round-robin until {@code n} records arrived in total; returns them per member. */
    static List<List<ConsumerRecord<String, String>>> pollGroup(List<KafkaConsumer<String, String>> cs, int n) {
        List<List<ConsumerRecord<String, String>>> got = new ArrayList<>();
        for (int i = 0; i < cs.size(); i++) {
            got.add(new ArrayList<>());
        }
        long end = System.currentTimeMillis() + 40_000;
        int total = 0;
        // Keep polling a little after the target, so duplicates (re-delivery) would be noticed.
        long settleUntil = Long.MAX_VALUE;
        while (System.currentTimeMillis() < end && System.currentTimeMillis() < settleUntil) {
            for (int i = 0; i < cs.size(); i++) {
                ConsumerRecords<String, String> rs = cs.get(i).poll(Duration.ofMillis(100));
                for (ConsumerRecord<String, String> r : rs) {
                    got.get(i).add(r);
                    total++;
                }
            }
            if (total >= n && settleUntil == Long.MAX_VALUE) {
                settleUntil = System.currentTimeMillis() + 1000;
            }
        }
        return got;
    }

    /** Polls all members until each owns {@code each} partitions (bounded); fails on early records. */
    static void awaitAssignment(List<KafkaConsumer<String, String>> cs, int each, boolean recordsAllowed) {
        long end = System.currentTimeMillis() + 30_000;
        while (true) {
            boolean done = true;
            for (KafkaConsumer<String, String> c : cs) {
                ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(100));
                check(recordsAllowed || rs.isEmpty(), "received " + rs.count() + " records before any were produced");
                done &= c.assignment().size() == each;
            }
            if (done) {
                return;
            }
            check(System.currentTimeMillis() < end, "group never reached " + each + " partitions per member");
        }
    }

    static String group() throws Exception {
        String t = topic("grp");
        String g = "java-group-" + RUN;
        try (Admin admin = admin()) {
            createTopic(admin, t, 4);
        }
        List<KafkaConsumer<String, String>> cs = List.of(consumer(g), consumer(g));
        try {
            for (KafkaConsumer<String, String> c : cs) {
                c.subscribe(List.of(t));
            }
            awaitAssignment(cs, 2, false);
            produce(t, 0, 200, 16);
            List<List<ConsumerRecord<String, String>>> got = pollGroup(cs, 200);
            int total = got.get(0).size() + got.get(1).size();
            check(total == 200, "first generation consumed " + total + " of 200");
            Set<Integer> p0 = got.get(0).stream().map(ConsumerRecord::partition).collect(Collectors.toSet());
            Set<Integer> p1 = got.get(1).stream().map(ConsumerRecord::partition).collect(Collectors.toSet());
            p0.retainAll(p1);
            check(p0.isEmpty(), "both members read partitions " + p0);
            checkOrder(got.get(0));
            checkOrder(got.get(1));
            for (KafkaConsumer<String, String> c : cs) {
                c.commitSync(Duration.ofSeconds(15));
            }
        } finally {
            for (KafkaConsumer<String, String> c : cs) {
                c.close(Duration.ofSeconds(10));
            }
        }
        try (Admin admin = admin()) {
            Map<TopicPartition, OffsetAndMetadata> offs = admin.listConsumerGroupOffsets(g)
                .partitionsToOffsetAndMetadata().get(20, TimeUnit.SECONDS);
            long committed = offs.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
            check(offs.size() == 4 && committed == 200, "committed offsets " + offs);
        }
        // Restart: 50 records arrive while the group is down, 50 after the new members joined.
        // The new members must resume at the committed offsets: exactly records 200..299, none older.
        produce(t, 200, 50, 16);
        List<KafkaConsumer<String, String>> cs2 = List.of(consumer(g), consumer(g));
        int dupes;
        try {
            for (KafkaConsumer<String, String> c : cs2) {
                c.subscribe(List.of(t));
            }
            List<ConsumerRecord<String, String>> all = new ArrayList<>();
            // Records may arrive while the group is still forming (at-least-once across a rebalance).
            long end = System.currentTimeMillis() + 30_000;
            while (!(cs2.get(0).assignment().size() == 2 && cs2.get(1).assignment().size() == 2)) {
                check(System.currentTimeMillis() < end, "restarted group never balanced");
                for (KafkaConsumer<String, String> c : cs2) {
                    c.poll(Duration.ofMillis(100)).forEach(all::add);
                }
            }
            produce(t, 250, 50, 16);
            List<List<ConsumerRecord<String, String>>> got = pollGroup(cs2, 100 - all.size());
            all.addAll(got.get(0));
            all.addAll(got.get(1));
            Set<String> unique = new TreeSet<>();
            for (ConsumerRecord<String, String> r : all) {
                int seq = Integer.parseInt(r.value().substring(1));
                check(seq >= 200, "re-consumed committed record " + r.value() + " from partition " + r.partition());
                unique.add(r.value());
            }
            dupes = all.size() - unique.size();
            check(unique.size() == 100, "after restart consumed " + unique.size() + " distinct of the 100 new");
            for (KafkaConsumer<String, String> c : cs2) {
                c.commitSync(Duration.ofSeconds(15));
            }
        } finally {
            for (KafkaConsumer<String, String> c : cs2) {
                c.close(Duration.ofSeconds(10));
            }
        }
        return "2 members x 2 partitions, 200 consumed exactly once + committed; restart resumed with the 100 new ("
            + dupes + " redelivered during rebalance)";
    }

    static String adminGroups() throws Exception {
        String t = topic("ag");
        String g = "java-admin-group-" + RUN;
        try (Admin admin = admin()) {
            createTopic(admin, t, 2);
            produce(t, 0, 20, 4);
            try (KafkaConsumer<String, String> c = consumer(g)) {
                c.subscribe(List.of(t));
                List<List<ConsumerRecord<String, String>>> got = pollGroup(List.of(c), 20);
                check(got.get(0).size() == 20, "consumed " + got.get(0).size());
                c.commitSync(Duration.ofSeconds(15));
                Collection<ConsumerGroupListing> groups = admin.listConsumerGroups().all().get(20, TimeUnit.SECONDS);
                check(groups.stream().anyMatch(x -> x.groupId().equals(g)), "listConsumerGroups lacks " + g);
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(g)).all().get(20, TimeUnit.SECONDS).get(g);
                check(d.members().size() == 1, "describe members " + d.members().size());
                check(d.members().iterator().next().assignment().topicPartitions().size() == 2, "member assignment");
                obs("admin_groups", "state", d.groupState());
                obs("admin_groups", "assignor", d.partitionAssignor());
                obs("admin_groups", "type", d.type());
            }
            Map<TopicPartition, OffsetAndMetadata> offs = admin.listConsumerGroupOffsets(g)
                .partitionsToOffsetAndMetadata().get(20, TimeUnit.SECONDS);
            check(offs.size() == 2, "offsets " + offs);
            ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(g)).all().get(20, TimeUnit.SECONDS).get(g);
            obs("admin_groups", "state_after_close", d.groupState());
            admin.deleteConsumerGroups(List.of(g)).all().get(20, TimeUnit.SECONDS);
            Collection<ConsumerGroupListing> groups = admin.listConsumerGroups().all().get(20, TimeUnit.SECONDS);
            check(groups.stream().noneMatch(x -> x.groupId().equals(g)), "group still listed after delete");
            return "list/describe/offsets/delete groups ok";
        }
    }

    // ---------------------------------------------------------------- CLI tool classes

    record Proc(int rc, String out) {}

    static Proc tool(String cls, String stdin, String... args) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(System.getProperty("java.home") + File.separator + "bin" + File.separator + "java");
        cmd.add("-Xmx256m");
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(cls);
        cmd.addAll(Arrays.asList(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        Process p = pb.start();
        try (OutputStream os = p.getOutputStream()) {
            if (stdin != null) {
                os.write(stdin.getBytes(StandardCharsets.UTF_8));
            }
        }
        StringBuilder out = new StringBuilder();
        Thread reader = new Thread(() -> {
            try (BufferedReader br = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = br.readLine()) != null) {
                    synchronized (out) {
                        out.append(line).append('\n');
                    }
                }
            } catch (Exception ignored) {
                // process ended
            }
        });
        reader.start();
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            reader.join(2000);
            throw new AssertionError(cls + " timed out; output: " + tail(out.toString()));
        }
        reader.join(5000);
        synchronized (out) {
            return new Proc(p.exitValue(), out.toString());
        }
    }

    static String tail(String s) {
        return oneLine(s.length() > 600 ? s.substring(s.length() - 600) : s);
    }

    static Proc ok(String cls, String stdin, String... args) throws Exception {
        Proc r = tool(cls, stdin, args);
        check(r.rc == 0, cls.substring(cls.lastIndexOf('.') + 1) + " " + String.join(" ", args) + " -> rc " + r.rc + ": " + tail(r.out));
        return r;
    }

    static final String TOPIC_CMD = "org.apache.kafka.tools.TopicCommand";
    static final String CONSOLE_PRODUCER = "org.apache.kafka.tools.ConsoleProducer";
    static final String CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer";
    static final String GROUP_CMD = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";

    static String cliTopics() throws Exception {
        String t = topic("cli");
        String bs = "--bootstrap-server";
        ok(TOPIC_CMD, null, bs, bootstrap, "--create", "--topic", t, "--partitions", "2", "--config", "retention.ms=123456");
        Proc list = ok(TOPIC_CMD, null, bs, bootstrap, "--list");
        check(list.out.lines().anyMatch(l -> l.trim().equals(t)), "--list lacks topic: " + tail(list.out));
        Proc desc = ok(TOPIC_CMD, null, bs, bootstrap, "--describe", "--topic", t);
        check(desc.out.contains("PartitionCount: 2") && desc.out.contains("retention.ms=123456"), "--describe: " + tail(desc.out));
        ok(TOPIC_CMD, null, bs, bootstrap, "--alter", "--topic", t, "--partitions", "4");
        desc = ok(TOPIC_CMD, null, bs, bootstrap, "--describe", "--topic", t);
        check(desc.out.contains("PartitionCount: 4"), "after --alter: " + tail(desc.out));
        Proc dup = tool(TOPIC_CMD, null, bs, bootstrap, "--create", "--topic", t, "--partitions", "1");
        obs("cli_topics", "create_existing_rc", dup.rc);
        check(dup.rc != 0 && dup.out.contains("already exists"), "duplicate create: rc " + dup.rc + " " + tail(dup.out));
        ok(TOPIC_CMD, null, bs, bootstrap, "--delete", "--topic", t);
        return "create/list/describe/alter/delete via TopicCommand";
    }

    static String cliConsole() throws Exception {
        String t = topic("console");
        try (Admin admin = admin()) {
            createTopic(admin, t, 1);
        }
        StringBuilder in = new StringBuilder();
        for (int i = 0; i < 20; i++) {
            in.append("key").append(i % 3).append(':').append("line-").append(i).append('\n');
        }
        ok(CONSOLE_PRODUCER, in.toString(), "--bootstrap-server", bootstrap, "--topic", t,
            "--property", "parse.key=true", "--property", "key.separator=:",
            "--producer-property", "acks=all");
        Proc c = ok(CONSOLE_CONSUMER, null, "--bootstrap-server", bootstrap, "--topic", t, "--from-beginning",
            "--max-messages", "20", "--timeout-ms", "20000",
            "--property", "print.key=true", "--property", "key.separator=:");
        List<String> lines = c.out.lines().filter(l -> l.startsWith("key")).collect(Collectors.toList());
        check(lines.size() == 20, "console consumer printed " + lines.size() + " records: " + tail(c.out));
        for (int i = 0; i < 20; i++) {
            String want = "key" + (i % 3) + ":line-" + i;
            check(lines.get(i).equals(want), "line " + i + " = " + lines.get(i) + ", want " + want);
        }
        return "20 keyed lines through ConsoleProducer -> ConsoleConsumer in order";
    }

    static String cliConsumerGroups() throws Exception {
        String t = topic("cg");
        String g = "java-cli-group-" + RUN;
        try (Admin admin = admin()) {
            createTopic(admin, t, 2);
        }
        produce(t, 0, 30, 5);
        Proc c = ok(CONSOLE_CONSUMER, null, "--bootstrap-server", bootstrap, "--topic", t, "--group", g,
            "--from-beginning", "--max-messages", "30", "--timeout-ms", "20000");
        check(c.out.lines().filter(l -> l.startsWith("v")).count() == 30, "console consumer in group: " + tail(c.out));
        Proc list = ok(GROUP_CMD, null, "--bootstrap-server", bootstrap, "--list");
        check(list.out.contains(g), "--list lacks group: " + tail(list.out));
        Proc desc = ok(GROUP_CMD, null, "--bootstrap-server", bootstrap, "--describe", "--group", g);
        // Columns: GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...
        long rows = desc.out.lines().filter(l -> l.startsWith(g + " ") && l.contains(t)).count();
        check(rows == 2, "--describe rows " + rows + ": " + tail(desc.out));
        long lagZero = desc.out.lines().filter(l -> l.startsWith(g + " ") && l.contains(t))
            .filter(l -> l.trim().split("\\s+")[5].equals("0")).count();
        check(lagZero == 2, "lag not 0: " + tail(desc.out));
        Proc reset = ok(GROUP_CMD, null, "--bootstrap-server", bootstrap, "--reset-offsets", "--group", g,
            "--topic", t, "--to-earliest", "--execute");
        check(reset.out.contains(t), "--reset-offsets: " + tail(reset.out));
        desc = ok(GROUP_CMD, null, "--bootstrap-server", bootstrap, "--describe", "--group", g);
        long lag = desc.out.lines().filter(l -> l.startsWith(g + " ") && l.contains(t))
            .mapToLong(l -> Long.parseLong(l.trim().split("\\s+")[5])).sum();
        check(lag == 30, "lag after reset " + lag + ": " + tail(desc.out));
        ok(GROUP_CMD, null, "--bootstrap-server", bootstrap, "--delete", "--group", g);
        return "ConsoleConsumer --group, ConsumerGroupCommand --list/--describe/--reset-offsets/--delete";
    }

    static String perf() throws Exception {
        String t = topic("perf");
        try (Admin admin = admin()) {
            createTopic(admin, t, 2);
        }
        Proc p = ok("org.apache.kafka.tools.ProducerPerformance", null, "--topic", t, "--num-records", "2000",
            "--record-size", "100", "--throughput", "-1", "--producer-props", "bootstrap.servers=" + bootstrap, "acks=all");
        check(p.out.contains("2000 records sent"), "producer perf: " + tail(p.out));
        Proc c = ok("org.apache.kafka.tools.ConsumerPerformance", null, "--bootstrap-server", bootstrap, "--topic", t,
            "--messages", "2000", "--timeout", "20000");
        String last = c.out.lines().filter(l -> l.matches("^\\d{4}-.*")).reduce((a, b) -> b).orElse("");
        check(!last.isEmpty(), "consumer perf output: " + tail(c.out));
        String[] cols = last.split(",\\s*");
        check(cols.length > 4 && cols[4].trim().equals("2000"), "consumer perf read " + (cols.length > 4 ? cols[4] : "?") + ": " + last);
        return "ProducerPerformance 2000 x 100 B, ConsumerPerformance read 2000";
    }
}
