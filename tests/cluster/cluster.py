"""Multi-node test harness: a Sluice cluster (`SluiceCluster`) or a reference Apache Kafka KRaft
cluster (`KafkaCluster`, through scripts/kafka-reference), behind one interface.

    c = SluiceCluster(n=3)          # or KafkaCluster(n=3); both start in the constructor
    c.bootstrap                     # "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
    c.node(2).bootstrap             # "127.0.0.1:p2"; node ids are 1..n
    c.kill(2); c.restart(2)         # SIGKILL; start again on the same ports and data dir
    c.stop(2)                       # SIGTERM and wait
    c.pause(2); c.resume(2)         # SIGSTOP / SIGCONT
    c.quorum_leader()               # node id of the quorum leader (DescribeQuorum, else HTTP)
    c.describe_quorum(i)            # DescribeQuorum v0 sent to node i, decoded (dict)
    c.cluster_status(i)             # GET /v1/cluster on node i (Sluice only), decoded JSON
    c.logs()                        # {node id: full log text}; c.log_tail(i, 80)
    c.close()                       # SIGKILL everything, remove temp dirs

Sluice nodes are started exactly as

    sluice broker --node-id I --listen 127.0.0.1:P --advertised 127.0.0.1:P
        --controller-listen 127.0.0.1:C --controller-quorum 1@127.0.0.1:C1,2@...,3@...
        --data-dir DIR/nodeI --http 127.0.0.1:H [extra_args...]

and are ready when their log says `listening on`; the cluster is ready when a Metadata
request (confluent-kafka's AdminClient.list_topics) lists n brokers.

Environment: SLUICE_BIN (default target/release/sluice, relative to the repository root;
CARGO_TARGET_DIR honoured), SLUICE_KEEP_DATA=1 keeps the temp dirs, CLUSTER_START_TIMEOUT
(seconds, default 60 for Sluice, 120 for Kafka).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_REFERENCE = REPO_ROOT / "scripts" / "kafka-reference"
METADATA_TOPIC = "__cluster_metadata"


def sluice_bin() -> Path:
    env = os.environ.get("SLUICE_BIN")
    if env:
        p = Path(env)
        return p if p.is_absolute() else REPO_ROOT / p
    target = os.environ.get("CARGO_TARGET_DIR")
    base = Path(target) if target else REPO_ROOT / "target"
    if not base.is_absolute():
        base = REPO_ROOT / base
    return base / "release" / "sluice"


class ClusterError(Exception):
    """The cluster did not start, or did not reach a wanted state in time."""


def wait_until(cond, timeout: float, what: str, interval: float = 0.2):
    """Poll `cond()` until it returns something truthy; return that. Exceptions count as not
    yet (the last one is reported). Raises ClusterError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = cond()
            if v:
                return v
            last = v
        except Exception as e:  # noqa: BLE001 - any failure means "not yet"
            last = e
        if time.monotonic() >= deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def _free_ports(k: int, taken: set[int]) -> list[int]:
    """k distinct loopback ports that are free now and not in `taken` (which is updated).

    Picked below Linux's ephemeral range (32768-60999): a port the kernel hands out for
    outgoing connections can be taken by some client between our check and the node's bind,
    which happens during the seconds a JVM broker needs to start."""
    import random

    out: list[int] = []
    rng = random.Random()
    for _ in range(5000):
        if len(out) == k:
            break
        p = rng.randrange(20000, 32700)
        if p in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        taken.add(p)
        out.append(p)
    if len(out) < k:
        raise ClusterError(f"could not find {k} free loopback ports")
    return out


# -- DescribeQuorum (API 55) -------------------------------------------------------------------

DESCRIBE_QUORUM_KEY = 55
DESCRIBE_QUORUM_VERSION = 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        buf += chunk
    return bytes(buf)


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.d, self.p = data, 0

    def take(self, fmt: str):
        v = struct.unpack_from(fmt, self.d, self.p)
        self.p += struct.calcsize(fmt)
        return v[0]

    def uvarint(self) -> int:
        shift = n = 0
        while True:
            b = self.d[self.p]
            self.p += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return n
            shift += 7

    def compact_str(self) -> str | None:
        n = self.uvarint()
        if n == 0:
            return None
        s = self.d[self.p:self.p + n - 1].decode()
        self.p += n - 1
        return s

    def tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.p += self.uvarint()


