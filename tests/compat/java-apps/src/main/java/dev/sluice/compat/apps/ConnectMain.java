package dev.sluice.compat.apps;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.utils.AppInfoParser;

/**
 * Kafka Connect scenarios: FileStreamSource reads a file into a topic, FileStreamSink writes the
 * topic to another file, and the output must be byte-identical to the input. {@code standalone}
 * runs {@code ConnectStandalone} with connector property files; {@code distributed} runs
 * {@code ConnectDistributed} (compacted config/offset/status topics, a "connect" group) and
 * creates the connectors through the REST API. Workers run in child JVMs with this classpath.
 */
public final class ConnectMain {
    static final int LINES = 1000;
    static final long DEADLINE_MS = 90_000;

    private ConnectMain() {}

    public static void main(String[] args) {
        Map<String, Common.Scenario> all = new LinkedHashMap<>();
        all.put("standalone", ConnectMain::standalone);
        all.put("distributed", ConnectMain::distributed);
        Common.main(args, "connect-runtime " + AppInfoParser.getVersion(), all);
    }

    /** 1000 non-empty lines of varied length and characters (ASCII, Latin-1, CJK, emoji). */
    static byte[] inputFile() {
        Random rnd = new Random(1000);
        String[] bits = {"sluice", "kafka", "connect", "ünïcødé", "日本語", "🙂", "tab\there", "a=b;c", "  spaced  "};
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < LINES; i++) {
            sb.append(String.format("%04d", i));
            int n = rnd.nextInt(12);
            for (int j = 0; j < n; j++) {
                sb.append(' ').append(bits[rnd.nextInt(bits.length)]);
            }
            sb.append('\n');
        }
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }

    static Process startWorker(Path dir, String mainClass, List<String> args, Path log) throws IOException {
        List<String> cmd = new ArrayList<>(List.of(
            Path.of(System.getProperty("java.home"), "bin", "java").toString(), "-Xmx384m",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=" + System.getProperty("compat.connect.log", "warn"),
            "-Dorg.slf4j.simpleLogger.showDateTime=true", "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
            "-cp", System.getProperty("java.class.path"), mainClass));
        cmd.addAll(args);
        return new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true)
            .redirectOutput(log.toFile()).start();
    }

    static String stopWorker(Process p, Path log) throws Exception {
        if (p.isAlive()) {
            p.destroy(); // SIGTERM: Connect's shutdown hook stops connectors and the worker
            if (!p.waitFor(30, TimeUnit.SECONDS)) {
                p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
                return "killed (no exit 30 s after SIGTERM)";
            }
        }
        return "exit " + p.exitValue();
    }

    /** Copies the worker's WARN/ERROR lines (at most 60) to stderr, i.e. the client log. */
    static void dumpLog(Path log) {
        try {
            List<String> l = Files.readAllLines(log, StandardCharsets.UTF_8).stream()
                .filter(x -> !x.startsWith("\tat ")).toList();
            System.err.println("--- worker log " + log + " (" + l.size() + " lines, last 60) ---");
            l.subList(Math.max(0, l.size() - 60), l.size()).forEach(System.err::println);
        } catch (IOException e) {
            System.err.println("no worker log: " + e);
        }
    }

    static String tail(Path log) {
        try {
            List<String> l = Files.readAllLines(log, StandardCharsets.UTF_8);
            return String.join(" | ", l.subList(Math.max(0, l.size() - 8), l.size()));
        } catch (IOException e) {
            return "(no log: " + e + ")";
        }
    }

    /** Waits until {@code out} equals {@code expected}, failing early if the worker exits. */
    static void awaitCopy(Path out, byte[] expected, Process worker, Path log) throws Exception {
        Common.waitFor(DEADLINE_MS, "sink file " + out.getFileName() + " to equal the input", () -> {
            if (!worker.isAlive()) {
                throw new IllegalStateException("worker exited " + worker.exitValue() + ": " + tail(log));
            }
            try {
                if (!Files.exists(out)) {
                    return "no output file yet";
                }
                byte[] got = Files.readAllBytes(out);
                if (Arrays.equals(got, expected)) {
                    return null;
                }
                long lines = new String(got, StandardCharsets.UTF_8).chars().filter(c -> c == '\n').count();
                return got.length + " of " + expected.length + " bytes, " + lines + " lines";
            } catch (IOException e) {
                return e.toString();
            }
        });
    }

    static void writeProps(Path f, Map<String, String> m) throws IOException {
        StringBuilder sb = new StringBuilder();
        m.forEach((k, v) -> sb.append(k).append('=').append(v.replace("\\", "\\\\")).append('\n'));
        Files.writeString(f, sb.toString());
    }

    static Map<String, String> workerBase(Path dir, int restPort) {
        Map<String, String> w = new LinkedHashMap<>();
        w.put("bootstrap.servers", Common.bootstrap);
        w.put("key.converter", "org.apache.kafka.connect.storage.StringConverter");
        w.put("value.converter", "org.apache.kafka.connect.storage.StringConverter");
        w.put("offset.flush.interval.ms", "500");
        w.put("listeners", "http://127.0.0.1:" + restPort);
        // The FileStream connectors are on the classpath (no plugin.path). Their jars carry
        // ServiceLoader manifests (KIP-898), so service_load finds them without the reflective
        // classpath scan, which takes ~10 s here.
        w.put("plugin.discovery", "service_load");
        return w;
    }

    static String standalone() throws Exception {
        String topic = "connect-sa-" + Common.RUN;
        Path dir = Common.tempDir("compat-connect-sa-");
        Path log = dir.resolve("worker.log");
        try (Admin admin = Common.admin()) {
            // One partition: the sink sees the lines in file order.
            Common.createTopic(admin, topic, 1, Map.of());
            byte[] input = inputFile();
            Path in = dir.resolve("input.txt");
            Path out = dir.resolve("output.txt");
            Files.write(in, input);
            Map<String, String> w = workerBase(dir, Common.freePort());
            w.put("offset.storage.file.filename", dir.resolve("offsets.dat").toString());
            writeProps(dir.resolve("worker.properties"), w);
            writeProps(dir.resolve("source.properties"), Map.of("name", "file-source-" + Common.RUN,
                "connector.class", "org.apache.kafka.connect.file.FileStreamSourceConnector",
                "tasks.max", "1", "file", in.toString(), "topic", topic));
            writeProps(dir.resolve("sink.properties"), Map.of("name", "file-sink-" + Common.RUN,
                "connector.class", "org.apache.kafka.connect.file.FileStreamSinkConnector",
                "tasks.max", "1", "file", out.toString(), "topics", topic));
            long t0 = System.nanoTime();
            Common.step("standalone: topic created, input written");
            Process p = startWorker(dir, "org.apache.kafka.connect.cli.ConnectStandalone",
                List.of("worker.properties", "source.properties", "sink.properties"), log);
            String stopped;
            try {
                awaitCopy(out, input, p, log);
                Common.step("standalone: worker started, output byte-identical");
            } finally {
                stopped = stopWorker(p, log);
                Common.step("standalone: worker stopped");
            }
            long ms = (System.nanoTime() - t0) / 1_000_000;
            Common.obs("standalone", "byte_identical", true);
            Common.obs("standalone", "worker_stop", stopped);
            return LINES + " lines (" + input.length + " bytes) file -> " + topic + " -> file byte-identical in "
                + ms + " ms; worker " + stopped;
        } finally {
            if (System.getProperty("compat.connect.keep") != null) {
                Files.copy(log, Path.of(System.getProperty("compat.connect.keep")),
                    java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            }
            dumpLog(log);
            Common.deleteTree(dir);
        }
    }

    static HttpResponse<String> http(HttpClient c, String method, String url, String body) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(20))
            .header("Content-Type", "application/json");
        b.method(method, body == null ? HttpRequest.BodyPublishers.noBody() : HttpRequest.BodyPublishers.ofString(body));
        return c.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    static String json(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    static String connectorJson(String name, Map<String, String> cfg) {
        String c = cfg.entrySet().stream().map(e -> json(e.getKey()) + ":" + json(e.getValue()))
            .collect(Collectors.joining(","));
        return "{\"name\":" + json(name) + ",\"config\":{" + c + "}}";
    }

    static String distributed() throws Exception {
        String topic = "connect-dist-" + Common.RUN;
        String pfx = "connect-" + Common.RUN + "-";
        Path dir = Common.tempDir("compat-connect-dist-");
        Path log = dir.resolve("worker.log");
        try (Admin admin = Common.admin()) {
            Common.createTopic(admin, topic, 1, Map.of());
            byte[] input = inputFile();
            Path in = dir.resolve("input.txt");
            Path out = dir.resolve("output.txt");
            Files.write(in, input);
            int port = Common.freePort();
            Map<String, String> w = workerBase(dir, port);
            w.put("group.id", "compat-connect-" + Common.RUN);
            w.put("config.storage.topic", pfx + "configs");
            w.put("offset.storage.topic", pfx + "offsets");
            w.put("status.storage.topic", pfx + "status");
            w.put("config.storage.replication.factor", "1");
            w.put("offset.storage.replication.factor", "1");
            w.put("status.storage.replication.factor", "1");
            w.put("offset.storage.partitions", "5");
            w.put("scheduled.rebalance.max.delay.ms", "1000");
            writeProps(dir.resolve("worker.properties"), w);
            long t0 = System.nanoTime();
            Process p = startWorker(dir, "org.apache.kafka.connect.cli.ConnectDistributed",
                List.of("worker.properties"), log);
            String base = "http://127.0.0.1:" + port;
            HttpClient hc = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
            String stopped;
            String src = "file-source-" + Common.RUN;
            String sink = "file-sink-" + Common.RUN;
            try {
                // The REST server answers before the herder has joined the group and read the
                // config topic; creating a connector then gets 409/503 for a while: retry.
                for (String[] c : List.of(
                        new String[] {src, connectorJson(src, Map.of(
                            "connector.class", "org.apache.kafka.connect.file.FileStreamSourceConnector",
                            "tasks.max", "1", "file", in.toString(), "topic", topic))},
                        new String[] {sink, connectorJson(sink, Map.of(
                            "connector.class", "org.apache.kafka.connect.file.FileStreamSinkConnector",
                            "tasks.max", "1", "file", out.toString(), "topics", topic))})) {
                    Common.step("distributed: posting " + c[0]);
                    Common.waitFor(DEADLINE_MS, "POST /connectors " + c[0], () -> {
                        if (!p.isAlive()) {
                            throw new IllegalStateException("worker exited " + p.exitValue() + ": " + tail(log));
                        }
                        try {
                            HttpResponse<String> r = http(hc, "POST", base + "/connectors", c[1]);
                            return r.statusCode() == 201 ? null : r.statusCode() + " " + r.body();
                        } catch (Exception e) {
                            return e.toString();
                        }
                    });
                }
                Common.step("distributed: connectors created");
                awaitCopy(out, input, p, log);
                Common.step("distributed: output byte-identical");
                // Both connectors and their tasks report RUNNING through the status topic.
                for (String name : List.of(src, sink)) {
                    Common.waitFor(30_000, "status of " + name, () -> {
                        try {
                            HttpResponse<String> r = http(hc, "GET", base + "/connectors/" + name + "/status", null);
                            String b = r.body().replaceAll("\\s", "");
                            boolean ok = r.statusCode() == 200 && b.contains("\"connector\":{\"state\":\"RUNNING\"")
                                && b.contains("\"tasks\":[{\"id\":0,\"state\":\"RUNNING\"");
                            return ok ? null : r.statusCode() + " " + r.body();
                        } catch (Exception e) {
                            return e.toString();
                        }
                    });
                }
                HttpResponse<String> list = http(hc, "GET", base + "/connectors", null);
                Common.check(list.body().contains(src) && list.body().contains(sink), "GET /connectors " + list.body());
                for (String name : List.of(src, sink)) {
                    HttpResponse<String> r = http(hc, "DELETE", base + "/connectors/" + name, null);
                    Common.check(r.statusCode() == 204, "DELETE " + name + ": " + r.statusCode() + " " + r.body());
                }
                Common.step("distributed: status RUNNING, connectors deleted");
            } finally {
                stopped = stopWorker(p, log);
                Common.step("distributed: worker stopped");
            }
            long ms = (System.nanoTime() - t0) / 1_000_000;
            Set<String> policies = new TreeSet<>();
            for (String t : List.of("configs", "offsets", "status")) {
                ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, pfx + t);
                String v = admin.describeConfigs(List.of(r)).all().get().get(r).get("cleanup.policy").value();
                Common.obs("distributed", t + "_cleanup_policy", v);
                policies.add(t + "=" + v);
            }
            Common.obs("distributed", "byte_identical", true);
            Common.obs("distributed", "worker_stop", stopped);
            Common.check(policies.equals(Set.of("configs=compact", "offsets=compact", "status=compact")),
                "internal topic policies " + policies);
            return LINES + " lines via REST-created connectors byte-identical in " + ms + " ms; " + policies
                + "; connectors RUNNING, deleted; worker " + stopped;
        } finally {
            if (System.getProperty("compat.connect.keep") != null) {
                Files.copy(log, Path.of(System.getProperty("compat.connect.keep")),
                    java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            }
            dumpLog(log);
            Common.deleteTree(dir);
        }
    }
}
