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

/**
 * Kafka Connect scenarios: FileStreamSource reads a file into a topic, FileStreamSink writes the
 * topic to another file, and the output must be byte-identical to the input. {@code standalone}
 * runs {@code ConnectStandalone} with connector property files; {@code distributed} runs
 * {@code ConnectDistributed} (compacted config/offset/status topics, a "connect" group) and
 * creates the connectors through the REST API. Workers run in child JVMs with this classpath.
 */
public final class ConnectMain {
    static final int LINES = 1000;
    static final int EXTRA_LINES = 200;
    static final long DEADLINE_MS = 90_000;

    private ConnectMain() {}

    /** connect-file's version, from its jar's name (it may differ from the runtime's: 4.4.0 is
     *  not served, so 4.3.1 runs on the 4.4.0 runtime; see org.apache.kafka.common.utils.AppInfoParser
     *  in this module). */
    static String connectFileVersion() {
        try {
            String jar = Class.forName("org.apache.kafka.connect.file.FileStreamSourceConnector")
                .getProtectionDomain().getCodeSource().getLocation().getPath();
            java.util.regex.Matcher m = java.util.regex.Pattern.compile("connect-file-([^/]+)\\.jar$").matcher(jar);
            return m.find() ? m.group(1) : "unknown";
        } catch (Exception e) {
            return "unknown";
        }
    }

    public static void main(String[] args) {
        Map<String, Common.Scenario> all = new LinkedHashMap<>();
        all.put("standalone", ConnectMain::standalone);
        all.put("distributed", ConnectMain::distributed);
        Common.main(args, "connect-runtime " + Common.kafkaVersion() + ", connect-file " + connectFileVersion(), all);
    }

    /** 1000 non-empty lines of varied length and characters (ASCII, Latin-1, CJK, emoji). */
    static byte[] inputFile() {
        return lines(1000, 0, LINES, false);
    }

