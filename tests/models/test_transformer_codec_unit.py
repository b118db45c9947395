"""Unit tests of the transformer's event codec (:mod:`streamsynth.models.transformer_codec`) on a
tiny table: roles, sub-field sizes, and the encode -> decode round trip of tokens and times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from streamsynth.errors import StreamsynthError
from streamsynth.models.transformer_codec import (
    GAP,
    OFFSET_CLASSES,
    EventCodec,
    class_offset,
    offset_class,
)
from streamsynth.schema import Schema

START = datetime(2024, 5, 1, tzinfo=UTC)
SPAN = 86_400.0
N_ENTITIES = 12


def tiny_frame() -> pl.DataFrame:
    """12 users with 3..5 events each over a day, whole seconds; country and is_fraud are per user."""
    rng = np.random.default_rng(0)
    rows = []
    for e in range(N_ENTITIES):
        n = 3 + e % 3
        seconds = np.sort(rng.choice(86_000, n, replace=False))
        for j in range(n):
            rows.append({
                "user": f"U{e:03d}", "ts": START + timedelta(seconds=int(seconds[j])),
                "channel": ["pos", "web", "app"][(e + j) % 3], "country": ["DE", "NL"][e % 2],
                "amount": float(np.round(rng.lognormal(3, 1), 2)), "is_fraud": e == 5,
            })
    return pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC"))).sort("user", "ts")


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return tiny_frame()


@pytest.fixture(scope="module")
def codec(frame) -> EventCodec:
    schema = Schema.infer(frame, time="ts", entity="user")
    return EventCodec().fit(frame, schema, START, SPAN)


@pytest.fixture(scope="module")
def tokens(codec, frame) -> dict[str, np.ndarray]:
    return codec.encode(frame, START, SPAN)


def test_roles_event_fields_and_entity_attributes(codec):
    by_name = {f.name: f for f in codec.fields}
    assert codec.time == "ts" and codec.entity == "user"
    assert by_name[GAP].scope == "event" and by_name[GAP].index == 0 and by_name[GAP].kind == "gap"
    assert (by_name["channel"].scope, by_name["channel"].kind) == ("event", "categorical")
    assert (by_name["amount"].scope, by_name["amount"].kind) == ("event", "numeric")
    assert by_name["country"].scope == "attr"  # one value per user
    assert by_name["is_fraud"].scope == "attr"
    assert codec.resolution_us == 1_000_000  # every timestamp is a whole second
    assert codec.entity_prefix == "U" and codec.entity_width == 3


def test_sizes_match_the_fields(codec):
    for scope, sizes in (("event", codec.event_sizes), ("attr", codec.attr_sizes)):
        index = 0
        for f in codec.scope_fields(scope):
            assert f.index == index  # sub-fields packed one after another
            enc = codec.encoders[f.name]
            if f.kind == "categorical":
                assert sizes[f.index] == enc.size
                index += 1
            else:
                assert sizes[f.index: f.index + 2] == [enc.size + 1, OFFSET_CLASSES + 1]
                index += 2
        assert index == len(sizes)
    assert codec.eos == codec.event_sizes[0] - 1
    assert codec.encoders["channel"].size == 3 and codec.encoders["country"].size == 2


def test_encode_shapes_and_token_ranges(codec, tokens, frame):
    events, attrs, offsets = tokens["events"], tokens["attrs"], tokens["offsets"]
    assert events.shape == (frame.height, len(codec.event_sizes))
    assert attrs.shape == (N_ENTITIES, len(codec.attr_sizes))
    assert offsets.tolist() == [0, *np.cumsum(frame.group_by("user", maintain_order=True).len()["len"])]
    assert (events >= 0).all() and (events < np.array(codec.event_sizes)).all()
    assert (attrs >= 0).all() and (attrs < np.array(codec.attr_sizes)).all()
    # no event is encoded as end-of-sequence, nor any amount as null
    assert (events[:, 0] != codec.eos).all()
    amount = codec.scope_fields("event")[-1]
    assert amount.name == "amount" and (events[:, amount.index] < codec.encoders["amount"].size).all()
    want_times = (frame["ts"] - START).dt.total_seconds().to_numpy().astype(float)
    np.testing.assert_array_equal(tokens["times"], want_times)
    assert tokens["log_survival"].shape == (N_ENTITIES, codec.event_sizes[0])


def decode(codec, tokens, frame, seed: int = 7) -> pl.DataFrame:
    offsets = tokens["offsets"]
    counts = np.diff(offsets)
    entity_no = np.repeat(np.arange(N_ENTITIES), counts)
    seq = np.arange(frame.height) - offsets[entity_no]
    time_us = (frame["ts"].dt.epoch("us")).to_numpy()
    return codec.decode(entity_no=entity_no, seq=seq, time_us=time_us, events=tokens["events"],
                        attrs=tokens["attrs"][entity_no], seed=seed, exact={})


def test_decode_round_trip(codec, tokens, frame):
    out = decode(codec, tokens, frame)
    assert out.height == frame.height
    assert out.columns[:3] == ["event_id", "ts", "user"]
    assert set(frame.columns) <= set(out.columns)
    assert out["ts"].to_list() == frame["ts"].to_list()  # times exactly (whole seconds)
    assert out["channel"].to_list() == frame["channel"].to_list()
    assert out["country"].to_list() == frame["country"].to_list()
    assert out["is_fraud"].to_list() == frame["is_fraud"].to_list()
    assert out["is_fraud"].dtype == pl.Boolean and out["amount"].dtype == pl.Float64
    # numbers come back in the same bin and offset class as they went in
    enc = codec.encoders["amount"]
    bins_in, off_in = enc.encode(frame["amount"].to_numpy())
    bins_out, off_out = enc.encode(out["amount"].to_numpy())
    assert (bins_out == bins_in).mean() > 0.95
    assert (np.abs(out["amount"].to_numpy() - frame["amount"].to_numpy()) / frame["amount"].to_numpy()).max() < 0.5
    # new entity ids in the learned shape (U and three digits), one per entity number
    assert codec.entity_shape is not None
    assert out["user"].str.contains(r"^U\d{3}$").all()
    per_entity = out.with_columns(no=pl.Series(np.repeat(np.arange(N_ENTITIES), np.diff(tokens["offsets"]))))
    assert per_entity.group_by("no").agg(pl.col("user").n_unique())["user"].max() == 1
    assert out["user"].n_unique() == N_ENTITIES
    assert out["event_id"].n_unique() == frame.height


def test_decode_is_a_function_of_the_seed(codec, tokens, frame):
    a, b = decode(codec, tokens, frame, seed=7), decode(codec, tokens, frame, seed=7)
    assert a.equals(b)
    assert not decode(codec, tokens, frame, seed=8)["event_id"].equals(a["event_id"])


def test_json_round_trip(codec, tokens, frame):
    restored = EventCodec.from_json(json.loads(json.dumps(codec.to_json())))
    assert restored.event_sizes == codec.event_sizes and restored.attr_sizes == codec.attr_sizes
    assert [f.name for f in restored.fields] == [f.name for f in codec.fields]
    assert decode(restored, tokens, frame).equals(decode(codec, tokens, frame))
    again = restored.encode(frame, START, SPAN)
    for key in ("events", "attrs", "offsets"):
        np.testing.assert_array_equal(again[key], tokens[key])


def test_forced_conditions(codec):
    ev, at, exact = codec.forced({"channel": "web", "country": "NL"})
    by_name = {f.name: f for f in codec.fields}
    assert ev[by_name["channel"].index] == codec.encoders["channel"].values.index("web")
    assert at[by_name["country"].index] == codec.encoders["country"].values.index("NL")
    assert exact == {"channel": "web", "country": "NL"}
    assert (ev[: by_name["channel"].index] == -1).all()
    with pytest.raises(StreamsynthError, match="no such value"):
        codec.forced({"channel": "fax"})
    with pytest.raises(StreamsynthError, match="does not learn column"):
        codec.forced({"nope": 1})
    with pytest.raises(StreamsynthError, match="is not a number"):
        codec.forced({"amount": "lots"})


def test_fit_needs_an_entity(frame):
    schema = Schema.infer(frame.drop("user"), time="ts")
    with pytest.raises(StreamsynthError, match="needs an entity column"):
        EventCodec().fit(frame.drop("user"), schema, START, SPAN)


def test_offset_classes_invert():
    offsets = np.array([0.0, 1e-9, 0.124, 0.125, 0.5, 0.999999])
    cls = offset_class(offsets)
    assert cls.tolist() == [0, 1, 1, 2, 5, 8]
    back = class_offset(cls, np.full(cls.shape, 0.5))
    assert back[0] == 0.0
    np.testing.assert_array_equal(offset_class(back[1:]), cls[1:])  # the middle of a class is in it


def test_a_null_is_never_drawn_for_a_column_that_had_none(frame):
    schema = Schema.infer(frame, time="ts", entity="user")
    codec = EventCodec().fit(frame, schema, START, SPAN)
    amount = next(f for f in codec.fields if f.name == "amount")
    never = codec.never_drawn()
    assert never[amount.scope][amount.index] == codec.encoders["amount"].size  # its null class
    assert never[amount.scope][amount.index + 1] == -1
    web = pl.col("channel") == "web"
    holed = frame.with_columns(pl.when(web).then(None).otherwise(pl.col("amount")).alias("amount"))
    codec = EventCodec().fit(holed, Schema.infer(holed, time="ts", entity="user"), START, SPAN)
    assert codec.never_drawn()["event"][amount.index] == -1
    old = codec.to_json()
    old.pop("no_nulls")
    assert set(EventCodec.from_json(old).never_drawn()["event"]) == {-1}  # models saved before
