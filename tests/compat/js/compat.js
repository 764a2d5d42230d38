'use strict';
// Sluice compatibility scenarios for kafkajs (producer, group consumer, admin).
//   node compat.js BOOTSTRAP [SCENARIO...]
// Output protocol (shared by every program of tests/compat): "VERSION name ver",
// "PASS scenario detail", "FAIL scenario reason", "OBS scenario key=value". Exit 1 on failure.
const { Kafka, logLevel } = require('kafkajs');
const crypto = require('crypto');

const bootstrap = process.argv[2];
if (!bootstrap) {
  console.error('usage: node compat.js BOOTSTRAP [SCENARIO...]');
  process.exit(2);
}
const RUN = crypto.randomBytes(4).toString('hex');
const topicName = (base) => `kafkajs-${base}-${RUN}`;
const kafka = new Kafka({
  clientId: 'sluice-compat-kafkajs',
  brokers: [bootstrap],
  logLevel: logLevel.NOTHING,
  retry: { retries: 8, initialRetryTime: 100 },
});
const obs = (s, k, v) => console.log(`OBS ${s} ${k}=${String(v).replace(/\n/g, ' ')}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(ok, what) {
  if (!ok) throw new Error(what);
}
async function waitFor(ms, cond) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(100);
  }
  return cond();
}

async function withAdmin(fn) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

async function produce(topic, from, n, keys) {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    const messages = [];
    for (let i = 0; i < n; i++) messages.push({ key: `k${i % keys}`, value: `v${from + i}` });
    await producer.send({ topic, acks: -1, messages });
  } finally {
    await producer.disconnect();
  }
}

const seq = (v) => parseInt(v.slice(1), 10);

function checkProduced(recs, from, n) {
  const seen = new Set();
  const keyPart = new Map();
  const lastOff = new Map();
  const lastSeq = new Map();
  for (const r of recs) {
    check(!seen.has(r.value), `duplicate ${r.value}`);
    seen.add(r.value);
    const s = seq(r.value);
    check(s >= from && s < from + n, `unexpected record ${r.value}`);
    check(!keyPart.has(r.key) || keyPart.get(r.key) === r.partition, `key ${r.key} in two partitions`);
    keyPart.set(r.key, r.partition);
    check(!lastOff.has(r.partition) || r.offset > lastOff.get(r.partition), `offsets not increasing in ${r.partition}`);
    lastOff.set(r.partition, r.offset);
    check(!lastSeq.has(r.key) || s > lastSeq.get(r.key), `key ${r.key} out of order`);
    lastSeq.set(r.key, s);
  }
  check(seen.size === n, `consumed ${seen.size} distinct of ${n}`);
}

// A group member recording what it consumed; offsets are committed by kafkajs after each batch.
async function member(group, topic) {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 1000, maxWaitTimeInMs: 500 });
  const m = { consumer, got: [], assigned: 0 };
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    m.assigned = (e.payload.memberAssignment[topic] || []).length;
  });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  await consumer.run({
    autoCommit: true,
    autoCommitInterval: 200,
    eachMessage: async ({ partition, message }) => {
      m.got.push({ key: message.key.toString(), value: message.value.toString(), partition, offset: Number(message.offset) });
    },
  });
  return m;
}

const scenarios = {
  async produce_consume() {
    const topic = topicName('pc');
    await withAdmin((a) => a.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], waitForLeaders: true }));
    await produce(topic, 0, 300, 10);
    // kafkajs consumes only in groups: a fresh group reads from the beginning.
    const m = await member(`kafkajs-pc-${RUN}`, topic);
    try {
      check(await waitFor(30000, () => m.got.length >= 300), `consumed ${m.got.length} of 300`);
    } finally {
      await m.consumer.disconnect();
    }
    checkProduced(m.got, 0, 300);
    obs('produce_consume', 'records', m.got.length);
    return '300 records, order ok';
  },

  async admin() {
    const topic = topicName('admin');
    return withAdmin(async (a) => {
      check(await a.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true }), 'createTopics returned false');
      check((await a.listTopics()).includes(topic), 'listTopics lacks topic');
      const md = await a.fetchTopicMetadata({ topics: [topic] });
      check(md.topics.length === 1 && md.topics[0].partitions.length === 1, 'fetchTopicMetadata');
      const cfg = await a.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: topic }] });
      const keys = cfg.resources[0].configEntries.map((e) => e.configName).sort();
      check(keys.includes('retention.ms'), 'describeConfigs lacks retention.ms');
      obs('admin', 'topic_config_keys', keys.join(','));
      await a.alterConfigs({ validateOnly: false, resources: [{ type: 2, name: topic, configEntries: [{ name: 'retention.ms', value: '3600000' }] }] });
      let value;
      await waitFor(5000, async () => {
        const c = await a.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: topic, configNames: ['retention.ms'] }] });
        value = c.resources[0].configEntries[0].configValue;
        return value === '3600000';
      });
      check(value === '3600000', `retention.ms after alter = ${value}`);
      await a.createPartitions({ topicPartitions: [{ topic, count: 3 }] });
      // New partitions get their leader asynchronously on Kafka: retry for a few seconds.
      let offs = [];
      let lastErr = '';
      await waitFor(10000, async () => {
        try {
          offs = await a.fetchTopicOffsets(topic);
        } catch (e) {
          lastErr = e.type || e.message;
          return false;
        }
        return offs.length === 3;
      });
      check(offs.length === 3, `fetchTopicOffsets partitions ${offs.length} ${lastErr}`);
      const cl = await a.describeCluster();
      check(cl.brokers.length >= 1 && cl.clusterId, 'describeCluster');
      await a.deleteTopics({ topics: [topic] });
      return `create/list/metadata/configs(${keys.length} keys)/alter/partitions/offsets/cluster/delete ok`;
    });
  },

  async errors() {
    const topic = topicName('err');
    return withAdmin(async (a) => {
      await a.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
      const seen = {};
      // kafkajs answers `false` (not an error) when the topic already exists.
      seen.create_existing = String(await a.createTopics({ topics: [{ topic, numPartitions: 1 }] }));
      const errType = async (p) => {
        try {
          await p;
          return 'none';
        } catch (e) {
          const inner = e.errors && e.errors[0] ? e.errors[0] : e;
          return inner.type || inner.name;
        }
      };
      seen.create_invalid_name = await errType(a.createTopics({ topics: [{ topic: 'bad/name', numPartitions: 1 }] }));
      seen.partitions_decrease = await errType(a.createPartitions({ topicPartitions: [{ topic, count: 1 }] }));
      for (const k of Object.keys(seen).sort()) obs('errors', k, seen[k]);
      check(seen.create_existing === 'false', `create_existing: ${seen.create_existing}`);
      check(seen.create_invalid_name !== 'none', 'invalid name accepted');
      check(seen.partitions_decrease === 'INVALID_PARTITIONS', `partitions_decrease: ${seen.partitions_decrease}`);
      await a.deleteTopics({ topics: [topic] });
      return `${Object.keys(seen).length} error cases as expected`;
    });
  },

  async group() {
    const topic = topicName('grp');
    const group = `kafkajs-group-${RUN}`;
    await withAdmin((a) => a.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true }));
    const generation = async (from, beforeJoin, afterJoin) => {
      if (beforeJoin > 0) await produce(topic, from, beforeJoin, 16);
      const ms = [await member(group, topic), await member(group, topic)];
      try {
        check(await waitFor(30000, () => ms[0].assigned === 2 && ms[1].assigned === 2),
          `group never balanced 2/2 (${ms[0].assigned}/${ms[1].assigned})`);
        await produce(topic, from + beforeJoin, afterJoin, 16);
        const n = beforeJoin + afterJoin;
        const distinct = () => new Set(ms.flatMap((m) => m.got.map((r) => r.value))).size;
        check(await waitFor(30000, () => distinct() >= n), `consumed ${distinct()} distinct of ${n}`);
        await sleep(700); // let the auto-commit interval pass
      } finally {
        for (const m of ms) await m.consumer.disconnect();
      }
      const all = ms.flatMap((m) => m.got);
      for (const r of all) check(seq(r.value) >= from, `re-consumed committed record ${r.value}`);
      if (beforeJoin === 0) checkProduced(all, from, afterJoin);
      return all.length - (beforeJoin + afterJoin);
    };
    await generation(0, 0, 200);
    const offs = await withAdmin((a) => a.fetchOffsets({ groupId: group, topics: [topic] }));
    const sum = offs[0].partitions.reduce((s, p) => s + Number(p.offset), 0);
    check(sum === 200, `committed offsets sum ${sum}`);
    const dupes = await generation(200, 50, 50);
    const groups = await withAdmin((a) => a.listGroups());
    check(groups.groups.some((g) => g.groupId === group), 'listGroups lacks group');
    const d = await withAdmin((a) => a.describeGroups([group]));
    obs('group', 'state_after_close', d.groups[0].state);
    return `2 members x 2 partitions, 200 exactly once + committed; restart resumed with the 100 new (${dupes} redelivered)`;
  },
};

(async () => {
  console.log(`VERSION kafkajs ${require('kafkajs/package.json').version}`);
  const selected = process.argv.length > 3 ? process.argv.slice(3) : Object.keys(scenarios);
  let failed = false;
  for (const name of selected) {
    const t0 = Date.now();
    const fn = scenarios[name];
    if (!fn) {
      console.log(`FAIL ${name} unknown scenario`);
      failed = true;
      continue;
    }
    try {
      const timeout = new Promise((_, rej) => setTimeout(() => rej(new Error('scenario timed out after 90s')), 90000).unref());
      const detail = await Promise.race([fn(), timeout]);
      console.log(`PASS ${name} ${detail} (${Date.now() - t0} ms)`);
    } catch (e) {
      failed = true;
      console.log(`FAIL ${name} ${(e && (e.type || e.name)) || 'Error'}: ${String(e && e.message).replace(/\n/g, ' ')}`);
    }
  }
  process.exit(failed ? 1 : 0);
})();
