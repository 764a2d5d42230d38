"""Topic configs through confluent-kafka's and kafka-python's admin clients: DescribeConfigs
(values, sources, synonyms), IncrementalAlterConfigs (SET/DELETE/APPEND/SUBTRACT, validate
only), AlterConfigs (replaces the whole set), invalid and unknown configs refused with
INVALID_CONFIG and nothing applied, static broker configs, and overrides surviving restarts."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   ConfigSource)

from helpers import create_topic

TOPIC_SRC = ConfigSource.DYNAMIC_TOPIC_CONFIG.value
DEFAULT_SRC = ConfigSource.DEFAULT_CONFIG.value
STATIC_SRC = ConfigSource.STATIC_BROKER_CONFIG.value
WEEK_MS = "604800000"
SET, DELETE, APPEND, SUBTRACT = (AlterConfigOpType.SET, AlterConfigOpType.DELETE,
                                 AlterConfigOpType.APPEND, AlterConfigOpType.SUBTRACT)


# -- confluent-kafka -------------------------------------------------------------------------

def describe(admin: AdminClient, topic: str) -> dict[str, ConfigEntry]:
    res = ConfigResource("topic", topic)
    return admin.describe_configs([res], request_timeout=15)[res].result(20)


def overrides(admin: AdminClient, topic: str) -> dict[str, str]:
    """The topic's own configs (source DYNAMIC_TOPIC_CONFIG), name -> value."""
    return {k: e.value for k, e in describe(admin, topic).items() if e.source == TOPIC_SRC}


def incremental(admin: AdminClient, topic: str, ops: list[tuple[AlterConfigOpType, str, str | None]],
                validate_only: bool = False) -> None:
    res = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=op) for op, name, value in ops])
    admin.incremental_alter_configs([res], request_timeout=15, validate_only=validate_only)[res].result(20)


def error_of(fn) -> KafkaError:
    with pytest.raises(KafkaException) as ei:
        fn()
    return ei.value.args[0]


def assert_source(entry: ConfigEntry, value: str, source: int, what: str) -> None:
    assert (entry.value, entry.source) == (value, source), \
        f"{what}: {entry.name}={entry.value!r} source {ConfigSource(entry.source).name}; " \
        f"want {value!r} from {ConfigSource(source).name}"


def test_configs_confluent(broker, topic):
    b = broker.bootstrap
    create_topic(b, topic, 1, {"retention.ms": "3600000"})
    admin = AdminClient({"bootstrap.servers": b})

    cfg = describe(admin, topic)
    assert_source(cfg["retention.ms"], "3600000", TOPIC_SRC, "created with")
    assert not cfg["retention.ms"].is_default
    syn = cfg["retention.ms"].synonyms
    assert "log.retention.hours" in syn and syn["log.retention.hours"].value == "168", \
        f"retention.ms synonyms: {syn}"
    assert syn["log.retention.hours"].source == DEFAULT_SRC
    assert_source(cfg["cleanup.policy"], "delete", DEFAULT_SRC, "untouched")
    assert cfg["cleanup.policy"].is_default
    assert_source(cfg["segment.bytes"], "1073741824", DEFAULT_SRC, "untouched")
    assert overrides(admin, topic) == {"retention.ms": "3600000"}

    # SET and DELETE in one request.
    incremental(admin, topic, [(SET, "cleanup.policy", "compact"), (SET, "segment.ms", "600000"),
                               (DELETE, "retention.ms", None)])
    cfg = describe(admin, topic)
    assert_source(cfg["retention.ms"], WEEK_MS, DEFAULT_SRC, "after DELETE")
    assert overrides(admin, topic) == {"cleanup.policy": "compact", "segment.ms": "600000"}

    # APPEND / SUBTRACT on a list config.
    incremental(admin, topic, [(APPEND, "cleanup.policy", "delete")])
    assert overrides(admin, topic)["cleanup.policy"] == "compact,delete"
    incremental(admin, topic, [(SUBTRACT, "cleanup.policy", "compact")])
    assert overrides(admin, topic)["cleanup.policy"] == "delete"

    # validate_only changes nothing.
    incremental(admin, topic, [(SET, "max.message.bytes", "12345")], validate_only=True)
    assert "max.message.bytes" not in overrides(admin, topic)

    # Invalid values and unknown names: INVALID_CONFIG, and nothing of the request applied.
    before = overrides(admin, topic)
    for ops in ([(SET, "retention.ms", "abc")],
                [(SET, "segment.bytes", "1000")],  # below the 1 MiB minimum
                [(SET, "cleanup.policy", "bogus")],
                [(SET, "no.such.config", "1")],
                [(SET, "retention.ms", "1000"), (SET, "min.cleanable.dirty.ratio", "2.5")]):
        err = error_of(lambda: incremental(admin, topic, ops))
        assert err.code() == KafkaError.INVALID_CONFIG, f"incremental_alter_configs {ops}: {err}"
        assert overrides(admin, topic) == before, f"refused request {ops} changed the configs"

    # Legacy AlterConfigs replaces the whole set: unnamed overrides go back to defaults.
    res = ConfigResource("topic", topic, set_config={"max.message.bytes": "2000000"})
    admin.alter_configs([res], request_timeout=15)[res].result(20)
    cfg = describe(admin, topic)
    assert overrides(admin, topic) == {"max.message.bytes": "2000000"}
    assert_source(cfg["cleanup.policy"], "delete", DEFAULT_SRC, "after AlterConfigs without it")
    assert_source(cfg["segment.ms"], WEEK_MS, DEFAULT_SRC, "after AlterConfigs without it")
    res = ConfigResource("topic", topic, set_config={"compression.type": "brotli"})
    err = error_of(lambda: admin.alter_configs([res], request_timeout=15)[res].result(20))
    assert err.code() == KafkaError.INVALID_CONFIG, f"alter_configs compression.type=brotli: {err}"
    assert overrides(admin, topic) == {"max.message.bytes": "2000000"}


