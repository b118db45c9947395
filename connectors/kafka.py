"""The ``kafka://host:port/topic`` sink with kafka-python (``?client=confluent`` picks confluent-kafka).

Key = the entity id, value = the event as JSON, headers ``label``, ``is_anomaly`` and
``scenario_id``. Messages that fail (a broker outage past the client's own retries) are sent
again until they are acknowledged or ``give_up`` seconds pass. SASL/SSL settings come from
``STREAMSYNTH_KAFKA_*`` environment variables and are never logged.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl
from streamsynth.connectors.base import Sink, SinkURL
from streamsynth.connectors.records import (
    AvroCodec,
    HeaderCache,
    header_lists,
    json_lines,
    keys,
    label_counts,
)

from streamsynth.contract import EVENT_ID, LABEL
from streamsynth.errors import StreamsynthError

OPTIONS = ("client (kafka-python|confluent), acks (0|1|all), compression (none|gzip|snappy|lz4|"
           "zstd), idempotence, batch_size (bytes), linger (e.g. 5ms), batch_messages (confluent), "
           "queue_messages (confluent), queue_size (bytes), max_message_size (bytes), key (column), "
           "connect_timeout, give_up (how long to wait out an outage), format (json|avro), "
           "schema (an .avsc file, for avro)")
#: options only confluent-kafka (librdkafka) has
CONFLUENT_ONLY = ("batch_messages", "queue_messages")
_INT32 = 2**31 - 1
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_ENV = "STREAMSYNTH_KAFKA_"
#: environment variable suffix -> the setting it carries (never logged)
SECURITY_ENV = ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD",
                "SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE")


QUIET_POLLS = 4  # empty 500 ms polls in a row before a read-back counts the topic as drained


@dataclass
class KafkaSettings:
    """What a kafka URL says, checked: brokers, topic and producer options."""

    servers: list[str]
    topic: str
    client: str
    acks: str
    compression: str
    idempotence: bool
    batch_size: int
    linger: float
    key: str | None
    connect_timeout: float
    give_up: float
    format: str = "json"
    schema: str | None = None
    #: messages per produce request (librdkafka batch.num.messages); None: the client's default
    batch_messages: int | None = None
    #: the producer's local queue: messages (librdkafka queue.buffering.max.messages) and bytes
    #: (queue.buffering.max.kbytes; kafka-python buffer_memory); None: the sink's defaults
    queue_messages: int | None = None
    queue_size: int | None = None
    #: the largest message the client sends (message.max.bytes; kafka-python max_request_size)
    max_message_size: int | None = None

    @classmethod
    def from_url(cls, url: SinkURL, *, reading: bool = False) -> KafkaSettings:
        if not url.netloc:
            raise StreamsynthError(f"sink URL {url.redacted()!r} names no broker",
                                   hint="write kafka://host:9092/topic")
        if url.userinfo is not None:
            raise StreamsynthError(
                f"sink URL {url.redacted()!r} carries credentials",
                hint="set STREAMSYNTH_KAFKA_SECURITY_PROTOCOL, _SASL_MECHANISM, _SASL_USERNAME and "
                "_SASL_PASSWORD in the environment instead (URLs end up in logs and manifests)",
            )
        servers = []
        for server in url.netloc.split(","):
            host, _, port = server.partition(":")
            if not host or (port and not port.isdigit()):
                raise StreamsynthError(f"sink URL {url.redacted()!r}: bad broker address {server!r}",
                                       hint="write kafka://host:9092/topic (or host1:9092,host2:9092)")
            servers.append(f"{host}:{port or 9092}")
        topic = url.path.lstrip("/")
        if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
            raise StreamsynthError(
                f"sink URL {url.redacted()!r}: {topic!r} is not a valid Kafka topic name",
                hint="topic names are 1-249 characters of letters, digits, '.', '_' and '-'",
            )
        settings = cls(
            servers=servers,
            topic=topic,
            client=url.text("client", "kafka-python", choices=("kafka-python", "confluent")),
            acks=url.text("acks", "all", choices=("0", "1", "all")),
            compression=url.text("compression", "none",
                                 choices=("none", "gzip", "snappy", "lz4", "zstd")),
            idempotence=url.boolean("idempotence", True),
            batch_size=url.size("batch_size", 256 * 1024),
            linger=url.duration("linger", 0.005),
            key=url.text("key"),
            connect_timeout=url.duration("connect_timeout", 10.0),
            give_up=url.duration("give_up", 600.0),
            format=url.text("format", "json", choices=("json", "avro")),
            schema=url.text("schema"),
            batch_messages=url.integer("batch_messages", None, minimum=1),
            queue_messages=url.integer("queue_messages", None, minimum=1),
            queue_size=url.size("queue_size", None),
            max_message_size=url.size("max_message_size", None),
        )
        settings._check_ranges(url)
        if settings.format == "avro" and not settings.schema:
            raise StreamsynthError(f"sink URL {url.redacted()!r}: format=avro needs a schema",
                                   hint="add &schema=/path/to/events.avsc")
        if not reading:
            url.finish(OPTIONS)
        if settings.idempotence and settings.acks != "all":
            raise StreamsynthError(f"sink URL {url.redacted()!r}: idempotence needs acks=all",
                                   hint="drop acks=, or add idempotence=false")
        if settings.client != "confluent" and not reading:
            for name in CONFLUENT_ONLY:
                if name in url.options:
                    raise StreamsynthError(
                        f"sink URL {url.redacted()!r}: option {name} is a confluent-kafka setting",
                        hint=f"add client=confluent, or drop {name}=")
        return settings

    def _check_ranges(self, url: SinkURL) -> None:
        """The producer settings within the ranges the clients accept (librdkafka's), so a bad
        value is named here rather than surfacing as a client error."""
        limits = (("batch_size", self.batch_size, 1, _INT32, "1 byte to 2GiB, e.g. 1MiB"),
                  ("linger", self.linger, 0, 900, "0 to 900s, e.g. 20ms"),
                  ("batch_messages", self.batch_messages, 1, 1_000_000, "1 to 1000000 messages"),
                  ("queue_messages", self.queue_messages, 1, _INT32, "1 to 2147483647 messages"),
                  ("queue_size", self.queue_size, 1024, 1024 * _INT32, "1KiB to 2TiB, e.g. 512MiB"),
                  ("max_message_size", self.max_message_size, 1000, 1_000_000_000,
                   "1000 bytes to 1GB, e.g. 4MB"))
        for name, value, low, high, allowed in limits:
            if value is not None and not low <= value <= high:
                raise StreamsynthError(
                    f"sink URL {url.redacted()!r}: option {name}={url.options.get(name)!r} is out "
                    "of range", hint=f"{name} must be {allowed}")


def security_settings() -> dict[str, str]:
    """SASL/SSL settings from ``STREAMSYNTH_KAFKA_*`` variables, by suffix (lower case)."""
    return {name.lower(): os.environ[_ENV + name] for name in SECURITY_ENV if os.environ.get(_ENV + name)}


def _kafka_python_security() -> dict:
    sec = security_settings()
    mapping = {"security_protocol": "security_protocol", "sasl_mechanism": "sasl_mechanism",
               "sasl_username": "sasl_plain_username", "sasl_password": "sasl_plain_password",
               "ssl_cafile": "ssl_cafile", "ssl_certfile": "ssl_certfile", "ssl_keyfile": "ssl_keyfile"}
    return {mapping[k]: v for k, v in sec.items()}


def too_large(settings: KafkaSettings, size: int | None, by_broker: bool) -> StreamsynthError:
    """A message over the size limit: retrying cannot help, so the sink stops with this."""
    what = f"an event of {size} bytes" if size is not None else "an event"
    if by_broker:
        return StreamsynthError(
            f"the Kafka broker at {','.join(settings.servers)} refused {what} on topic "
            f"{settings.topic!r} as too large",
            hint="raise the broker's message.max.bytes (or the topic's max.message.bytes), or make "
            "the events smaller; events acknowledged before it are kept")
    limit = settings.max_message_size
    if limit is None:  # the clients' own defaults
        limit = 1_000_000 if settings.client == "confluent" else 1_048_576
    return StreamsynthError(
        f"{what} for topic {settings.topic!r} is over the Kafka client's message size limit "
        f"of {limit} bytes",
        hint="raise ?max_message_size= (the client's message.max.bytes / max_request_size; the "
        "broker's message.max.bytes must allow it too), or make the events smaller; events "
        "acknowledged before it are kept")


def unreachable(settings: KafkaSettings, reason: str) -> StreamsynthError:
    return StreamsynthError(
        f"cannot reach the Kafka broker at {','.join(settings.servers)}: {reason}",
        hint="check the host and port in the kafka:// URL and that the broker is running",
    )


class KafkaSink(Sink):
    """kafka-python producer; acknowledges everything written when :meth:`flush` returns."""

    scheme = "kafka"

    def __init__(self, url: SinkURL, **kwargs) -> None:
        super().__init__(url, **kwargs)
        self.settings = KafkaSettings.from_url(url)
        self.key = self.settings.key or self.entity
        self._headers = HeaderCache()
        self._avro = AvroCodec(self.settings.schema) if self.settings.format == "avro" else None
        self._open()

    # -- kafka-python ---------------------------------------------------------------------------
    def _new_producer(self):
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        s = self.settings
        compression = None if s.compression == "none" else s.compression
        optional = {"buffer_memory": s.queue_size, "max_request_size": s.max_message_size}
        try:
            return KafkaProducer(
                bootstrap_servers=s.servers,
                acks=-1 if s.acks == "all" else int(s.acks),
                compression_type=compression,
                enable_idempotence=s.idempotence,
                batch_size=s.batch_size,
                linger_ms=int(s.linger * 1000),
                max_block_ms=5000,
                bootstrap_timeout_ms=int(s.connect_timeout * 1000),
                request_timeout_ms=10_000,
                delivery_timeout_ms=60_000,
                reconnect_backoff_max_ms=1000,
                **{k: v for k, v in optional.items() if v is not None},
                **_kafka_python_security(),
            )
        except RuntimeError as exc:  # a compression codec whose library is missing
            raise StreamsynthError(f"kafka sink: {exc}",
                                   hint=f"pip install the {s.compression} package, or choose "
                                   "another ?compression=") from None
        except (KafkaError, ValueError, OSError) as exc:
            raise unreachable(s, str(exc)) from None

    def _open(self) -> None:
        from kafka.errors import KafkaError

        s = self.settings
        self._producer = self._new_producer()
        try:
            self._producer.partitions_for(s.topic)
        except KafkaError as exc:
            self._producer.close(timeout=1)
            raise StreamsynthError(
                f"Kafka topic {s.topic!r} on {','.join(s.servers)} is not usable: {exc}",
                hint="create the topic, or allow the broker to create topics",
            ) from None
        self._futures: list = []
        # The unacknowledged window, as parallel lists (no tuple per event: see header_lists).
        self._values: list[bytes] = []
        self._keys: list[bytes | None] = []
        self._hdrs: list[list] = []
        self._pending_labels: Counter = Counter()
        self._pending_bytes = 0
        self._window_start: float | None = None

    def write(self, batch: pl.DataFrame) -> None:
        if batch.height == 0:
            return
        if self._window_start is None:
            self._window_start = time.perf_counter()
        self._hand_over(self._encode(batch))
        self.written += batch.height

    def _encode(self, batch: pl.DataFrame) -> tuple[list, list, list, dict[str, int], int]:
        """A batch as wire records: values, keys, header lists, label counts and payload bytes."""
        values = self._avro.encode(batch) if self._avro is not None else json_lines(batch)
        return (values, keys(batch, self.key), header_lists(batch, self._headers),
                label_counts(batch), sum(map(len, values)))

    def _hand_over(self, encoded: tuple[list, list, list, dict[str, int], int]) -> None:
        values, keys_, headers, labels, nbytes = encoded
        self._send_all(values, keys_, headers)
        self._pending_labels.update(labels)
        self._pending_bytes += nbytes

    def _send_all(self, values: list[bytes], keys_: list[bytes | None], headers: list[list]) -> None:
        from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError

        topic, futures = self.settings.topic, self._futures
        send = self._producer.send
        deadline = time.monotonic() + self.settings.give_up
        for i in range(len(values)):
            while True:
                try:
                    futures.append(send(topic, value=values[i], key=keys_[i], headers=headers[i]))
                    break
                except KafkaTimeoutError:
                    # Buffer full or no metadata: the broker is away. Wait it out, up to give_up.
                    self.metrics.error(self.scheme, "buffer_timeout")
                except MessageSizeTooLargeError:
                    self.metrics.error(self.scheme, "MessageSizeTooLargeError", outage=False)
                    size = len(values[i]) + len(keys_[i] or b"")
                    raise too_large(self.settings, size, by_broker=False) from None
                except KafkaError as exc:
                    # The producer is in a fatal state (e.g. a restarted broker forgot its id).
                    self.metrics.error(self.scheme, type(exc).__name__)
                    self._reopen(deadline)
                    send = self._producer.send
                if self.past(deadline):
                    raise self._gave_up(len(values) - i) from None
        self._values += values
        self._keys += keys_
        self._hdrs += headers

    def _reopen(self, deadline: float) -> None:
        """Replace a producer that cannot go on; retried while the broker is unreachable."""
        _drop(self._producer)
        while True:
            try:
                self._producer = self._new_producer()
                return
            except StreamsynthError:
                if self.past(deadline):
                    raise self._gave_up(len(self._values)) from None
                time.sleep(0.5)

    def flush(self) -> None:
        from kafka.errors import MessageSizeTooLargeError, RetriableError

        deadline = time.monotonic() + self.settings.give_up
        delay = 0.2
        while self._futures:
            self._wait_for_acks(deadline)
            failed = [i for i, f in enumerate(self._futures) if not f.is_done or f.failed()]
            errors = [self._futures[i].exception for i in failed if self._futures[i].is_done]
            resend = ([self._values[i] for i in failed], [self._keys[i] for i in failed],
                      [self._hdrs[i] for i in failed])
            too_big = [len(self._values[i]) for i in failed if self._futures[i].is_done
                       and isinstance(self._futures[i].exception, MessageSizeTooLargeError)]
            self._futures, self._values, self._keys, self._hdrs = [], [], [], []
            if not failed:
                break
            for kind in {type(e).__name__ for e in errors} or {"timeout"}:
                self.metrics.error(self.scheme, kind)
            if too_big:  # the broker's limit: no retry can help
                raise too_large(self.settings, max(too_big), by_broker=True)
            if self.past(deadline):
                raise self._gave_up(len(failed))
            if any(not isinstance(e, RetriableError) for e in errors):
                self._reopen(deadline)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            self.metrics.retry(self.scheme)
            self._send_all(*resend)
        self._acknowledge()

    def _wait_for_acks(self, deadline: float) -> None:
        """Wait (in slices, so a shutdown cutoff is noticed) until every future is done or the
        wait is over. A slice in which nothing at all is acknowledged counts as an outage: the
        client retries a lost connection by itself, so no error may ever reach this sink."""
        from kafka.errors import KafkaTimeoutError

        futures = self._futures
        done = sum(1 for f in futures if f.is_done)
        while done < len(futures):
            began = time.monotonic()
            try:
                self._producer.flush(timeout=max(min(self.wait_left(deadline), 1.0), 0.01))
            except KafkaTimeoutError:
                pass
            now_done = sum(1 for f in futures if f.is_done)
            if now_done == done and now_done < len(futures):
                self.metrics.error(self.scheme, "no_acknowledgement", since=began)
            done = now_done
            if self.past(deadline):
                return

    def _acknowledge(self) -> None:
        if self._window_start is not None:
            self.metrics.latency(self.scheme, time.perf_counter() - self._window_start)
            self._window_start = None
        self.metrics.delivered(self.scheme, self._pending_labels, self._pending_bytes)
        self._pending_labels = Counter()
        self._pending_bytes = 0
        self.acked = self.written

    def _gave_up(self, n: int) -> StreamsynthError:
        return self.giving_up(StreamsynthError(
            f"{n} events not acknowledged by the Kafka broker at {','.join(self.settings.servers)} "
            f"within {self.settings.give_up:.0f} s",
            hint="bring the broker back and resume from the checkpoint, or raise ?give_up=",
        ))

    def close(self) -> None:
        try:
            self.flush()
        except BaseException:
            _drop(self._producer)
            raise
        self._producer.close(timeout=5)

    def abort(self) -> None:
        _drop(self._producer)

    @classmethod
    def read_back(cls, url: SinkURL, *, timeout: float = 10.0) -> Iterator[pl.DataFrame]:
        """Every message of the topic from the beginning: event_id, label and header_label."""
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError, UnsupportedCodecError

        s = KafkaSettings.from_url(url, reading=True)
        avro = AvroCodec(s.schema) if s.format == "avro" else None
        try:
            consumer = KafkaConsumer(bootstrap_servers=s.servers, enable_auto_commit=False,
                                     group_id=None, bootstrap_timeout_ms=int(timeout * 1000),
                                     **_kafka_python_security())
        except KafkaError as exc:
            raise unreachable(s, str(exc)) from None
        try:
            partitions = consumer.partitions_for_topic(s.topic)
            if not partitions:
                raise StreamsynthError(f"Kafka topic {s.topic!r} does not exist on "
                                       f"{','.join(s.servers)}", hint="check the topic name")
            tps = [TopicPartition(s.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            values: list[bytes] = []
            header_labels: list[str | None] = []
            last_progress = time.monotonic()
            idle_polls = 0
            # Some brokers (tansu) report end offsets below the last record of a batch, and a loaded
            # broker can pause a fetch for a second or more: the read ends only when the reported
            # ends (asked again while idle) are passed AND the topic has been quiet for QUIET_POLLS.
            while idle_polls < QUIET_POLLS or any(consumer.position(tp) < ends[tp] for tp in tps):
                try:
                    records = consumer.poll(timeout_ms=500, max_records=50_000)
                except UnsupportedCodecError as exc:
                    raise StreamsynthError(
                        f"cannot read Kafka topic {s.topic!r}: its messages are compressed with a "
                        f"codec kafka-python cannot decode here ({exc})",
                        hint="pip install zstandard (for zstd) or python-snappy (for snappy); "
                        "gzip and lz4 work as installed",
                    ) from None
                if records:
                    last_progress = time.monotonic()
                    idle_polls = 0
                else:
                    idle_polls += 1
                    ends = consumer.end_offsets(tps)
                    if time.monotonic() - last_progress > timeout:
                        raise StreamsynthError(f"reading Kafka topic {s.topic!r} stalled",
                                               hint="check that the broker is healthy")
                for batch in records.values():
                    for message in batch:
                        values.append(message.value)
                        header_labels.append(_header(message.headers, LABEL))
                if len(values) >= 100_000:
                    yield _parse(values, header_labels, avro)
                    values, header_labels = [], []
            if values:
                yield _parse(values, header_labels, avro)
        finally:
            consumer.close()


def _drop(producer) -> None:
    """Close a kafka-python producer at once, whatever it still holds.

    Its ``close`` flushes first and raises when records are pending (a broker that is down),
    leaving the sender thread running and the producer open, to fail again, with a traceback,
    when it is collected at exit; so the sender is stopped here and the producer marked closed.
    """
    from kafka.errors import KafkaError

    try:
        producer.close(timeout=0)
    except (KafkaError, OSError, ValueError):
        sender = getattr(producer, "_sender", None)
        if sender is not None:
            sender.force_close()
        producer._closed = True


def _header(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode()
    return None


def _parse(values: list[bytes], header_labels: list[str | None],
           avro: AvroCodec | None = None) -> pl.DataFrame:
    """Values to (event_id, label, header_label); only the two contract fields are kept."""
    if avro is not None:
        records = avro.decode(values)
        frame = pl.DataFrame({EVENT_ID: [r.get(EVENT_ID) for r in records],
                              LABEL: [r.get(LABEL) for r in records]},
                             schema={EVENT_ID: pl.String, LABEL: pl.String})
    else:
        frame = pl.read_ndjson(io.BytesIO(b"\n".join(values)),
                               schema={EVENT_ID: pl.String, LABEL: pl.String})
    return frame.with_columns(pl.Series("header_label", header_labels, dtype=pl.String))
