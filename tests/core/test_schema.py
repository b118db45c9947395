"""Schema inference on the payments sample and real logs; overrides from Python and YAML."""

from __future__ import annotations

import random
from datetime import datetime

import polars as pl
import pytest

from streamsynth import io
from streamsynth.errors import StreamsynthError
from streamsynth.schema import Role, Schema, overrides_from_yaml, sequence_stats


def test_payments_roles(payments_small):
    schema = Schema.infer(payments_small)
    assert (schema.time, schema.entity, schema.label) == ("ts", "customer_id", "is_fraud")
    roles = {c.name: c.role for c in schema.columns}
    assert roles["amount"] is Role.NUMERIC
    assert roles["merchant_category"] is Role.CATEGORICAL
    assert roles["is_fraud"] is Role.BOOLEAN
    assert roles["card_number"] is Role.IDENTIFIER and schema["card_number"].kind == "credit_card"
    assert roles["tx_id"] is Role.IDENTIFIER
    assert schema["amount"].cardinality > 100 and schema["amount"].nulls == 0


def test_identifier_kinds_and_text_are_recognised():
    n = 400
    frame = pl.DataFrame(
        {
            "email": [f"user{i}@example{i % 3}.com" for i in range(n)],
            "ip": [f"10.{i % 250}.{i // 250}.{i % 7}" for i in range(n)],
            "host": [f"web-{i}.prod.example.net" for i in range(n)],
            "message": [f"request {i} failed after retry number {i % 9} with code" for i in range(n)],
            "method": ["GET", "POST", "PUT", "DELETE"] * (n // 4),
            "status_code": [200, 404, 500, 503] * (n // 4),
            "latency_ms": [float(i % 97) + 0.5 for i in range(n)],
        }
    )
    schema = Schema.infer(frame)
    assert schema["email"].kind == "email" and schema["email"].role is Role.IDENTIFIER
    assert schema["ip"].kind == "ipv4"
    assert schema["host"].kind == "hostname"
    assert schema["message"].role is Role.TEXT
    assert schema["method"].role is Role.CATEGORICAL
    assert schema["status_code"].role is Role.CATEGORICAL
    assert schema["latency_ms"].role is Role.NUMERIC


def test_real_logs(shared_data):
    hdfs = io.read(shared_data / "loghub" / "HDFS_2k.log_structured.csv")
    schema = Schema.infer(hdfs)
    assert schema.time == "ts"
    assert schema["Content"].role is Role.TEXT
    assert schema["EventId"].role is Role.CATEGORICAL
    assert schema["LineId"].role is Role.IGNORE
    with pytest.warns(io.DataWarning, match="'Timestamp', 'Date' hold timestamps besides the event time 'Time'"):
        bgl = Schema.infer(io.read(shared_data / "loghub" / "BGL_2k.log_structured.csv"))
    assert bgl.time == "Time" and bgl.label == "Label"
    assert bgl["Timestamp"].role is Role.IGNORE  # a second, coarser time column
    assert bgl["Level"].role is Role.CATEGORICAL


def test_python_overrides(payments_small):
    schema = Schema.infer(
        payments_small,
        overrides={"card_number": "entity", "terminal_id": "identifier", "amount": {"role": "numeric"}},
    )
    assert schema.entity == "card_number"
    assert schema["customer_id"].role is Role.IDENTIFIER  # the inferred entity, demoted
    assert schema["terminal_id"].role is Role.IDENTIFIER


def test_yaml_overrides_and_round_trip(tmp_path, payments_small):
    spec = tmp_path / "roles.yaml"
    spec.write_text("entity: terminal_id\ncolumns:\n  channel: {role: identifier, kind: code}\n")
    data = overrides_from_yaml(spec)
    schema = Schema.infer(payments_small, entity=data["entity"], overrides=data["columns"])
    assert schema.entity == "terminal_id" and schema["channel"].role is Role.IDENTIFIER
    schema.to_yaml(tmp_path / "schema.yaml")
    again = Schema.from_yaml(tmp_path / "schema.yaml")
    assert again.to_dict() == schema.to_dict()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("columns:\n  amount: numerical\n", r"columns.amount.role is 'numerical'"),
        ("colums:\n  amount: numeric\n", r"unknown keys \['colums'\]"),
        ("columns:\n  amount: {role: numeric, scale: 2}\n", r"unknown keys \['scale'\]"),
        ("columns:\n  amount: [numeric\n", "not valid YAML"),
    ],
)
def test_bad_schema_files(tmp_path, payments_small, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(StreamsynthError, match=message):
        Schema.from_yaml(path)


def test_override_of_unknown_column(payments_small):
    with pytest.raises(StreamsynthError, match="'amout' is not in the data"):
        Schema.infer(payments_small, overrides={"amout": "numeric"})


def test_sequence_stats(payments_small):
    stats = sequence_stats(payments_small, Schema.infer(payments_small))
    assert stats["events"] == payments_small.height
    assert stats["entities"] == payments_small["customer_id"].n_unique()
    assert stats["events_per_entity_min"] <= stats["events_per_entity_median"] <= stats["events_per_entity_max"]
    assert stats["median_inter_arrival_s"] > 0


def _keyed(entity: str, keys: list[str]) -> pl.DataFrame:
    n = 200
    return pl.DataFrame({
        "ts": pl.datetime_range(datetime(2024, 1, 1), datetime(2024, 1, 1, 3, 19), "1m", time_zone="UTC",
                                eager=True),
        "channel": ["web", "app"] * (n // 2),
        entity: [keys[i % len(keys)] for i in range(n)],
        "amount": [float(i % 17) for i in range(n)],
    })


def test_an_entity_column_named_in_another_language_is_found_by_its_values(tmp_path):
    frame = _keyed("客户", [f"c{i:03d}" for i in range(10)])
    with pytest.warns(io.DataWarning, match=r"taking '客户' as the entity column, for its values: 10 keys"):
        assert Schema.infer(frame).entity == "客户"
    path = tmp_path / "客户.csv"
    frame.write_csv(path)
    with pytest.warns(io.DataWarning, match="'客户'"):
        assert Schema.infer(io.read(path)).entity == "客户"


def test_a_named_entity_wins_over_one_found_by_its_values(recwarn):
    frame = _keyed("客户", [f"c{i:03d}" for i in range(10)]).with_columns(
        pl.Series("customer_id", [f"u{i % 20}" for i in range(200)]))
    assert Schema.infer(frame).entity == "customer_id"
    assert not [w for w in recwarn if "entity column" in str(w.message)]


@pytest.mark.parametrize("keys", [["ios", "android", "web", "tv", "car"], ["E1", "E2", "E3"]])
def test_words_and_a_handful_of_codes_are_not_taken_for_entities(keys):
    assert Schema.infer(_keyed("kunde", keys)).entity is None


def _draws(seed: int, draw) -> list[int]:
    rng = random.Random(seed)
    return [draw(rng) for _ in range(200)]


def _integer_keyed(name: str, values: list[int]) -> pl.DataFrame:
    frame = _keyed("kunde", ["x"] * 3).drop("kunde")
    return frame.with_columns(pl.Series(name, values[: frame.height]))


@pytest.mark.parametrize("keys", [
    _draws(7, lambda r: r.randrange(40)),  # dense ids 0..39, heard at random
    _draws(3, lambda r: 100_000 + 7_919 * r.randrange(25)),  # sparse account numbers
])
def test_integer_keys_are_found_by_their_values(keys):
    with pytest.warns(io.DataWarning, match=r"taking 'kunde' as the entity column"):
        assert Schema.infer(_integer_keyed("kunde", keys)).entity == "kunde"


@pytest.mark.parametrize("values", [
    _draws(5, lambda r: int(abs(r.gauss(12, 3)))),  # a smooth quantity: an hour-like profile
    [i * 37 % 1_000_003 for i in range(200)],  # amounts in cents, each seen once
    [-(i % 30) for i in range(200)],  # negative numbers are never keys
])
def test_integer_quantities_are_not_taken_for_entities(values):
    assert Schema.infer(_integer_keyed("wert", values)).entity is None


def test_an_integer_named_as_a_quantity_is_not_taken_for_an_entity():
    keys = _draws(7, lambda r: r.randrange(40))
    assert Schema.infer(_integer_keyed("item_count", keys)).entity is None