def test_config_sources_and_lifecycle_confluent(broker, topic):
    """Broker-level synonyms show their own source; unknown topics are an error; a topic
    deleted and created again under the same name starts from the defaults."""
    b = broker.bootstrap
    admin = AdminClient({"bootstrap.servers": b})
    create_topic(b, topic, 1, {"retention.ms": "3600000", "cleanup.policy": "compact"})
    cfg = describe(admin, topic)
    # --set log.cleaner.min.compaction.lag.ms=0 (fixture): a static broker config, not a default.
    lag = cfg["min.compaction.lag.ms"]
    assert_source(lag, "0", STATIC_SRC, "broker --set synonym")
    # confluent-kafka keys synonyms by name (the STATIC and DEFAULT entries of one broker
    # name collapse), so read the full synonym list with kafka-python.
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KCR
    from kafka.admin import ConfigResourceType

    kadmin = KafkaAdminClient(bootstrap_servers=b)
    try:
        r = kadmin.describe_configs([KCR(ConfigResourceType.TOPIC, topic, {"min.compaction.lag.ms": None})],
                                    include_synonyms=True, config_filter="all")
    finally:
        kadmin.close()
    syn = r["topic"][topic]["min.compaction.lag.ms"]["synonyms"]
    want = [{"name": "log.cleaner.min.compaction.lag.ms", "value": "0", "source": "STATIC_BROKER_CONFIG"},
            {"name": "log.cleaner.min.compaction.lag.ms", "value": "0", "source": "DEFAULT_CONFIG"}]
    assert syn == want, f"min.compaction.lag.ms synonyms (broker --set, then default): {syn}"

    missing = ConfigResource("topic", topic + "-missing")
    err = error_of(lambda: admin.describe_configs([missing], request_timeout=15)[missing].result(20))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, f"describe_configs of a missing topic: {err}"
    inc = ConfigResource("topic", topic + "-missing", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=SET)])
    err = error_of(lambda: admin.incremental_alter_configs([inc], request_timeout=15)[inc].result(20))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, f"incremental_alter_configs of a missing topic: {err}"

    admin.delete_topics([topic], operation_timeout=15)[topic].result(20)
    import time

    from helpers import topic_exists
    deadline = time.monotonic() + 15
    while topic_exists(b, topic) and time.monotonic() < deadline:
        time.sleep(0.2)
    create_topic(b, topic, 1)
    assert overrides(admin, topic) == {}, "a re-created topic inherited its predecessor's configs"
    assert_source(describe(admin, topic)["cleanup.policy"], "delete", DEFAULT_SRC, "re-created topic")