    /**
     * {@code count} lines numbered from {@code first}. ASCII only if {@code ascii}: the
     * FileStreamSource task counts its file position in chars but resumes by skipping bytes, so
     * after a restart it starts mid-line in a file with multi-byte UTF-8 (same on Kafka).
     */
    static byte[] lines(long seed, int first, int count, boolean ascii) {
        Random rnd = new Random(seed);
        String[] bits = ascii
            ? new String[] {"sluice", "kafka", "connect", "tab\there", "a=b;c", "  spaced  ", "~!@#$%^&*()"}
            : new String[] {"sluice", "kafka", "connect", "ünïcødé", "日本語", "🙂", "tab\there", "a=b;c", "  spaced  "};
        StringBuilder sb = new StringBuilder();
        for (int i = first; i < first + count; i++) {
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

    /**
     * After a worker restart the sink file must be: the first run's output (the whole input),
     * then a contiguous replay of the input's last k lines (at-least-once redelivery, k >= 0),
     * then exactly the appended lines. Returns null when it is, else what is wrong; sets
     * {@code replayed[0]} to k.
     */
    static String checkResumed(byte[] got, byte[] input, byte[] more, int[] replayed) {
        if (got.length < input.length || !Arrays.equals(Arrays.copyOf(got, input.length), input)) {
            return "first " + input.length + " bytes differ from the first run's output";
        }
        List<String> in = Arrays.asList(new String(input, StandardCharsets.UTF_8).split("\n"));
        List<String> extra = Arrays.asList(new String(more, StandardCharsets.UTF_8).split("\n"));
        String rest = new String(got, input.length, got.length - input.length, StandardCharsets.UTF_8);
        List<String> tailLines = rest.isEmpty() ? List.of() : Arrays.asList(rest.split("\n"));
        if (!rest.isEmpty() && !rest.endsWith("\n")) {
            return "partial last line";
        }
        int k = tailLines.size() - extra.size();
        if (k < 0 || !tailLines.subList(k, tailLines.size()).equals(extra)) {
            return tailLines.size() + " lines after the first run's output, not yet ending with the "
                + extra.size() + " appended ones";
        }
        if (k > in.size() || !tailLines.subList(0, k).equals(in.subList(in.size() - k, in.size()))) {
            return k + " lines before the appended ones are not a replay of the input's last lines (first: line "
                + in.indexOf(tailLines.get(0)) + ", last: line " + in.indexOf(tailLines.get(k - 1)) + ")";
        }
        replayed[0] = k;
        return null;
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
        Path log2 = dir.resolve("worker2.log");
        try (Admin admin = Common.admin()) {
            Common.createTopic(admin, topic, 1, Map.of());
            byte[] input = lines(1000, 0, LINES, true);
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
            int replayedLines = -1;
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
                Common.step("distributed: status RUNNING");
                String stopped1 = stopWorker(p, log);
                Common.step("distributed: worker 1 stopped (" + stopped1 + ")");
                // A new worker with no local state: the connector configs come back from the
                // config topic, the source's file position from the offset topic and the sink's
                // position from its group's committed offsets, so only the appended lines are
                // copied, once.
                byte[] more = lines(2000, LINES, EXTRA_LINES, true);
                Files.write(in, more, java.nio.file.StandardOpenOption.APPEND);
                byte[] all = new byte[input.length + more.length];
                System.arraycopy(input, 0, all, 0, input.length);
                System.arraycopy(more, 0, all, input.length, more.length);
                int port2 = Common.freePort();
                w.put("listeners", "http://127.0.0.1:" + port2);
                writeProps(dir.resolve("worker.properties"), w);
                String base2 = "http://127.0.0.1:" + port2;
                Process p2 = startWorker(dir, "org.apache.kafka.connect.cli.ConnectDistributed",
                    List.of("worker.properties"), log2);
                int[] replayed = {-1};
                try {
                    Common.waitFor(DEADLINE_MS, "sink file to end with the appended lines", () -> {
                        if (!p2.isAlive()) {
                            throw new IllegalStateException("worker 2 exited " + p2.exitValue() + ": " + tail(log2));
                        }
                        try {
                            String why = checkResumed(Files.readAllBytes(out), input, more, replayed);
                            return why;
                        } catch (IOException e) {
                            return e.toString();
                        }
                    });
                    Common.step("distributed: worker 2 copied the " + EXTRA_LINES + " appended lines after "
                        + replayed[0] + " replayed ones");
                    // The herder runs tasks before the REST resources are registered (404 until then).
                    Common.waitFor(30_000, "GET /connectors on worker 2 listing both", () -> {
                        try {
                            HttpResponse<String> r = http(hc, "GET", base2 + "/connectors", null);
                            boolean ok = r.statusCode() == 200 && r.body().contains(src) && r.body().contains(sink);
                            return ok ? null : r.statusCode() + " " + Common.oneLine(r.body());
                        } catch (Exception e) {
                            return e.toString();
                        }
                    });
                    for (String name : List.of(src, sink)) {
                        HttpResponse<String> r = http(hc, "DELETE", base2 + "/connectors/" + name, null);
                        Common.check(r.statusCode() == 204, "DELETE " + name + ": " + r.statusCode() + " " + r.body());
                    }
                    Common.step("distributed: connectors deleted");
                    replayedLines = replayed[0];
                } finally {
                    stopped = stopWorker(p2, log2);
                    Common.step("distributed: worker 2 stopped");
                }
            } finally {
                stopWorker(p, log);
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
            Common.obs("distributed", "restart_replayed_lines", replayedLines);
            Common.obs("distributed", "worker_stop", stopped);
            Common.check(policies.equals(Set.of("configs=compact", "offsets=compact", "status=compact")),
                "internal topic policies " + policies);
            return LINES + " ASCII lines via REST-created connectors byte-identical, connectors RUNNING; new worker "
                + "resumed from the config/offset topics and group offsets: +" + EXTRA_LINES
                + " appended lines copied in order after " + replayedLines
                + " replayed (at-least-once) lines; " + ms + " ms; " + policies + "; worker " + stopped;
        } finally {
            if (System.getProperty("compat.connect.keep") != null) {
                Files.copy(log, Path.of(System.getProperty("compat.connect.keep")),
                    java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            }
            dumpLog(log);
            if (Files.exists(log2)) {
                dumpLog(log2);
            }
            Common.deleteTree(dir);
        }
    }
}