def _encode_describe_quorum_v0(correlation_id: int) -> bytes:
    """DescribeQuorum v0 (flexible: request header v2), for __cluster_metadata partition 0."""
    client = b"sluice-cluster-harness"
    header = struct.pack(">hhih", DESCRIBE_QUORUM_KEY, 0, correlation_id, len(client)) + client + b"\x00"
    topic = METADATA_TOPIC.encode()
    body = (_uvarint(2) + _uvarint(len(topic) + 1) + topic  # topics: [ {name,
            + _uvarint(2) + struct.pack(">i", 0) + b"\x00"   # partitions: [ {index 0} ]
            + b"\x00" + b"\x00")                              # topic tags, request tags
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _decode_describe_quorum_v0(data: bytes) -> dict:
    r = _Reader(data)
    r.take(">i")  # correlation id
    r.tags()      # response header v1
    out: dict = {"error_code": r.take(">h"), "topics": []}
    for _ in range(r.uvarint() - 1):
        t = {"topic_name": r.compact_str(), "partitions": []}
        for _ in range(r.uvarint() - 1):
            p = {
                "partition_index": r.take(">i"),
                "error_code": r.take(">h"),
                "leader_id": r.take(">i"),
                "leader_epoch": r.take(">i"),
                "high_watermark": r.take(">q"),
            }
            for field in ("current_voters", "observers"):
                reps = []
                for _ in range(r.uvarint() - 1):
                    reps.append({"replica_id": r.take(">i"), "log_end_offset": r.take(">q")})
                    r.tags()
                p[field] = reps
            r.tags()
            t["partitions"].append(p)
        r.tags()
        out["topics"].append(t)
    r.tags()
    return out


def describe_quorum(host: str, port: int, timeout: float = 10.0) -> dict:
    """Send DescribeQuorum v0 for __cluster_metadata/0 to exactly this broker; return
    {"leader_id", "leader_epoch", "high_watermark", "voters": [ids], "observers": [ids],
    "raw": decoded response}. Raises on a transport error or a non-zero error code.

    Encoded with kafka-python's protocol classes when available, else by hand (same bytes)."""
    corr = int(time.monotonic() * 1000) & 0x7FFFFFFF
    try:
        from kafka.protocol.admin.cluster import DescribeQuorumRequest, DescribeQuorumResponse

        T = DescribeQuorumRequest.TopicData
        req = DescribeQuorumRequest(
            topics=[T(topic_name=METADATA_TOPIC, partitions=[T.PartitionData(partition_index=0)])]
        )
        req.with_header(correlation_id=corr, client_id="sluice-cluster-harness")
        frame = req.encode(version=DESCRIBE_QUORUM_VERSION, header=True, framed=True)

        def decode(data: bytes) -> dict:
            return DescribeQuorumResponse.decode(data, version=DESCRIBE_QUORUM_VERSION, header=True).to_dict()
    except ImportError:
        frame = _encode_describe_quorum_v0(corr)
        decode = _decode_describe_quorum_v0

    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(frame)
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        data = _recv_exact(s, size)
    (got_corr,) = struct.unpack_from(">i", data, 0)
    if got_corr != corr:
        raise ClusterError(f"DescribeQuorum: correlation id {got_corr}, sent {corr}")
    resp = decode(data)
    if resp.get("error_code"):
        raise ClusterError(f"DescribeQuorum from {host}:{port}: error code {resp['error_code']}")
    topics = resp.get("topics") or []
    if len(topics) != 1 or len(topics[0]["partitions"]) != 1:
        raise ClusterError(f"DescribeQuorum from {host}:{port}: unexpected shape {resp}")
    p = topics[0]["partitions"][0]
    if p.get("error_code"):
        raise ClusterError(f"DescribeQuorum from {host}:{port}: partition error code {p['error_code']}")
    return {
        "leader_id": p["leader_id"],
        "leader_epoch": p["leader_epoch"],
        "high_watermark": p["high_watermark"],
        "voters": sorted(v["replica_id"] for v in p["current_voters"]),
        "observers": sorted(v["replica_id"] for v in p["observers"]),
        "raw": resp,
    }


# -- /v1/cluster (Sluice) ------------------------------------------------------------------------

def http_get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
        return json.loads(r.read().decode())