def test_broker_configs_are_static_confluent(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    res = ConfigResource("broker", "1")
    cfg = admin.describe_configs([res], request_timeout=15)[res].result(20)
    # The fixture starts the broker with --set log.retention.check.interval.ms=200.
    assert_source(cfg["log.retention.check.interval.ms"], "200", STATIC_SRC, "broker --set")
    assert_source(cfg["log.retention.hours"], "168", DEFAULT_SRC, "broker default")

    inc = ConfigResource("broker", "1", incremental_configs=[
        ConfigEntry("log.retention.hours", "1", incremental_operation=SET)])
    err = error_of(lambda: admin.incremental_alter_configs([inc], request_timeout=15)[inc].result(20))
    assert err.code() == KafkaError.INVALID_REQUEST, f"altering a static broker config: {err}"
    leg = ConfigResource("broker", "1", set_config={"log.retention.hours": "1"})
    err = error_of(lambda: admin.alter_configs([leg], request_timeout=15)[leg].result(20))
    assert err.code() == KafkaError.INVALID_REQUEST, f"altering a static broker config (legacy): {err}"
    cfg = admin.describe_configs([res], request_timeout=15)[res].result(20)
    assert cfg["log.retention.hours"].value == "168"


# -- kafka-python ----------------------------------------------------------------------------

def test_configs_kafka_python(broker, topic):
    from kafka import KafkaAdminClient
    from kafka.admin import AlterConfigOp, ConfigResourceType
    from kafka.admin import ConfigResource as KCR

    b = broker.bootstrap
    create_topic(b, topic, 1, {"retention.ms": "3600000", "max.message.bytes": "500000"})
    admin = KafkaAdminClient(bootstrap_servers=b)

    def modified() -> dict[str, tuple[str, str]]:
        """kafka-python's default filter: configs whose source is not a default/static one."""
        r = admin.describe_configs([KCR(ConfigResourceType.TOPIC, topic)])
        return {k: (v["value"], v["config_source"]) for k, v in r["topic"][topic].items()}

    def alter(configs: dict, **kw) -> str:
        return admin.alter_configs([KCR(ConfigResourceType.TOPIC, topic, configs)], **kw)["topic"][topic]

    try:
        assert modified() == {"retention.ms": ("3600000", "DYNAMIC_TOPIC_CONFIG"),
                              "max.message.bytes": ("500000", "DYNAMIC_TOPIC_CONFIG")}
        full = admin.describe_configs([KCR(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None,
                                                                             "retention.ms": None})],
                                      include_synonyms=True, config_filter="all")["topic"][topic]
        assert set(full) == {"cleanup.policy", "retention.ms"}, f"asked for two keys, got {sorted(full)}"
        assert (full["cleanup.policy"]["value"], full["cleanup.policy"]["config_source"]) == ("delete", "DEFAULT_CONFIG")
        assert {"name": "log.retention.hours", "value": "168", "source": "DEFAULT_CONFIG"} in full["retention.ms"]["synonyms"]

        # AlterConfigs (kafka-python re-sends the other overrides itself).
        assert alter({"segment.ms": "600000"}, incremental=False) == "OK"
        assert modified() == {"retention.ms": ("3600000", "DYNAMIC_TOPIC_CONFIG"),
                              "max.message.bytes": ("500000", "DYNAMIC_TOPIC_CONFIG"),
                              "segment.ms": ("600000", "DYNAMIC_TOPIC_CONFIG")}

        # IncrementalAlterConfigs: SET, DELETE, APPEND.
        assert alter({"retention.ms": (AlterConfigOp.DELETE, None), "cleanup.policy": "compact",
                      "max.message.bytes": "600000"}, incremental=True) == "OK"
        assert alter({"cleanup.policy": (AlterConfigOp.APPEND, "delete")}, incremental=True) == "OK"
        assert modified() == {"cleanup.policy": ("compact,delete", "DYNAMIC_TOPIC_CONFIG"),
                              "max.message.bytes": ("600000", "DYNAMIC_TOPIC_CONFIG"),
                              "segment.ms": ("600000", "DYNAMIC_TOPIC_CONFIG")}

        before = modified()
        for incr in (False, True):
            for bad in ({"retention.ms": "abc"}, {"min.insync.replicas": "0"}, {"no.such.config": "1"}):
                r = alter(bad, incremental=incr, raise_on_unknown=False)
                assert r.startswith("[Error 40] InvalidConfigurationError"), \
                    f"alter_configs(incremental={incr}) {bad}: expected INVALID_CONFIG (40), got {r!r}"
                assert modified() == before, f"refused {bad} changed the configs"
    finally:
        admin.close()


# -- persistence -----------------------------------------------------------------------------

def test_config_overrides_survive_restart(fresh_broker, topic):
    b = fresh_broker.bootstrap
    create_topic(b, topic, 1, {"retention.ms": "3600000", "cleanup.policy": "compact"})
    admin = AdminClient({"bootstrap.servers": b})
    incremental(admin, topic, [(SET, "segment.ms", "600000"), (DELETE, "cleanup.policy", None),
                               (SET, "max.message.bytes", "2000000")])
    want = {"retention.ms": "3600000", "segment.ms": "600000", "max.message.bytes": "2000000"}
    assert overrides(admin, topic) == want
    del admin

    for how in ("restart", "kill"):
        if how == "restart":
            fresh_broker.restart()
        else:
            fresh_broker.kill()
            fresh_broker.start()
        admin = AdminClient({"bootstrap.servers": b})
        cfg = describe(admin, topic)
        got = {k: e.value for k, e in cfg.items() if e.source == TOPIC_SRC}
        assert got == want, f"topic overrides after {how}: {got}, want {want}"
        assert_source(cfg["cleanup.policy"], "delete", DEFAULT_SRC, f"deleted override after {how}")
        del admin
