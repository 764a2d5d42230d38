package org.apache.kafka.common.utils;

import java.io.InputStream;
import java.util.Properties;

/**
 * Compatibility shim for the FileStream connectors, not a Sluice test.
 *
 * <p>connect-file is not served for 4.4.0 (Maven Central has 4.3.1 as its newest), so the Connect
 * scenarios run connect-file 4.3.1 on the 4.4.0 runtime and clients. Its connectors' version()
 * calls {@code org.apache.kafka.common.utils.AppInfoParser.getVersion()}, and kafka-clients 4.4
 * moved that class to {@code org.apache.kafka.common.utils.internals}: without this class every
 * connector validation fails with NoClassDefFoundError (seen: "worker exited 3", REST 500s).
 * This stands in for the two static methods old plugins call, reading the same
 * kafka/kafka-version.properties that kafka-clients' own AppInfoParser reads (so it works with
 * any kafka-clients version: target/classes comes first on the classpath).
 */
public final class AppInfoParser {
    private static final Properties PROPS = new Properties();

    static {
        try (InputStream in = AppInfoParser.class.getResourceAsStream("/kafka/kafka-version.properties")) {
            if (in != null) {
                PROPS.load(in);
            }
        } catch (Exception e) {
            // unknown, as kafka-clients' own parser answers
        }
    }

    private AppInfoParser() {}

    public static String getVersion() {
        return PROPS.getProperty("version", "unknown").trim();
    }

    public static String getCommitId() {
        return PROPS.getProperty("commitId", "unknown").trim();
    }
}
