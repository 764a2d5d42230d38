package dev.sluice.compat.apps;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.stream.Stream;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Deserializer;

/**
 * Shared plumbing of the Streams and Connect programs: the output protocol of tests/compat
 * ({@code VERSION}, {@code PASS}, {@code FAIL}, {@code OBS} lines), scenario dispatch, topic
 * creation and a bounded "read a topic to its end" consumer.
 */
final class Common {
    static final String RUN = UUID.randomUUID().toString().substring(0, 8);
    static String bootstrap;
    static boolean failed = false;

    interface Scenario {
        String run() throws Exception;
    }

    private Common() {}

    /** Runs the selected scenarios (all when none are named) and exits 1 if any failed. */
    /** Kafka's version from kafka-clients' kafka/kafka-version.properties (AppInfoParser, which
     *  reads it, moved to an internals package in 4.4 and is no API). */
    static String kafkaVersion() {
        try (var in = Common.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            Properties p = new Properties();
            if (in != null) p.load(in);
            return p.getProperty("version", "unknown");
        } catch (IOException e) {
            return "unknown";
        }
    }

    static void main(String[] args, String versionLine, Map<String, Scenario> all) {
        if (args.length < 1) {
            System.err.println("usage: BOOTSTRAP [SCENARIO...]");
            System.exit(2);
        }
        bootstrap = args[0];
        List<String> selected = args.length > 1
            ? Arrays.asList(args).subList(1, args.length) : new ArrayList<>(all.keySet());
        System.out.println("VERSION " + versionLine);
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
                System.err.println("scenario " + name + " failed:");
                c.printStackTrace();
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
        String t = s.replace('\n', ' ').replace('\r', ' ');
        return t.length() > 400 ? t.substring(0, 400) + "..." : t;
    }

    static long stepStart = System.nanoTime();

    /** Logs a progress step with the time since the previous one to stderr (the client log). */
    static void step(String what) {
        long now = System.nanoTime();
        System.err.println("[step +" + (now - stepStart) / 1_000_000 + " ms] " + what);
        stepStart = now;
    }

    static void check(boolean cond, String what) {
        if (!cond) {
            throw new IllegalStateException(what);
        }
    }

    static Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30_000);
        return Admin.create(p);
    }

    static void createTopic(Admin admin, String name, int partitions, Map<String, String> configs) throws Exception {
        admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1).configs(configs))).all().get();
    }

    /**
     * Reads every partition of {@code topic} from the beginning to the end offsets observed when
     * called; returns the last value per key (a compacted view). Bounded by {@code timeoutMs}.
     */
    static <K, V> Map<K, V> latestPerKey(String topic, Deserializer<K> kd, Deserializer<V> vd, long timeoutMs) {
        Map<K, V> out = new HashMap<>();
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        try (KafkaConsumer<K, V> c = new KafkaConsumer<>(p, kd, vd)) {
            List<TopicPartition> tps = c.partitionsFor(topic).stream()
                .map(i -> new TopicPartition(topic, i.partition())).toList();
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            long deadline = System.currentTimeMillis() + timeoutMs;
            while (System.currentTimeMillis() < deadline) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    done &= c.position(tp) >= end.get(tp);
                }
                if (done) {
                    break;
                }
                for (ConsumerRecord<K, V> r : c.poll(java.time.Duration.ofMillis(200))) {
                    out.put(r.key(), r.value());
                }
            }
        }
        return out;
    }

    /** Polls {@code cond} every 200 ms until it returns null (success) or the deadline passes. */
    static void waitFor(long timeoutMs, String what, java.util.function.Supplier<String> cond) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        String last = "never checked";
        while (System.currentTimeMillis() < deadline) {
            last = cond.get();
            if (last == null) {
                return;
            }
            Thread.sleep(200);
        }
        throw new IllegalStateException("timed out after " + timeoutMs + " ms waiting for " + what + ": " + last);
    }

    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    static Path tempDir(String prefix) throws IOException {
        return Files.createTempDirectory(prefix);
    }

    static void deleteTree(Path dir) {
        if (dir == null || !Files.exists(dir)) {
            return;
        }
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
        } catch (IOException e) {
            System.err.println("could not delete " + dir + ": " + e);
        }
    }

    /** Diff summary of two maps for failure messages: up to 5 differing keys. */
    static <K, V> String mapDiff(Map<K, V> expected, Map<K, V> actual) {
        Map<String, String> d = new LinkedHashMap<>();
        for (K k : expected.keySet()) {
            if (!expected.get(k).equals(actual.get(k)) && d.size() < 5) {
                d.put(String.valueOf(k), "expected " + expected.get(k) + " got " + actual.get(k));
            }
        }
        for (K k : actual.keySet()) {
            if (!expected.containsKey(k) && d.size() < 5) {
                d.put(String.valueOf(k), "unexpected " + actual.get(k));
            }
        }
        return expected.size() + " expected keys, " + actual.size() + " read; " + d;
    }
}
