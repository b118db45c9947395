"""``kafka://...?client=confluent``: the same Kafka sink on confluent-kafka (librdkafka), the fast path.

Delivery reports are asked for failures only, through the producer's default callback (none is
passed with each message), so the per-event cost in Python is one bare ``produce`` call; failed
messages come back through the report and are produced again.
"""

from __future__ import annotations

import time
from collections import Counter

from streamsynth.connectors.kafka import KafkaSink, security_settings, too_large, unreachable

from streamsynth.errors import StreamsynthError

STALL_SECONDS = 10.0  # a flush that moves nothing for this long gets a new producer
_MSG_SIZE_TOO_LARGE = 10  # KafkaError.MSG_SIZE_TOO_LARGE (the broker's error code, as librdkafka's)


def _is_too_large(exc: Exception) -> bool:
    error = exc.args[0] if exc.args else None
    return getattr(error, "code", lambda: None)() == _MSG_SIZE_TOO_LARGE


def _confluent_security() -> dict:
    mapping = {"security_protocol": "security.protocol", "sasl_mechanism": "sasl.mechanism",
               "sasl_username": "sasl.username", "sasl_password": "sasl.password",
               "ssl_cafile": "ssl.ca.location", "ssl_certfile": "ssl.certificate.location",
               "ssl_keyfile": "ssl.key.location"}
    return {mapping[k]: v for k, v in security_settings().items()}


