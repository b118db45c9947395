"""Each field kind and distribution of the rules mode: parameters recovered on large samples."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy import stats

from streamsynth.errors import StreamsynthError
from streamsynth.models.rules import RuleSynthesizer
from streamsynth.rules import distributions as D
from streamsynth.schema import Role

N = 100_000


def _model(fields: dict[str, Any], attributes: dict[str, Any] | None = None, **top: Any) -> RuleSynthesizer:
    spec = {
        "name": "t",
        "entity": {"name": "user", "count": 5_000, "attributes": attributes or {}},
        "arrival": {"sessions_per_day": 24},
        "events": {"fields": fields},
        **top,
    }
    return RuleSynthesizer.from_spec(spec)


def _sample(fields: dict[str, Any], n: int = N, **kw: Any) -> pl.DataFrame:
    return _model(fields, **kw).sample(n_events=n)


def test_continuous_distributions_recover_parameters() -> None:
    frame = _sample(
        {
            "nrm": {"distribution": {"kind": "normal", "mean": 10, "std": 2}},
            "lgn": {"distribution": {"kind": "lognormal", "mu": 3, "sigma": 0.5}},
            "uni": {"distribution": {"kind": "uniform", "low": -2, "high": 5}},
            "exp": {"distribution": {"kind": "exponential", "scale": 40}},
        }
    )
    assert frame["nrm"].mean() == pytest.approx(10, abs=0.03)
    assert frame["nrm"].std() == pytest.approx(2, rel=0.02)
    logs = frame["lgn"].log()
    assert logs.mean() == pytest.approx(3, abs=0.01) and logs.std() == pytest.approx(0.5, rel=0.02)
    assert frame["uni"].min() >= -2 and frame["uni"].max() < 5
    assert frame["uni"].mean() == pytest.approx(1.5, abs=0.03)
    assert frame["uni"].var() == pytest.approx(49 / 12, rel=0.03)
    assert frame["exp"].mean() == pytest.approx(40, rel=0.02)
    assert stats.kstest(frame["exp"].to_numpy(), "expon", args=(0, 40)).pvalue > 1e-3
    # independent fields: draws are keyed by field name, so they do not move together
    assert abs(np.corrcoef(frame["nrm"].to_numpy(), frame["exp"].to_numpy())[0, 1]) < 0.02


def test_discrete_distributions_recover_parameters() -> None:
    frame = _sample(
        {
            "small": {"distribution": {"kind": "poisson", "lam": 3.5}},
            "large": {"distribution": {"kind": "poisson", "lam": 200}},
            "flag": {"distribution": {"kind": "bernoulli", "p": 0.1}},
            "rank": {"distribution": {"kind": "zipf", "s": 1.5, "n": 100}},
            "pick": {"distribution": {"kind": "choice", "values": ["a", "b", "c"], "weights": [5, 3, 2]}},
            "fixed": {"distribution": {"kind": "constant", "value": "v1"}},
        }
    )
    assert frame["small"].dtype == pl.Int64
    assert frame["small"].mean() == pytest.approx(3.5, abs=0.03)
    assert frame["small"].var() == pytest.approx(3.5, rel=0.03)
    assert frame["large"].mean() == pytest.approx(200, abs=0.3)
    assert frame["large"].var() == pytest.approx(200, rel=0.05)
    assert frame["flag"].dtype == pl.Boolean and frame["flag"].mean() == pytest.approx(0.1, abs=0.005)
    freq = frame["rank"].value_counts().sort("rank")
    expected = np.arange(1, 101, dtype=float) ** -1.5
    expected /= expected.sum()
    observed = np.zeros(100)
    observed[freq["rank"].to_numpy() - 1] = freq["count"].to_numpy() / frame.height
    assert frame["rank"].min() >= 1 and frame["rank"].max() <= 100
    assert np.abs(observed - expected).max() < 0.006
    shares = frame["pick"].value_counts(normalize=True).sort("pick")["proportion"].to_list()
    assert shares == pytest.approx([0.5, 0.3, 0.2], abs=0.006)
    assert frame["fixed"].unique().to_list() == ["v1"]


def test_poisson_sampler_matches_the_pmf_for_mixed_means() -> None:
    u = np.random.default_rng(0).random(200_000)
    lam = np.where(np.arange(u.size) % 2 == 0, 0.3, 25.0)
    draws = D.poisson(u, lam)
    for mean in (0.3, 25.0):
        sel = draws[lam == mean]
        for k in range(0, 40):
            assert (sel == k).mean() == pytest.approx(stats.poisson.pmf(k, mean), abs=0.005)


def test_zipf_over_values_orders_by_frequency() -> None:
    frame = _sample({"cat": {"distribution": {"kind": "zipf", "s": 1.2, "values": ["x", "y", "z", "w"]}}}, n=40_000)
    counts = frame["cat"].value_counts(sort=True)["cat"].to_list()
    assert counts == ["x", "y", "z", "w"]


def test_parameters_looked_up_by_category_and_by_expression() -> None:
    frame = _sample(
        {
            "category": {"distribution": {"kind": "choice", "values": ["grocery", "travel"]}},
            "amount": {
                "distribution": {
                    "kind": "normal",
                    "mean": {"by": "category", "values": {"grocery": 30, "travel": 500}},
                    "std": 5,
                }
            },
            "channel": {
                "distribution": {
                    "kind": "choice",
                    "values": ["pos", "online"],
                    "weights": {"by": "category", "values": {"travel": [0.1, 0.9]}, "default": [0.8, 0.2]},
                }
            },
            "scaled": {"distribution": {"kind": "normal", "mean": "amount * 2", "std": 0.001}},
        },
        n=60_000,
    )
    means = frame.group_by("category").agg(pl.col("amount").mean()).sort("category")
    assert means["amount"].to_list() == pytest.approx([30, 500], abs=0.2)
    online = frame.group_by("category").agg((pl.col("channel") == "online").mean()).sort("category")
    assert online["channel"].to_list() == pytest.approx([0.2, 0.9], abs=0.01)
    assert (frame["scaled"] - 2 * frame["amount"]).abs().max() < 0.01


def test_expressions_read_fields_attributes_and_context() -> None:
    frame = _sample(
        {
            "base": {"distribution": {"kind": "uniform", "low": 0, "high": 100}},
            "tier": {"expr": "'high' if base >= 50 else 'low'"},
            "label_text": {"expr": "concat(segment, '-', tier)"},
            "scaled": {"expr": "round(base * multiplier, 1)"},
            "bounded": {"expr": "clip(base - 50, -10, 10)"},
            "is_vip": {"expr": "segment in ['gold'] and not (base < 10)"},
            "hour_copy": {"expr": "hour"},
            "mixed": {"expr": "max(base, 90) + min(abs(-3), 2) + sqrt(16) + floor(2.7) + int(1.9)"},
            "jitter": {"expr": "uniform()"},
            "jitter2": {"expr": "uniform()"},
        },
        attributes={
            "segment": {"distribution": {"kind": "choice", "values": ["gold", "basic"]}},
            "multiplier": {"expr": "2.0 if segment == 'gold' else 1.0"},
        },
        n=20_000,
    )
    assert ((frame["base"] >= 50) == (frame["tier"] == "high")).all()
    assert (frame["label_text"] == frame["segment"] + "-" + frame["tier"]).all()
    want = (frame["base"] * pl.Series([2.0 if s == "gold" else 1.0 for s in frame["segment"]])).round(1)
    assert (frame["scaled"] - want).abs().max() < 1e-9
    assert frame["bounded"].min() == -10 and frame["bounded"].max() == 10
    expected_vip = (frame["segment"] == "gold") & (frame["base"] >= 10)
    assert (frame["is_vip"] == expected_vip).all()
    assert (frame["hour_copy"] == frame["ts"].dt.hour().cast(pl.Int64)).all()
    expected_mixed = frame["base"].clip(lower_bound=90) + 2 + 4 + 2 + 1
    assert (frame["mixed"] - expected_mixed).abs().max() < 1e-9
    # each random call in each field is its own stream
    assert frame["jitter"].mean() == pytest.approx(0.5, abs=0.01)
    assert abs(np.corrcoef(frame["jitter"].to_numpy(), frame["jitter2"].to_numpy())[0, 1]) < 0.03


def test_faker_fields_per_event_session_and_entity() -> None:
    model = _model(
        {
            "card": {"faker": "credit_card", "per": "entity"},
            "ip": {"faker": "ipv4", "per": "session"},
            "request": {"faker": "uuid"},
            "session_no": {"expr": "session"},
        },
        attributes={"email": {"faker": "email"}},
        arrival={"sessions_per_day": 24, "session": {"events": {"kind": "poisson", "lam": 4}}},
    )
    frame = model.sample(n_events=30_000)
    per_user = frame.group_by("user").agg(pl.col("card").n_unique(), pl.col("email").n_unique())
    assert per_user["card"].max() == 1 and per_user["email"].max() == 1
    assert frame.select(pl.col("card").n_unique()).item() == frame["user"].n_unique()
    per_session = frame.group_by("session_no").agg(pl.col("ip").n_unique())
    assert per_session["ip"].max() == 1
    assert frame["ip"].n_unique() > 0.9 * frame["session_no"].n_unique()
    assert frame["request"].n_unique() == frame.height
    assert model.schema["card"].role is Role.IDENTIFIER and model.schema["card"].kind == "credit_card"


def test_round_clip_dtype_output_and_roles() -> None:
    model = _model(
        {
            "amount": {"distribution": {"kind": "lognormal", "mu": 3, "sigma": 1}, "round": 2, "clip": [1, 100]},
            "count": {"distribution": {"kind": "normal", "mean": 5, "std": 1}, "dtype": "int"},
            "status": {"distribution": {"kind": "choice", "values": [200, 404, 500]}},
            "hidden": {"distribution": {"kind": "normal"}, "output": False},
            "uses_hidden": {"expr": "hidden > 0"},
            "note": {"expr": "'x'", "role": "text"},
        }
    )
    frame = model.sample(n_events=5_000)
    assert frame["amount"].min() >= 1 and frame["amount"].max() <= 100
    assert ((frame["amount"] * 100).round(6) % 1 == 0).all()
    assert frame["count"].dtype == pl.Int64
    assert "hidden" not in frame.columns and "hidden" not in model.schema.names
    assert frame["uses_hidden"].mean() == pytest.approx(0.5, abs=0.03)
    schema = model.schema
    assert schema["status"].role is Role.CATEGORICAL and frame["status"].dtype == pl.Int64
    assert schema["amount"].role is Role.NUMERIC
    assert schema["uses_hidden"].role is Role.BOOLEAN
    assert schema["note"].role is Role.TEXT
    assert schema.entity == "user" and schema.time == "ts"


def test_expression_type_errors_are_caught_when_loading() -> None:
    with pytest.raises(StreamsynthError, match=r"events\.fields\.bad\.expr: the expression does not type-check"):
        _model({"s": {"distribution": {"kind": "choice", "values": ["a"]}}, "bad": {"expr": "s * 2.5"}})
    with pytest.raises(StreamsynthError, match=r"events\.fields\.bad\.expr: .*not allowed"):
        _model({"bad": {"expr": "[x for x in y]"}})
    with pytest.raises(StreamsynthError, match="noise\\(\\) needs an event time"):
        _model({}, attributes={"a": {"expr": "noise(60)"}})
