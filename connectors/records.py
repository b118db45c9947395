"""Turning contract batches into wire records: JSON lines, keys, label headers, label counts.

Serialisation is done a batch at a time in polars (no per-event ``json.dumps``), so the per-event
cost left in Python is only the client call itself.
"""

from __future__ import annotations

import io
import json

import numpy as np
import polars as pl

from streamsynth.contract import IS_ANOMALY, LABEL, NORMAL, SCENARIO_ID
from streamsynth.errors import StreamsynthError


def json_lines(batch: pl.DataFrame) -> list[bytes]:
    """One JSON object per event, as UTF-8 bytes without the newline (the lines of ``write_ndjson``).

    Encoded in memory as one struct column straight to bytes: no streaming-engine sink (whose extra
    threads cost a second core), no text round trip, no split; about a third less CPU in all.
    """
    if batch.height == 0:
        return []
    return batch.select(pl.struct(pl.all()).struct.json_encode().cast(pl.Binary)).to_series().to_list()


class AvroCodec:
    """Schemaless Avro values from a schema file (``.avsc``), with fastavro (an optional package)."""

    def __init__(self, path: str) -> None:
        try:
            import fastavro
        except ImportError:
            raise StreamsynthError("Avro values need the fastavro package",
                                   hint="pip install fastavro, or drop ?format=avro") from None
        self._fastavro = fastavro
        try:
            with open(path) as fh:
                self.schema = fastavro.parse_schema(json.load(fh))
        except OSError as exc:
            raise StreamsynthError(f"cannot read Avro schema {path}: {exc.strerror}",
                                   hint="give ?schema=FILE.avsc") from None
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            raise StreamsynthError(f"Avro schema {path} is not valid: {exc}",
                                   hint="check the .avsc file against the Avro specification") from None

    def encode(self, batch: pl.DataFrame) -> list[bytes]:
        records = batch.to_dicts()
        if records:
            try:
                self._fastavro.validation.validate(records[0], self.schema, raise_errors=True)
            except self._fastavro.validation.ValidationError as exc:
                raise StreamsynthError(f"events do not fit the Avro schema: {exc}",
                                       hint="make the schema's fields match the stream's columns "
                                       "(nullable fields as [\"null\", type])") from None
        out = []
        buffer = io.BytesIO()
        write = self._fastavro.schemaless_writer
        for record in records:
            buffer.seek(0)
            buffer.truncate()
            write(buffer, self.schema, record)
            out.append(buffer.getvalue())
        return out

    def decode(self, values: list[bytes]) -> list[dict]:
        read = self._fastavro.schemaless_reader
        return [read(io.BytesIO(v), self.schema, None) for v in values]


def ndjson_bytes(batch: pl.DataFrame) -> bytes:
    """The batch as JSON Lines, newline-terminated."""
    return batch.write_ndjson().encode() if batch.height else b""


def json_array(batch: pl.DataFrame) -> bytes:
    """The batch as one JSON array of objects (an HTTP request body)."""
    return batch.write_json().encode()


def keys(batch: pl.DataFrame, column: str | None) -> list[bytes | None]:
    """Message keys from ``column`` (the entity id) as UTF-8, or ``None`` for every event."""
    if column is None or column not in batch.columns:
        return [None] * batch.height
    # Cast to bytes in polars: no per-event str.encode in Python.
    return batch[column].cast(pl.String).cast(pl.Binary).to_list()


def label_counts(batch: pl.DataFrame) -> dict[str, int]:
    """Events per label in a batch (``normal`` when the batch has no label column)."""
    if batch.height == 0:
        return {}
    if LABEL not in batch.columns:
        return {NORMAL: batch.height}
    # Nulls are folded into `normal` here rather than with fill_null, and the counts are read as
    # two lists rather than row by row: both cost more than the count itself on small batches.
    counts = batch[LABEL].value_counts()
    out: dict[str, int] = {}
    for label, count in zip(counts.to_series(0).to_list(), counts.to_series(1).to_list(), strict=True):
        label = NORMAL if label is None else label
        out[label] = out.get(label, 0) + count
    return out


def slice_label_counts(batch: pl.DataFrame, size: int) -> list[dict[str, int]]:
    """:func:`label_counts` of each ``size``-event slice of ``batch`` (the last may be shorter).

    A handful of polars calls for the whole batch instead of a few per slice: on a sink's pool
    threads each polars call also gives up and takes back the GIL, which costs more than the count.
    """
    n = batch.height
    if n == 0:
        return []
    if LABEL not in batch.columns:
        return [{NORMAL: min(size, n - start)} for start in range(0, n, size)]
    labels = batch.get_column(LABEL).cast(pl.String).fill_null(NORMAL)
    names = labels.unique(maintain_order=True)
    codes = labels.cast(pl.Enum(names)).to_physical().to_numpy()
    names = names.to_list()
    out = []
    for start in range(0, n, size):
        counts = np.bincount(codes[start:start + size], minlength=len(names)).tolist()
        out.append({name: count for name, count in zip(names, counts, strict=True) if count})
    return out


def header_triples(batch: pl.DataFrame) -> list[tuple[str, bool, str | None]]:
    """Per event (label, is_anomaly, scenario_id), with contract defaults where columns lack."""
    n = batch.height
    labels = batch[LABEL].fill_null(NORMAL).to_list() if LABEL in batch.columns else [NORMAL] * n
    anomalies = (batch[IS_ANOMALY].fill_null(False).to_list() if IS_ANOMALY in batch.columns
                 else [False] * n)
    scenarios = batch[SCENARIO_ID].to_list() if SCENARIO_ID in batch.columns else [None] * n
    return list(zip(labels, anomalies, scenarios, strict=True))


def header_lists(batch: pl.DataFrame, cache: HeaderCache) -> list[list[tuple[str, bytes]]]:
    """Per event, the shared header list of its (label, is_anomaly, scenario_id).

    Works on integer codes of the distinct triples, so no per-event tuple is built (on a large
    heap those allocations would also wake the garbage collector again and again); the codes are
    turned into lists by one numpy gather, and only the first row of each code is read back.
    """
    n = batch.height
    if n == 0:
        return []
    cols = [c for c in (LABEL, IS_ANOMALY, SCENARIO_ID) if c in batch.columns]
    if not cols:
        return [cache((NORMAL, False, None))] * n
    codes = batch.select(pl.struct(cols).rank("dense")).to_series().to_numpy().astype(np.intp) - 1
    first = np.empty(int(codes.max()) + 1, dtype=np.intp)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)  # the last write wins: each code's first row
    table = np.empty(len(first), dtype=object)
    for i, row in enumerate(batch.select(cols)[first].iter_rows(named=True)):
        table[i] = cache((row.get(LABEL) or NORMAL, bool(row.get(IS_ANOMALY) or False), row.get(SCENARIO_ID)))
    return table[codes].tolist()


class HeaderCache:
    """Kafka header lists per distinct (label, is_anomaly, scenario_id), built once and reused.

    A stream has few distinct label triples, so reusing one list object per triple saves
    building three tuples for every event.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, bool, str | None], list[tuple[str, bytes]]] = {}

    def __call__(self, triple: tuple[str, bool, str | None]) -> list[tuple[str, bytes]]:
        headers = self._cache.get(triple)
        if headers is None:
            label, anomaly, scenario = triple
            headers = [(LABEL, label.encode()), (IS_ANOMALY, b"true" if anomaly else b"false")]
            if scenario is not None:
                headers.append((SCENARIO_ID, scenario.encode()))
            self._cache[triple] = headers
        return headers
