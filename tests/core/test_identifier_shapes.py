"""Learned identifier shapes: synthetic ids keep the real ones' format (prefix, length, zero
padding, counters, per-position characters) and never equal a real value."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from streamsynth.identifiers import Shape, generate, learn_shape
from streamsynth.models import load_model
from streamsynth.models.baseline import BaselineSynthesizer
from streamsynth.schema import Role, Schema

START = datetime(2024, 3, 1, tzinfo=UTC)
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def transactions(n: int = 1500, seed: int = 0) -> pl.DataFrame:
    """Payments of 60 customers with scattered ids C000825-style, sequential TX ids, a random
    base-36 reference per event and a zero-padded branch code per customer."""
    rng = np.random.default_rng(seed)
    customers = [f"C{c:06d}" for c in rng.choice(10**6, 60, replace=False)]
    branches = [f"{b:05d}" for b in rng.choice(3000, 60, replace=False)]
    who = rng.integers(0, 60, n)
    seconds = np.sort(rng.integers(0, 7 * 86_400, n))
    return pl.DataFrame({
        "tx_id": [f"TX{i:010d}" for i in range(n)],
        "ts": [START - timedelta(days=8) + timedelta(seconds=int(s)) for s in seconds],
        "customer_id": [customers[i] for i in who],
        "branch": [branches[i] for i in who],
        "reference": ["".join(rng.choice(list(_B36), 10)) for _ in range(n)],
        "amount": rng.gamma(2.0, 20.0, n),
    })


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    frame = transactions()
    schema = Schema.infer(frame, overrides={"branch": "identifier"})
    model = BaselineSynthesizer(seed=5).fit(frame, schema)
    path = tmp_path_factory.mktemp("model") / "m"
    model.save(path)
    return frame, schema, model, path


def test_baseline_keeps_each_identifier_shape_and_copies_none(fitted):
    frame, schema, model, _ = fitted
    assert schema["tx_id"].role is Role.IDENTIFIER and schema.entity == "customer_id"
    out = model.sample(n_events=4000, start=START)
    shapes = {
        "tx_id": r"TX\d{10}",
        "customer_id": r"C\d{6}",
        "branch": r"\d{5}",
        "reference": r"[0-9A-Z]{10}",
    }
    for name, pattern in shapes.items():
        values = out[name].drop_nulls()
        assert values.len() == out.height, name
        assert values.str.contains(f"^{pattern}$").all(), (name, values.head(3).to_list())
        assert not values.is_in(frame[name].implode()).any(), name  # never a real value
    # Per-event ids stay unique; sequential ones continue past the real maximum.
    assert out["tx_id"].n_unique() == out.height
    assert out["tx_id"].min() > frame["tx_id"].max()
    assert out["reference"].n_unique() == out.height
    # An entity's constant attribute stays constant, and entities stay apart.
    per = out.group_by("customer_id").agg(pl.col("branch").n_unique())
    assert (per["branch"] == 1).all()
    assert out.group_by("branch").agg(pl.col("customer_id").n_unique())["customer_id"].max() == 1


def test_shapes_travel_with_the_saved_model_as_json(fitted):
    _, _, model, path = fitted
    config = json.loads((path / "config.json").read_text())
    assert "TX" in json.dumps(config)  # the learned prefix is in the JSON config
    loaded = load_model(path)
    a = model.sample(n_events=500, start=START)
    b = loaded.sample(n_events=500, start=START)
    assert a.equals(b)


def test_models_saved_before_shapes_load_and_generate_as_before(fitted, tmp_path):
    frame, _, _, path = fitted
    old = tmp_path / "old"
    old.mkdir()
    for f in path.iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    config = json.loads((old / "config.json").read_text())
    text = json.dumps(config)
    assert '"shape"' in text

    def strip(node):
        if isinstance(node, dict):
            node.pop("shape", None)
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    strip(config)
    config["config"]["entity_format"] = {"prefix": "C", "width": 6}  # what fit wrote before shapes
    (old / "config.json").write_text(json.dumps(config))
    (old / "checksums.sha256").unlink()  # models saved before shapes had no checksums either
    out = load_model(old).sample(n_events=300, start=START)
    # Today's formats: ten base-36 characters for codes, the training prefix + "S" for entities.
    assert out["tx_id"].str.contains(r"^[0-9A-Z]{10}$").all()
    assert out["customer_id"].str.starts_with("CS").all()
    assert not out["tx_id"].is_in(frame["tx_id"].implode()).any()


@pytest.mark.parametrize(
    "values, pattern",
    [
        ([f"ORD-{i:07d}" for i in range(5, 400)], r"ORD-\d{7}"),
        ([f"req-{i:016x}" for i in np.random.default_rng(1).integers(0, 2**62, 300)], r"req-[0-9a-f]{16}"),
        ([f"u{i}" for i in range(10, 90)], r"u\d+"),
    ],
)
def test_generated_values_match_the_learned_shape(values, pattern):
    shape = learn_shape(pl.Series(values))
    assert shape is not None
    shape = Shape.from_json(json.loads(json.dumps(shape.to_json())))
    out = generate("code", np.arange(2000), seed=3, shape=shape)
    assert out.str.contains(f"^{pattern}$").all(), out.head(3).to_list()
    assert out.n_unique() == 2000
    assert not out.is_in(values).any()


def test_a_full_counter_grows_a_digit_instead_of_repeating_a_real_id():
    values = [f"{i:03d}" for i in range(1000)]
    out = generate("code", np.arange(50), seed=0, shape=learn_shape(pl.Series(values)))
    assert out.n_unique() == 50 and not out.is_in(values).any()
    assert re.fullmatch(r"\d{4}", out[0])


@pytest.mark.parametrize(
    "values",
    [["a", "bb", "ccc", "dddd", "e", "ff"], [f"{i:04d}" for i in range(3)], [f"X{i:02d}Y" for i in range(99)]],
)
def test_values_without_a_safe_shape_fall_back_to_the_kind(values):
    # Varying lengths, too few values, or a space so small that random draws would hit real ids.
    assert learn_shape(pl.Series(values)) is None


def test_transformer_codec_keeps_shapes_and_loads_codecs_saved_before_them():
    from streamsynth.models.transformer_codec import EventCodec

    frame = transactions(600).sort("customer_id", "ts")
    schema = Schema.infer(frame, overrides={"branch": "identifier"})
    codec = EventCodec().fit(frame, schema, frame["ts"].min(), 7 * 86_400.0)
    n = 400
    entity_no, seq = np.arange(n) % 40, np.arange(n) // 40
    tokens = {
        "entity_no": entity_no, "seq": seq, "time_us": np.arange(n, dtype=np.int64) * 1_000_000 + 1_700_000_000_000_000,
        "events": np.zeros((n, len(codec.event_sizes)), dtype=np.int64),
        "attrs": np.zeros((n, len(codec.attr_sizes)), dtype=np.int64),
    }
    restored = EventCodec.from_json(json.loads(json.dumps(codec.to_json())))
    out = restored.decode(**tokens, seed=2, exact={})
    assert out.equals(codec.decode(**tokens, seed=2, exact={}))
    for name, pattern in {"tx_id": r"TX\d{10}", "customer_id": r"C\d{6}", "reference": r"[0-9A-Z]{10}"}.items():
        assert out[name].str.contains(f"^{pattern}$").all(), (name, out[name].head(3).to_list())
        assert not out[name].is_in(frame[name].implode()).any(), name
    assert out["tx_id"].n_unique() == n and out["customer_id"].n_unique() == 40
    # A codec saved before shapes: no entity_shape, idents without a shape.
    old = codec.to_json()
    del old["entity_shape"]
    for spec in old["idents"]:
        del spec["shape"]
    before = EventCodec.from_json(old).decode(**tokens, seed=2, exact={})
    assert before["customer_id"].str.starts_with("CS").all()
    assert before["tx_id"].str.contains(r"^[0-9A-Z]{10}$").all()


def test_ids_of_several_lengths_keep_their_templates_and_meet_no_real_one():
    # US tail numbers: N, one to four digits (never a leading zero), up to two letters
    rng = np.random.default_rng(4)
    letters = list("ABCDEFGHJKLMNPRSTUVWXYZ")
    values = sorted({f"N{rng.integers(1, 9999)}" + "".join(rng.choice(letters, rng.integers(0, 3)))
                     for _ in range(800)})
    shape = Shape.from_json(json.loads(json.dumps(learn_shape(pl.Series(values)).to_json())))
    assert shape.body == "pattern"
    out = generate("code", np.arange(400), seed=2, shape=shape)
    assert out.n_unique() == 400 and not out.is_in(values).any()
    # more than the free ranges hold: still distinct
    assert generate("code", np.arange(20_000), seed=2, shape=shape).n_unique() == 20_000
    assert out.str.contains(r"^N[1-9]\d{0,3}[A-Z]{0,2}$").all(), out.head(5).to_list()
    templates = {re.sub(r"\d", "9", re.sub(r"[A-Z]", "A", v)) for v in values}
    made = pl.Series(out).str.replace_all(r"\d", "9").str.replace_all(r"[A-Z]", "A")
    assert set(made.unique().to_list()) <= templates and made.n_unique() >= 3


def test_the_entity_column_keeps_its_shape(tmp_path):
    import warnings

    from streamsynth.datasets.flights import flights

    frame = flights(n_aircraft=120, days=3, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BaselineSynthesizer().fit(frame)
    tails = model.sample(n_events=2000)["tail_number"]
    assert tails.str.contains(r"^N[1-9]\d{0,3}[A-Z]{0,2}$").all(), tails.head(3).to_list()
    assert not tails.is_in(frame["tail_number"].implode()).any()