def status_quorum_leader(status: dict) -> int | None:
    """The quorum leader named by a /v1/cluster (or `cluster status --output json`) document:
    `quorum.leader_id` (`quorum.leader` accepted too); None when there is none."""
    q = status.get("quorum") or {}
    leader = q.get("leader_id", q.get("leader"))
    if isinstance(leader, dict):
        leader = leader.get("id")
    return None if leader is None or leader < 0 else int(leader)


# -- the harness ---------------------------------------------------------------------------------

class Node:
    """One node of a cluster: id (1..n), ports, data dir, log file, process."""

    def __init__(self, node_id: int, port: int, controller_port: int, http_port: int | None,
                 data_dir: Path, log_path: Path):
        self.id = node_id
        self.host = "127.0.0.1"
        self.port = port
        self.controller_port = controller_port
        self.http_port = http_port
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None  # Sluice only
        self.paused = False
        self.log_start = 0  # byte offset of the current start's output in log_path

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def controller(self) -> str:
        return f"{self.host}:{self.controller_port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def current_log(self) -> str:
        """Output of the current (latest) start only."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def __repr__(self) -> str:
        return f"Node({self.id}, {self.bootstrap})"


class Cluster:
    """What SluiceCluster and KafkaCluster share. Subclasses implement _start_node, _pid,
    kill, stop, restart."""

    target = "?"
    START_TIMEOUT_S = 60.0

    def __init__(self, n: int = 3):
        self.n = n
        self.nodes: dict[int, Node] = {}
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{self.target}-cluster-"))
        self.start_timeout = float(os.environ.get("CLUSTER_START_TIMEOUT", self.START_TIMEOUT_S))
        self.started_at = time.monotonic()
        self.start_seconds: float | None = None

    # -- addresses ------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return ",".join(self.nodes[i].bootstrap for i in sorted(self.nodes))

    @property
    def live_bootstrap(self) -> str:
        """Addresses of the nodes that run and are not paused."""
        return ",".join(self.nodes[i].bootstrap for i in self.live_ids())

    def node(self, i: int) -> Node:
        return self.nodes[i]

    def ids(self) -> list[int]:
        return sorted(self.nodes)

    # -- processes ------------------------------------------------------------------------
    def _pid(self, i: int) -> int | None:
        raise NotImplementedError

    def alive(self, i: int) -> bool:
        pid = self._pid(i)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def live_ids(self) -> list[int]:
        return [i for i in self.ids() if self.alive(i) and not self.nodes[i].paused]

    def pause(self, i: int) -> None:
        pid = self._pid(i)
        assert pid is not None, f"node {i} is not running"
        os.kill(pid, signal.SIGSTOP)
        self.nodes[i].paused = True

    def resume(self, i: int) -> None:
        pid = self._pid(i)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
        self.nodes[i].paused = False

    def kill(self, i: int) -> None:
        raise NotImplementedError

    def stop(self, i: int) -> int | None:
        raise NotImplementedError

    def restart(self, i: int, wait_brokers: bool = True) -> None:
        """Stop node i if it runs (SIGTERM), start it again on the same ports and data dir;
        wait until it is ready and (by default) until Metadata lists every live broker."""
        raise NotImplementedError

    # -- readiness ------------------------------------------------------------------------
    def brokers(self, bootstrap: str | None = None) -> dict[int, str]:
        """{broker id: "host:port"} from a Metadata request."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": bootstrap or self.live_bootstrap})
        md = admin.list_topics(timeout=5)
        return {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}

    def wait_brokers(self, count: int | None = None, timeout: float | None = None,
                     bootstrap: str | None = None) -> dict[int, str]:
        """Wait until Metadata lists `count` brokers (default: every live node)."""
        want = len(self.live_ids()) if count is None else count
        return wait_until(lambda: (b := self.brokers(bootstrap)) and len(b) == want and b,
                          timeout or self.start_timeout, f"Metadata listing {want} brokers")

    # -- quorum ---------------------------------------------------------------------------
    def describe_quorum(self, i: int, timeout: float = 10.0) -> dict:
        """DescribeQuorum v0 sent to node i (see describe_quorum())."""
        nd = self.nodes[i]
        return describe_quorum(nd.host, nd.port, timeout)

    def cluster_status(self, i: int) -> dict | None:
        """GET /v1/cluster on node i; None where the target has no such endpoint (Kafka)."""
        return None

    def quorum_leader(self, timeout: float = 30.0, exclude: tuple[int, ...] = ()) -> int:
        """The quorum leader's node id, asked of the live nodes: DescribeQuorum first, then
        /v1/cluster. Waits (up to `timeout`) while no leader is known or the one named is in
        `exclude` (e.g. the node just killed)."""
        errors: list[str] = []

        def ask():
            errors.clear()
            for i in self.live_ids():
                try:
                    leader = self.describe_quorum(i, timeout=5)["leader_id"]
                except Exception as e:  # noqa: BLE001
                    errors.append(f"node {i} DescribeQuorum: {e!r}")
                    try:
                        st = self.cluster_status(i)
                    except Exception as e2:  # noqa: BLE001
                        errors.append(f"node {i} /v1/cluster: {e2!r}")
                        continue
                    leader = status_quorum_leader(st) if st else None
                if leader is not None and leader >= 0 and leader not in exclude:
                    return leader
            return None

        try:
            return wait_until(ask, timeout, "a quorum leader", interval=0.25)
        except ClusterError as e:
            raise ClusterError(f"{e}; errors: {errors}") from None

    # -- logs -----------------------------------------------------------------------------
    def logs(self) -> dict[int, str]:
        return {i: self.nodes[i].log() for i in self.ids()}

    def log_tail(self, i: int, lines: int = 80) -> str:
        return "\n".join(self.nodes[i].log().splitlines()[-lines:])

    def dump_logs(self, lines: int = 80) -> str:
        parts = []
        for i in self.ids():
            nd = self.nodes[i]
            state = "paused" if nd.paused else ("running" if self.alive(i) else "down")
            parts.append(f"===== node {i} ({nd.bootstrap}, {state}) log tail: {nd.log_path} =====\n"
                         f"{self.log_tail(i, lines)}")
        return "\n".join(parts)

    # -- teardown -------------------------------------------------------------------------
    def close(self) -> None:
        """SIGKILL every node (paused ones too) and remove the temp dirs."""
        for i in self.ids():
            pid = self._pid(i)
            if pid is not None:
                for sig in (signal.SIGKILL, signal.SIGCONT):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
        self._reap()
        if not os.environ.get("SLUICE_KEEP_DATA"):
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _reap(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SluiceCluster(Cluster):
    target = "sluice"
    START_TIMEOUT_S = 60.0

    def __init__(self, n: int = 3, extra_args=(), binary: str | Path | None = None,
                 broker_configs: dict | None = None, ports: dict | None = None,
                 node_args: dict | None = None, quorum_for: dict | None = None):
        """`broker_configs`: Kafka broker settings passed to every node as `--set k=v`.
        `ports`: {node id: (kafka port, controller port, http port)} instead of free ones.
        `node_args`: {node id: [extra args for that node only]}. `quorum_for`: {node id:
        the `--controller-quorum` value that node gets} (e.g. proxy addresses of its peers)."""
        super().__init__(n)
        self.binary = Path(binary) if binary else sluice_bin()
        self.extra_args = list(extra_args)
        for k, v in (broker_configs or {}).items():
            self.extra_args += ["--set", f"{k}={v}"]
        self.node_args = dict(node_args or {})
        taken: set[int] = set()
        for i in range(1, n + 1):
            port, cport, hport = ports[i] if ports else _free_ports(3, taken)
            self.nodes[i] = Node(i, port, cport, hport, self._tmp / f"node{i}",
                                 self._tmp / f"node{i}.log")
        self.quorum = ",".join(f"{i}@{nd.controller}" for i, nd in self.nodes.items())
        self.quorum_for = dict(quorum_for or {})
        self.broker_only: set[int] = set()
        try:
            if not self.binary.exists():
                raise ClusterError(f"Sluice binary not found at {self.binary}; build it "
                                   "(cargo build --release) or set SLUICE_BIN")
            for i in self.ids():
                self._start_node(i)
            for i in self.ids():
                self._wait_listening(i)
            self.wait_brokers(n)
        except BaseException as e:
            log = self.dump_logs()
            self.close()
            raise ClusterError(f"Sluice cluster of {n} did not start: {e}\n{log}") from None
        self.start_seconds = time.monotonic() - self.started_at

    def add_broker(self) -> int:
        """Starts node N+1 as a broker only (not a quorum voter) and waits until it is
        registered; returns its node id."""
        i = max(self.nodes) + 1
        taken = {p for nd in self.nodes.values() for p in (nd.port, nd.controller_port, nd.http_port)}
        port, cport, hport = _free_ports(3, taken)
        self.nodes[i] = Node(i, port, cport, hport, self._tmp / f"node{i}", self._tmp / f"node{i}.log")
        self.broker_only.add(i)
        self.n = len(self.nodes)
        self._start_node(i)
        self._wait_listening(i)
        self.wait_brokers(len(self.nodes))
        return i

    def command(self, i: int) -> list[str]:
        nd = self.nodes[i]
        controller = [] if i in self.broker_only else ["--controller-listen", nd.controller]
        return [
            str(self.binary), "broker",
            "--node-id", str(i),
            "--listen", nd.bootstrap,
            "--advertised", nd.bootstrap,
            *controller,
            "--controller-quorum", self.quorum_for.get(i, self.quorum),
            "--data-dir", str(nd.data_dir),
            "--http", f"{nd.host}:{nd.http_port}",
            *self.extra_args,
            *self.node_args.get(i, []),
        ]

    def _start_node(self, i: int) -> None:
        nd = self.nodes[i]
        nd.data_dir.mkdir(parents=True, exist_ok=True)
        nd.log_start = nd.log_path.stat().st_size if nd.log_path.exists() else 0
        with open(nd.log_path, "ab") as out:
            out.write(f"----- harness: starting node {i}: {' '.join(self.command(i))}\n".encode())
            out.flush()
            nd.proc = subprocess.Popen(
                self.command(i), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=dict(os.environ),
            )
        nd.paused = False

    def _wait_listening(self, i: int) -> None:
        nd = self.nodes[i]

        def ready():
            if "listening on" in nd.current_log():
                return True
            if nd.proc.poll() is not None:
                raise ClusterError(f"node {i} exited with {nd.proc.returncode}")
            return False

        deadline = time.monotonic() + self.start_timeout
        while not ready():
            if time.monotonic() > deadline:
                raise ClusterError(f"node {i}: no 'listening on' within {self.start_timeout:.0f}s")
            time.sleep(0.05)

    def _pid(self, i: int) -> int | None:
        p = self.nodes[i].proc
        return p.pid if p is not None and p.poll() is None else None

    def kill(self, i: int) -> None:
        nd = self.nodes[i]
        if nd.proc is not None and nd.proc.poll() is None:
            nd.proc.send_signal(signal.SIGKILL)
            nd.proc.wait(20)
        nd.paused = False

    def stop(self, i: int, timeout: float = 30.0) -> int | None:
        nd = self.nodes[i]
        if nd.proc is None:
            return None
        if nd.proc.poll() is None:
            if nd.paused:
                nd.proc.send_signal(signal.SIGCONT)
            nd.proc.send_signal(signal.SIGTERM)
            try:
                nd.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                nd.proc.kill()
                nd.proc.wait(10)
        nd.paused = False
        return nd.proc.returncode

    def restart(self, i: int, wait_brokers: bool = True) -> None:
        self.stop(i)
        self._start_node(i)
        try:
            self._wait_listening(i)
        except ClusterError as e:
            raise ClusterError(f"{e}\n{self.log_tail(i)}") from None
        if wait_brokers:
            self.wait_brokers()

    def cluster_status(self, i: int) -> dict | None:
        nd = self.nodes[i]
        return http_get_json(f"http://{nd.host}:{nd.http_port}/v1/cluster")

    def cli_cluster_status(self, bootstrap: str | None = None) -> dict:
        """`sluice --bootstrap-server H:P cluster status --output json`, decoded."""
        bs = bootstrap or self.live_bootstrap.split(",")[0]
        proc = subprocess.run([str(self.binary), "--bootstrap-server", bs, "cluster", "status",
                               "--output", "json"], capture_output=True, timeout=60)
        if proc.returncode != 0:
            raise ClusterError(f"cluster status exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
        return json.loads(proc.stdout)

    def _reap(self) -> None:
        for nd in self.nodes.values():
            if nd.proc is not None:
                try:
                    nd.proc.wait(20)
                except subprocess.TimeoutExpired:
                    pass


class KafkaCluster(Cluster):
    """A reference Apache Kafka KRaft cluster (every node broker+controller and a voter, RF=1
    defaults), run by `scripts/kafka-reference start-cluster`."""

    target = "kafka"
    START_TIMEOUT_S = 120.0

    def __init__(self, n: int = 3, broker_configs: dict | None = None,
                 node_configs: dict | None = None, ports: list[int] | None = None):
        """`broker_configs`: settings appended to every node's server.properties (KAFKA_REF_SET);
        `node_configs`: {node id: {settings for that node only}} (KAFKA_REF_SET_NODEi), e.g.
        per-node listeners; `ports`: the nodes' Kafka ports (controller on port+1)."""
        super().__init__(n)
        self.base = self._tmp
        env: dict[str, str] = {}
        if broker_configs:
            env["KAFKA_REF_SET"] = " ".join(f"{k}={v}" for k, v in broker_configs.items())
        for i, conf in (node_configs or {}).items():
            env[f"KAFKA_REF_SET_NODE{i}"] = " ".join(f"{k}={v}" for k, v in conf.items())
        for v in env.values():
            if "\n" in v:
                raise ValueError("broker settings must not contain newlines")
        try:
            self._script("start-cluster", str(n), str(self.base), *map(str, ports or ()),
                         timeout=self.start_timeout + 240, env=env)
            conf = self._conf()
            for i, port in enumerate(conf["PORTS"].split(), start=1):
                d = self.base / f"node{i}"
                self.nodes[i] = Node(i, int(port), int(port) + 1, None, d / "data",
                                     d / "logs" / "server.log")
            self.wait_brokers(n)
        except BaseException as e:
            log = self.dump_logs() if self.nodes else ""
            self.close()
            raise ClusterError(f"Kafka cluster of {n} did not start: {e}\n{log}") from None
        self.start_seconds = time.monotonic() - self.started_at

    def _conf(self) -> dict[str, str]:
        out = {}
        for line in (self.base / "cluster.conf").read_text().splitlines():
            k, _, v = line.partition("=")
            out[k] = v.strip('"')
        return out

    def _script(self, *args: str, timeout: float = 240, env: dict | None = None) -> str:
        proc = subprocess.run([str(KAFKA_REFERENCE), *args], capture_output=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        if proc.returncode != 0:
            raise ClusterError(f"kafka-reference {' '.join(args)} exited {proc.returncode}:\n"
                               f"{proc.stderr.decode(errors='replace')[-4000:]}")
        return proc.stdout.decode()

    def add_broker(self) -> int:
        """Adds node N+1 as a broker only (`kafka-reference add-broker`); returns its id."""
        out = self._script("add-broker", str(self.base), timeout=self.start_timeout + 240)
        i = int(out.split()[-1])
        port = int(self._conf()["PORTS"].split()[i - 1])
        d = self.base / f"node{i}"
        self.nodes[i] = Node(i, port, port + 1, None, d / "data", d / "logs" / "server.log")
        self.n = len(self.nodes)
        self.wait_brokers(len(self.nodes))
        return i

    def _pid(self, i: int) -> int | None:
        f = self.base / f"node{i}" / "kafka.pid"
        try:
            return int(f.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def kill(self, i: int) -> None:
        self._script("kill", str(self.base), str(i))
        self.nodes[i].paused = False

    def stop(self, i: int) -> int | None:
        if self.nodes[i].paused:
            self.resume(i)
        self._script("stop-node", str(self.base), str(i))
        return 0

    def restart(self, i: int, wait_brokers: bool = True) -> None:
        if self.nodes[i].paused:
            self.resume(i)
        self._script("restart", str(self.base), str(i), timeout=self.start_timeout + 60)
        if wait_brokers:
            self.wait_brokers()

    def _reap(self) -> None:
        for i in self.ids():
            pid = self._pid(i)
            if pid is None:
                continue
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            (self.base / f"node{i}" / "kafka.pid").unlink(missing_ok=True)


def make_cluster(n: int = 3, target: str | None = None, **kw) -> Cluster:
    """The cluster CLUSTER_TARGET names: `sluice` (default) or `kafka`."""
    target = (target or os.environ.get("CLUSTER_TARGET") or "sluice").lower()
    if target == "sluice":
        return SluiceCluster(n=n, **kw)
    if target == "kafka":
        return KafkaCluster(n=n, broker_configs=kw.get("broker_configs"))
    raise ValueError(f"CLUSTER_TARGET must be 'sluice' or 'kafka', not {target!r}")
