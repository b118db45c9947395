"""The Kafka sink through the real tansu broker on loopback, with each client: labelled streams
consumed back exactly once with label headers, and an outage in the middle of a replay."""

from __future__ import annotations

import gc
import importlib.util
import io
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from kafka import KafkaConsumer, TopicPartition
from sink_errors import assert_refused
from streamsynth.connectors import open_sink, read_back
from streamsynth.connectors.metrics import ReplayMetrics
from streamsynth.connectors.pacing import Pacing
from streamsynth.connectors.replay import replay

from streamsynth.cli import main
from streamsynth.contract import rebatch
from streamsynth.errors import StreamsynthError

HAS_CONFLUENT = importlib.util.find_spec("confluent_kafka") is not None
CLIENTS = [
    "kafka-python",
    pytest.param("confluent", marks=pytest.mark.skipif(
        not HAS_CONFLUENT, reason="confluent-kafka is not installed (the `fast` extra)")),
]


def topic_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def consume_all(address: str, topic: str) -> list:
    """Every message of a topic with assigned partitions (no consumer group needed); reads
    until the topic stays quiet for a second, as tansu's end offsets can lag the last record."""
    consumer = KafkaConsumer(bootstrap_servers=address, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        messages = []
        quiet = 0
        while quiet < 2:
            records = consumer.poll(timeout_ms=500)
            quiet = 0 if records else quiet + 1
            for batch in records.values():
                messages.extend(batch)
        return messages
    finally:
        consumer.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_labelled_stream_is_consumed_back_once_with_label_headers(broker, client, make_events):
    frame = make_events(20_000, fraud=0.1)
    topic = topic_name()
    metrics = ReplayMetrics()
    sink = open_sink(f"kafka://{broker.address}/{topic}?client={client}&compression=gzip",
                     time="ts", entity="card_id", metrics=metrics)
    result = replay(rebatch(iter([frame]), 5_000), sink, time_column="ts")
    assert result.sent == 20_000

    messages = consume_all(broker.address, topic)
    values = [json.loads(m.value) for m in messages]
    assert sorted(v["event_id"] for v in values) == sorted(frame["event_id"].to_list())
    expected = {row["event_id"]: row for row in frame.iter_rows(named=True)}
    for message, value in zip(messages, values, strict=True):
        row = expected[value["event_id"]]
        headers = dict(message.headers)
        assert headers["label"].decode() == row["label"] == value["label"]
        assert headers["is_anomaly"] == (b"true" if row["is_anomaly"] else b"false")
        assert headers.get("scenario_id", b"").decode() == (row["scenario_id"] or "")
        assert message.key.decode() == row["card_id"]
    assert metrics.sent("kafka") == dict(frame["label"].value_counts().iter_rows())


def test_label_headers_follow_each_event_with_missing_values(broker):
    """Nulls in the label columns get the contract's defaults, and every event its own triple."""
    frame = pl.DataFrame({
        "event_id": [f"ev-{i}" for i in range(8)],
        "ts": pl.datetime_range(pl.datetime(2024, 5, 1), pl.datetime(2024, 5, 1, 0, 0, 7), "1s",
                                eager=True, time_zone="UTC"),
        "label": [None, "fraud.ato", "normal", "fraud.ato", None, "outage", "fraud.ato", "normal"],
        "is_anomaly": [None, True, False, True, False, True, None, False],
        "scenario_id": [None, "sc-2", None, "sc-1", None, "sc-3", "sc-2", None],
    })
    topic = topic_name()
    sink = open_sink(f"kafka://{broker.address}/{topic}", time="ts")
    assert replay(iter([frame]), sink, time_column="ts").sent == 8
    got = {json.loads(m.value)["event_id"]: dict(m.headers) for m in consume_all(broker.address, topic)}
    for row in frame.iter_rows(named=True):
        expected = {"label": (row["label"] or "normal").encode(),
                    "is_anomaly": b"true" if row["is_anomaly"] else b"false"}
        if row["scenario_id"] is not None:
            expected["scenario_id"] = row["scenario_id"].encode()
        assert got[row["event_id"]] == expected, row


def test_read_back_reports_each_event_and_header_label(broker, make_events):
    frame = make_events(3_000)
    topic = topic_name()
    replay(rebatch(iter([frame]), 1_000), open_sink(f"kafka://{broker.address}/{topic}"),
           time_column="ts")
    back = list(read_back(f"kafka://{broker.address}/{topic}"))
    got = sorted((r["event_id"], r["label"], r["header_label"])
                 for b in back for r in b.iter_rows(named=True))
    assert got == sorted(zip(frame["event_id"], frame["label"], frame["label"], strict=True))


@pytest.mark.parametrize("client", CLIENTS)
def test_outage_in_the_middle_of_a_replay_loses_nothing(proxied_broker, client, tmp_path,
                                                        make_events, free_port):
    """The CLI replays through a proxy that drops every connection and refuses new ones for 3 s;
    the replay waits, resumes, and verify finds nothing lost."""
    broker, proxy = proxied_broker
    source = tmp_path / "events.parquet"
    make_events(16_000).write_parquet(source)
    topic = topic_name()
    manifest = tmp_path / "replay.manifest.json"
    port = free_port()
    replay_cmd = [sys.executable, "-m", "streamsynth", "replay", str(source),
                  "--to", f"kafka://{proxy.address}/{topic}?client={client}",
                  "--rate", "4000", "--manifest", str(manifest), "--metrics-port", str(port)]
    process = subprocess.Popen(replay_cmd, stderr=subprocess.PIPE, text=True)
    position = wait_for_position(port, above=2_000)
    proxy.cut()
    time.sleep(1.5)
    stuck = wait_for_position(port, above=0)
    time.sleep(1.5)
    assert wait_for_position(port, above=0) == stuck < 16_000  # nothing moves while it is down
    assert process.poll() is None
    restored_at = datetime.now(UTC)
    proxy.restore()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert position < 16_000 and "position 16,000" in err
    # The outage is told, not hidden: in the summary, the manifest and the metrics.
    assert re.search(r"1 outage \((\d+\.\d) s in all, \d+ retries\)", err), err
    outages = json.loads(manifest.read_text())["outages"]
    assert outages["count"] == 1 and outages["log"][0]["ended"]
    # The outage recorded spans the moment the broker came back. (Its length is not a bound: a
    # client on a loaded machine may notice the cut a second or more after it; 1.46 s of 3 once.)
    began = datetime.fromisoformat(outages["log"][0]["started_at"])
    assert began < restored_at <= began + timedelta(seconds=outages["log"][0]["seconds"] + 1.0)
    assert main(["verify", "--from", f"kafka://{proxy.address}/{topic}",
                 "--manifest", str(manifest)]) == 0


@pytest.mark.skipif(not HAS_CONFLUENT, reason="confluent-kafka is not installed")
def test_confluent_delivery_failures_are_counted_resent_and_acknowledged_only_when_delivered(
        proxied_broker, make_events):
    """Failed delivery reports come back through the producer's callback: the batch stays
    unacknowledged (a flush that cannot deliver raises), the errors are counted, and the failed
    messages are produced again once the broker is back."""
    broker, proxy = proxied_broker
    frame = make_events(3_000)
    topic = topic_name()
    metrics = ReplayMetrics()
    sink = open_sink(f"kafka://{proxy.address}/{topic}?client=confluent&give_up=2s",
                     entity="card_id", metrics=metrics)
    proxy.cut()
    sink.write(frame)
    with pytest.raises(StreamsynthError, match="3000 events not acknowledged"):
        sink.flush()
    assert (sink.acked, sink.written) == (0, 3_000)
    # librdkafka gives up on every queued message (as when message.timeout.ms runs out): each
    # comes back as a failed delivery report.
    sink._producer.purge(in_queue=True, in_flight=False)
    proxy.restore()
    sink.flush()
    assert sink.acked == 3_000 and metrics.sent("kafka") == dict(frame["label"].value_counts().iter_rows())
    errors = {s.labels["kind"] for m in metrics.send_errors.collect() for s in m.samples
              if s.name.endswith("_total")}
    assert "_PURGE_QUEUE" in errors
    assert metrics.retries.labels("kafka")._value.get() >= 1
    sink.close()
    messages = consume_all(proxy.address, topic)
    assert sorted(json.loads(m.value)["event_id"] for m in messages) == \
        sorted(frame["event_id"].to_list())  # all there, none twice
    # Sent again with their label headers (librdkafka's report does not carry them back).
    assert all(dict(m.headers)["label"].decode() == json.loads(m.value)["label"] for m in messages)


@pytest.mark.skipif(not HAS_CONFLUENT, reason="confluent-kafka is not installed")
def test_closing_a_confluent_sink_releases_its_producer(broker, make_events):
    """close() lets go of the producer at once (threads, broker connections); its callbacks tie it
    to the sink in a cycle that the garbage collector would otherwise break only some time later."""
    from confluent_kafka import Producer

    def live_producers() -> int:
        return sum(isinstance(o, Producer) for o in gc.get_objects())

    before = live_producers()
    for _ in range(3):
        sink = open_sink(f"kafka://{broker.address}/{topic_name()}?client=confluent")
        replay(iter([make_events(100)]), sink, time_column="ts")
    assert live_producers() == before


def wait_for_position(port: int, above: int, timeout: float = 30.0) -> int:
    """The replay's acknowledged position from its metrics endpoint, once it exceeds ``above``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()
        except OSError:
            time.sleep(0.1)
            continue
        for line in text.decode().splitlines():
            if line.startswith("streamsynth_replay_position "):
                value = int(float(line.split()[1]))
                if value > above:
                    return value
        time.sleep(0.1)
    raise AssertionError(f"replay position did not pass {above}")


@pytest.mark.parametrize("client", [
    "kafka-python",
    pytest.param("confluent", marks=[pytest.mark.slow, pytest.mark.skipif(
        not HAS_CONFLUENT, reason="confluent-kafka is not installed")]),
])
def test_real_broker_restart_loses_nothing_sent_after_it(own_broker, client, make_events):
    """tansu keeps memory only, so a killed broker comes back empty: what was acknowledged
    before is gone with it, but every event written after the crash must reach the new one."""
    frame = make_events(12_000)
    topic = topic_name()
    sink = open_sink(f"kafka://{own_broker.address}/{topic}?client={client}", entity="card_id")
    results = []
    thread = threading.Thread(target=lambda: results.append(replay(
        rebatch(iter([frame]), 1_000), sink, pacing=Pacing(rate=3_000), flush_every=0.2)))
    thread.start()
    time.sleep(1.5)
    own_broker.stop(kill=True)
    # A slice being handed over at the kill may have reached the old broker (and died with its
    # memory): count from a moment later, when everything written has been written since the crash.
    time.sleep(0.3)
    written_at_crash = sink.written
    time.sleep(1.7)
    own_broker.start()
    thread.join(timeout=90)
    assert results and results[0].sent == 12_000
    assert results[0].max_lag > 1.0  # it did wait for the broker
    got = {json.loads(m.value)["event_id"] for m in consume_all(own_broker.address, topic)}
    after = set(frame["event_id"].to_list()[written_at_crash:])
    assert 0 < written_at_crash < 12_000 and after <= got


def test_bad_inputs_are_clear_errors(broker, free_port):
    assert_refused(
        (f"kafka://{broker.address}/bad topic!", "not a valid Kafka topic name"),
        ("kafka:///events", "names no broker"),
        (f"kafka://{broker.address}/events?acks=2", "option acks='2' is not valid"),
        (f"kafka://{broker.address}/events?compresion=lz4", "unknown option 'compresion'"),
        (f"kafka://{broker.address}/events?acks=1", "idempotence needs acks=all"),
    )
    started = time.monotonic()
    with pytest.raises(StreamsynthError, match="cannot reach the Kafka broker at 127.0.0.1:"):
        open_sink(f"kafka://127.0.0.1:{free_port()}/events?connect_timeout=1s")
    assert time.monotonic() - started < 10


def test_paced_replay_to_kafka_keeps_the_rate(broker, make_events):
    frame = make_events(6_000)
    sink = open_sink(f"kafka://{broker.address}/{topic_name()}")
    result = replay(rebatch(iter([frame]), 1_000), sink, time_column="ts",
                    pacing=Pacing(rate=3_000))
    assert result.sent == 6_000
    expected = 5_999 / 3_000
    # Never faster than the rate. Never slower either, beyond what the Kafka client itself took:
    # on a loaded 2-core machine kafka-python needed 2.4 s for these 6,000 events, and pacing
    # cannot make the client faster; what is checked is that pacing adds no delay of its own.
    # 250 ms of slack: a full garbage collection after the suite's large tests, the loop itself.
    assert result.send_seconds >= expected - 0.1
    client = result.timings["sink"] + result.timings["acks"]
    assert result.send_seconds <= max(expected, client) + 0.25


def test_secrets_come_from_the_environment_and_are_never_printed(broker, tmp_path, capsys,
                                                                 monkeypatch, make_events):
    source = tmp_path / "events.parquet"
    make_events(200).write_parquet(source)
    monkeypatch.setenv("STREAMSYNTH_KAFKA_SASL_PASSWORD", "hunter2-secret")
    manifest = tmp_path / "m.json"
    url = f"kafka://{broker.address}/{topic_name()}"
    assert main(["replay", str(source), "--to", url, "--manifest", str(manifest)]) == 0
    assert "hunter2" not in capsys.readouterr().err + manifest.read_text()
    assert main(["replay", str(source), "--to", f"kafka://me:hunter2@{broker.address}/x"]) == 2
    err = capsys.readouterr().err
    assert "carries credentials" in err and "hunter2" not in err


AVRO_SCHEMA = {
    "type": "record", "name": "Payment", "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "card_id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "label", "type": "string"},
        {"name": "is_anomaly", "type": "boolean"},
        {"name": "scenario_id", "type": ["null", "string"]},
    ],
}


def test_avro_values_from_a_schema_file(broker, tmp_path, make_events):
    fastavro = pytest.importorskip("fastavro")
    schema_file = tmp_path / "payment.avsc"
    schema_file.write_text(json.dumps(AVRO_SCHEMA))
    frame = make_events(2_000, fraud=0.2)
    topic = topic_name()
    url = f"kafka://{broker.address}/{topic}?format=avro&schema={schema_file}"
    replay(rebatch(iter([frame]), 500), open_sink(url, entity="card_id"), time_column="ts")
    messages = consume_all(broker.address, topic)
    parsed = fastavro.parse_schema(AVRO_SCHEMA)
    records = [fastavro.schemaless_reader(io.BytesIO(m.value), parsed, None) for m in messages]
    assert sorted(r["event_id"] for r in records) == sorted(frame["event_id"].to_list())
    first = next(r for r in records if r["event_id"] == "ev-0")
    assert first["ts"] == frame["ts"][0] and first["amount"] == frame["amount"][0]
    back = pl.concat(list(read_back(url)))
    assert (back["label"] == back["header_label"]).all() and back.height == 2_000

    bad = tmp_path / "bad.avsc"
    bad.write_text(json.dumps(AVRO_SCHEMA | {"fields": AVRO_SCHEMA["fields"][:1] + [
        {"name": "amount", "type": "int"}]}))
    sink = open_sink(f"kafka://{broker.address}/{topic_name()}?format=avro&schema={bad}")
    with pytest.raises(StreamsynthError, match="do not fit the Avro schema"):
        replay(rebatch(iter([frame]), 500), sink, time_column="ts")
    with pytest.raises(StreamsynthError, match="format=avro needs a schema"):
        open_sink(f"kafka://{broker.address}/x?format=avro")


@pytest.mark.parametrize("client", CLIENTS)
def test_an_event_over_the_size_limit_fails_clearly_and_keeps_what_was_acknowledged(
        broker, client, make_events):
    """An event larger than the client's message size limit cannot be sent by any new producer: the
    replay stops at once with the size and the option to raise (it used to replace its producer
    until give_up), and the batch acknowledged before it stays in the topic and the checkpoint."""
    small = make_events(2_000)
    big = make_events(10, seed=1).with_columns(
        pl.col("event_id") + "-big", pl.lit("x" * 1_500_000).alias("blob"))
    topic = topic_name()
    checkpoints: list[int] = []
    sink = open_sink(f"kafka://{broker.address}/{topic}?client={client}&give_up=20s",
                     time="ts", entity="card_id")
    started = time.monotonic()
    with pytest.raises(StreamsynthError, match=r"event of \d+ bytes .* over the Kafka client's "
                       r"message size limit of \d+ bytes") as error:
        replay(iter([small, big.drop("blob").head(0), big]), sink, time_column="ts", flush_every=0,
               on_checkpoint=lambda position, _counter: checkpoints.append(position))
    assert "max_message_size" in error.value.hint
    assert time.monotonic() - started < 15
    assert checkpoints[-1] == 2_000
    got = sorted(json.loads(m.value)["event_id"] for m in consume_all(broker.address, topic))
    assert got == sorted(small["event_id"].to_list())


@pytest.mark.parametrize("client", CLIENTS)
def test_max_message_size_lets_large_events_through(broker, client, make_events):
    big = make_events(5).with_columns(pl.lit("x" * 1_500_000).alias("blob"))
    topic = topic_name()
    sink = open_sink(f"kafka://{broker.address}/{topic}?client={client}&max_message_size=4MB",
                     time="ts", entity="card_id")
    assert replay(iter([big]), sink, time_column="ts").sent == 5
    assert len(consume_all(broker.address, topic)) == 5


@pytest.mark.skipif(not HAS_CONFLUENT, reason="confluent-kafka is not installed")
def test_throughput_settings_deliver_everything_once(broker, make_events, tmp_path):
    """The settings a load test picks for throughput (no idempotence, acks=1, lz4, big batches),
    then `verify` reads the lz4-compressed topic back (kafka-python, with the lz4 package)."""
    frame = make_events(20_000)
    topic = topic_name()
    manifest = tmp_path / "manifest.json"
    events = tmp_path / "events.parquet"
    frame.write_parquet(events)
    url = (f"kafka://{broker.address}/{topic}?client=confluent&acks=1&idempotence=false"
           "&compression=lz4&linger=20ms&batch_size=1MiB&batch_messages=50000"
           "&queue_messages=200000&queue_size=64MiB")
    assert main(["replay", str(events), "--to", url, "--manifest", str(manifest)]) == 0
    got = sorted(json.loads(m.value)["event_id"] for m in consume_all(broker.address, topic))
    assert got == sorted(frame["event_id"].to_list())
    assert main(["verify", "--from", f"kafka://{broker.address}/{topic}", "--manifest", str(manifest)]) == 0


@pytest.mark.skipif(not HAS_CONFLUENT, reason="confluent-kafka is not installed")
def test_reading_back_a_codec_kafka_python_lacks_is_a_clear_error(broker, make_events, monkeypatch):
    import kafka.codec

    topic = topic_name()
    sink = open_sink(f"kafka://{broker.address}/{topic}?client=confluent&compression=zstd", time="ts")
    assert replay(iter([make_events(100)]), sink, time_column="ts").sent == 100
    monkeypatch.setattr(kafka.codec, "has_zstd", lambda: False)  # as without the zstandard package
    with pytest.raises(StreamsynthError, match=f"cannot read Kafka topic '{topic}'.*zstd") as err:
        list(read_back(f"kafka://{broker.address}/{topic}"))
    assert "pip install zstandard" in err.value.hint


@pytest.mark.parametrize(("query", "message"), [
    ("client=confluent&batch_messages=0", "option batch_messages='0' is not valid"),
    ("client=confluent&batch_messages=2000000", "option batch_messages='2000000' is out of range"),
    ("batch_messages=1000", "option batch_messages is a confluent-kafka setting"),
    ("queue_messages=1000", "option queue_messages is a confluent-kafka setting"),
    ("client=confluent&queue_size=100", "option queue_size='100' is out of range"),
    ("max_message_size=10", "option max_message_size='10' is out of range"),
    ("max_message_size=2GB", "option max_message_size='2GB' is out of range"),
    ("linger=20m", "option linger='20m' is out of range"),
    ("batch_size=4GiB", "option batch_size='4GiB' is out of range"),
])
def test_producer_options_out_of_range_are_named(broker, query, message):
    with pytest.raises(StreamsynthError, match=message) as error:
        open_sink(f"kafka://{broker.address}/{topic_name()}?{query}")
    option = message.split()[1].split("=")[0]
    assert option in error.value.hint
