// Failover driver for tests/cluster/test_failover_clients.py: the Java client (kafka-clients)
// producing (acks=all, idempotent) and consuming (group, committing) one topic while the test
// kills and restarts a partition leader. Prints one JSON object per line on stdout:
//   {"ack": VALUE, "p": P, "o": OFFSET}   a record the producer got acknowledged
//   {"rec": VALUE, "p": P, "o": OFFSET}   a record the consumer received
//   {"err": "...", "side": "producer"|"consumer"}   an error the client reported (and survived)
//   {"produced": N} after "stop" on stdin and the producer's flush; {"done": N, "missing": M}
// The consumer keeps going after "stop" until it has seen every acknowledged value (or 90 s),
// then commits synchronously and exits.
//
// Usage: java -cp CP Failover BOOTSTRAP TOPIC GROUP PARTITIONS
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class Failover {
    static synchronized void out(String s) {
        System.out.println(s);
        System.out.flush();
    }

    static String q(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", " ") + "\"";
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1], group = args[2];
        int partitions = Integer.parseInt(args[3]);
        AtomicBoolean stop = new AtomicBoolean(false);
        Set<String> acked = ConcurrentHashMap.newKeySet();
        AtomicLong producerDoneAt = new AtomicLong(0);

        Thread producer = new Thread(() -> {
            Properties p = new Properties();
            p.put("bootstrap.servers", bootstrap);
            p.put("acks", "all");
            p.put("enable.idempotence", "true");
            p.put("linger.ms", "5");
            p.put("delivery.timeout.ms", "120000");
            p.put("key.serializer", StringSerializer.class.getName());
            p.put("value.serializer", StringSerializer.class.getName());
            try (KafkaProducer<String, String> prod = new KafkaProducer<>(p)) {
                long i = 0;
                while (!stop.get()) {
                    String v = "java-" + i;
                    int part = (int) (i % partitions);
                    i++;
                    prod.send(new ProducerRecord<>(topic, part, null, v), (md, e) -> {
                        if (e != null) {
                            out("{\"err\": " + q(e.toString()) + ", \"side\": \"producer\"}");
                        } else {
                            acked.add(v);
                            out("{\"ack\": " + q(v) + ", \"p\": " + md.partition() + ", \"o\": " + md.offset() + "}");
                        }
                    });
                    Thread.sleep(4);
                }
                prod.flush();
                out("{\"produced\": " + i + "}");
            } catch (Exception e) {
                out("{\"err\": " + q("producer died: " + e) + ", \"side\": \"producer\"}");
            }
            producerDoneAt.set(System.nanoTime());
        });

        Thread consumer = new Thread(() -> {
            Properties c = new Properties();
            c.put("bootstrap.servers", bootstrap);
            c.put("group.id", group);
            c.put("auto.offset.reset", "earliest");
            c.put("enable.auto.commit", "false");
            c.put("key.deserializer", StringDeserializer.class.getName());
            c.put("value.deserializer", StringDeserializer.class.getName());
            Set<String> seen = ConcurrentHashMap.newKeySet();
            try (KafkaConsumer<String, String> cons = new KafkaConsumer<>(c)) {
                cons.subscribe(List.of(topic));
                while (true) {
                    long doneAt = producerDoneAt.get();
                    if (doneAt != 0) {
                        boolean all = seen.containsAll(acked);
                        if (all || System.nanoTime() - doneAt > 90_000_000_000L) {
                            long missing = acked.stream().filter(v -> !seen.contains(v)).count();
                            cons.commitSync(Duration.ofSeconds(30));
                            out("{\"done\": " + seen.size() + ", \"missing\": " + missing + "}");
                            return;
                        }
                    }
                    try {
                        ConsumerRecords<String, String> recs = cons.poll(Duration.ofMillis(200));
                        for (ConsumerRecord<String, String> r : recs) {
                            seen.add(r.value());
                            out("{\"rec\": " + q(r.value()) + ", \"p\": " + r.partition() + ", \"o\": " + r.offset() + "}");
                        }
                        if (!recs.isEmpty()) {
                            cons.commitAsync((offsets, e) -> {
                                if (e != null) out("{\"err\": " + q("commit: " + e + " cause: " + e.getCause()) + ", \"side\": \"consumer\"}");
                            });
                        }
                    } catch (Exception e) {
                        out("{\"err\": " + q(e.toString()) + ", \"side\": \"consumer\"}");
                        Thread.sleep(200);
                    }
                }
            } catch (Exception e) {
                out("{\"err\": " + q("consumer died: " + e) + ", \"side\": \"consumer\"}");
            }
        });

        producer.start();
        consumer.start();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null && !line.trim().equals("stop")) {
        }
        stop.set(true);
        producer.join();
        consumer.join();
        System.exit(0);
    }
}