class ConfluentKafkaSink(KafkaSink):
    """confluent-kafka producer; acknowledges everything written when :meth:`flush` returns."""

    def _open(self) -> None:
        try:
            from confluent_kafka import KafkaException
        except ImportError:
            raise StreamsynthError(
                "kafka sink ?client=confluent needs the confluent-kafka package",
                hint="pip install 'streamsynth[fast]' (or confluent-kafka), or drop ?client=",
            ) from None
        s = self.settings
        config = {
            "bootstrap.servers": ",".join(s.servers),
            "acks": s.acks,
            "compression.type": s.compression,
            "enable.idempotence": s.idempotence,
            "linger.ms": max(s.linger * 1000, 0),
            "batch.size": s.batch_size,
            "queue.buffering.max.kbytes": -(-s.queue_size // 1024) if s.queue_size else 256 * 1024,
            "queue.buffering.max.messages": s.queue_messages or 1_000_000,
            "message.timeout.ms": 60_000,
            "reconnect.backoff.max.ms": 1000,
            "delivery.report.only.error": True,
            # The Java client's partitioner (as kafka-python): an entity lands on the same
            # partition whichever client produced it.
            "partitioner": "murmur2_random",
            "log_level": 0,  # librdkafka would otherwise print connection retries to stderr
            **_confluent_security(),
        }
        if s.batch_messages is not None:
            config["batch.num.messages"] = s.batch_messages
        if s.max_message_size is not None:
            config["message.max.bytes"] = s.max_message_size
        self._failed: list[tuple[bytes, bytes | None]] = []  # (value, key) of failed deliveries
        self._too_big: list[int] = []  # sizes of messages the broker refused as too large
        self._errors: set[str] = set()
        self._config = config
        self._producer = self._new_producer()
        try:
            metadata = self._producer.list_topics(s.topic, timeout=s.connect_timeout)
        except KafkaException as exc:
            self._release()
            raise unreachable(s, str(exc.args[0].str() if exc.args else exc)) from None
        topic = metadata.topics.get(s.topic)
        if topic is None or topic.error is not None:
            self._release()
            raise StreamsynthError(
                f"Kafka topic {s.topic!r} on {','.join(s.servers)} is not usable: "
                f"{topic.error.str() if topic is not None else 'missing'}",
                hint="create the topic, or allow the broker to create topics",
            )
        self._values, self._keys, self._hdrs = [], [], []  # the unacknowledged window
        self._pending_labels = Counter()
        self._pending_bytes = 0
        self._window_start = None

    def _new_producer(self):
        from confluent_kafka import KafkaException, Producer

        # Delivery reports go to the producer's default callback: no callback travels with each
        # message. The callbacks tie the producer and this sink in a cycle, broken by _release().
        try:
            return Producer({**self._config, "on_delivery": self._on_delivery},
                            error_cb=self._on_client_error)
        except KafkaException as exc:  # settings librdkafka refuses (e.g. a missing codec)
            reason = exc.args[0].str() if exc.args else str(exc)
            raise StreamsynthError(f"kafka sink {self.url.redacted()!r}: the producer settings are "
                                   f"not valid: {reason.strip()}",
                                   hint="fix the kafka:// URL options named above") from None

    def _release(self) -> None:
        """Destroy the producer now (its threads and connections), not whenever the garbage
        collector gets to the cycle it forms with this sink."""
        self._producer = None

    def _on_client_error(self, error) -> None:
        # Only note the kind here: a fatal error surfaces again as an exception from librdkafka
        # calls, where _recover() handles it.
        try:
            self._errors.add("fatal" if error.fatal() else error.name())
        except Exception:  # noqa: BLE001 - the error object may already carry a raised exception
            self._errors.add("fatal")

    def _on_delivery(self, error, message) -> None:
        if error is not None:
            self._errors.add(error.name())
            if error.code() == _MSG_SIZE_TOO_LARGE:
                self._too_big.append(len(message.value() or b"") + len(message.key() or b""))
            # The report carries no headers (confluent-kafka leaves them out): they are looked up in
            # the window when the message is produced again.
            self._failed.append((message.value(), message.key()))

    def _send_all(self, values: list[bytes], keys_: list[bytes | None], headers: list[list]) -> None:
        # Recorded first: if the producer fails part-way, the whole window is produced again.
        self._values += values
        self._keys += keys_
        self._hdrs += headers
        self._produce(values, keys_, headers)

    def _produce(self, values: list[bytes], keys_: list[bytes | None], headers: list[list]) -> None:
        from confluent_kafka import KafkaException

        topic, produce = self.settings.topic, self._producer.produce
        deadline = time.monotonic() + self.settings.give_up
        # The hot loop: one call per event; the rare cases leave it through an exception.
        for value, key, hdrs in zip(values, keys_, headers, strict=True):
            try:
                produce(topic, value, key, headers=hdrs)
            except BufferError:
                if not self._produce_when_room(value, key, hdrs, deadline):
                    return
            except (KafkaException, SystemError) as exc:
                self._check_size(exc, value, key)
                self._recover(deadline)  # produces the whole window, the rest of this included
                return

    def _check_size(self, exc: Exception, value: bytes, key: bytes | None) -> None:
        """An event over the client's size limit: no new producer can send it, so stop clearly."""
        if _is_too_large(exc):
            self.metrics.error(self.scheme, "MSG_SIZE_TOO_LARGE", outage=False)
            raise too_large(self.settings, len(value) + len(key or b""), by_broker=False) from None

    def _produce_when_room(self, value: bytes, key: bytes | None, headers: list, deadline: float) -> bool:
        """The local queue is full: serve delivery reports until the message fits. False when the
        producer had to be replaced instead (the whole window was then produced again)."""
        from confluent_kafka import KafkaException

        while True:
            if self.past(deadline):
                raise self._gave_up(len(self._producer)) from None
            try:
                self._producer.poll(0.05)
                self._producer.produce(self.settings.topic, value, key, headers=headers)
                return True
            except BufferError:
                continue
            except (KafkaException, SystemError) as exc:
                self._check_size(exc, value, key)
                self._recover(deadline)
                return False

    def flush(self) -> None:
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + self.settings.give_up
        delay = 0.2
        best, progress_at = len(self._producer), time.monotonic()
        while True:
            try:
                remaining = self._producer.flush(1.0)
            except (KafkaException, SystemError):
                self._recover(deadline)
                best, progress_at = len(self._producer), time.monotonic()
                continue
            if remaining < best:
                best, progress_at = remaining, time.monotonic()
            elif remaining and time.monotonic() - progress_at > STALL_SECONDS:
                # No progress at all: e.g. a restarted broker forgot this idempotent producer and
                # librdkafka waits on it. Start a new producer and send the whole window again.
                self.metrics.error(self.scheme, "stalled")
                self.metrics.retry(self.scheme)
                self._produce(*self._replace_producer())
                best, progress_at = len(self._producer), time.monotonic()
                continue
            failed, self._failed = self._failed, []
            if remaining == 0 and not failed:
                break
            for kind in self._errors or {"timeout"}:
                self.metrics.error(self.scheme, kind)
            self._errors = set()
            if self._too_big:  # the broker's limit: no retry can help
                raise too_large(self.settings, max(self._too_big), by_broker=True)
            if self.past(deadline):
                raise self._gave_up(remaining + len(failed))
            if failed:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                self.metrics.retry(self.scheme)
                self._produce(*self._with_headers(failed))
        self._values, self._keys, self._hdrs = [], [], []
        self._acknowledge()

    def _with_headers(self, failed: list[tuple[bytes, bytes | None]]) -> tuple[list, list, list]:
        """Values, keys and label headers of failed messages, the headers found by value in the
        window (values are unique: each holds its event_id). Built only when deliveries fail."""
        headers_of = dict(zip(self._values, self._hdrs, strict=True))
        values = [value for value, _ in failed]
        return values, [key for _, key in failed], [headers_of[value] for value in values]

    def _recover(self, deadline: float) -> None:
        """A fatal producer error (librdkafka surfaces them as exceptions, e.g. a restarted broker
        that forgot this idempotent producer): new producer, whole window produced again."""
        if self.past(deadline):
            raise self._gave_up(len(self._values))
        self.metrics.error(self.scheme, "fatal")
        self.metrics.retry(self.scheme)
        time.sleep(0.2)
        self._produce(*self._replace_producer())

    def _replace_producer(self) -> tuple[list, list, list]:
        """A new producer in place of the old (its queue purged); returns the unacknowledged
        window, which stays the window: the caller produces it again."""
        try:
            self._producer.purge(in_queue=True, in_flight=True)
        except Exception:  # noqa: BLE001 - a producer in a fatal state may refuse; it is dropped
            pass
        self._release()
        self._producer = self._new_producer()
        self._failed = []
        return self._values, self._keys, self._hdrs

    def close(self) -> None:
        if self._producer is not None:
            self.flush()
            self._release()

    def abort(self) -> None:
        if self._producer is not None:
            self._producer.purge()
            self._release()
