"""Identifier safety: no value of an identifier-role training column (card numbers, transaction
ids, emails, IPs) appears anywhere in a model's output, neither as a cell nor inside text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from streamsynth.datasets import payments
from streamsynth.models import create
from streamsynth.schema import Role, Schema

MIN_LENGTH = 6  # shorter values ("200", "DE") are not identifying and occur by chance


def identifier_values(frame: pl.DataFrame, schema: Schema) -> list[str]:
    values: set[str] = set()
    for col in schema.by_role(Role.IDENTIFIER):
        values |= set(frame[col.name].drop_nulls().cast(pl.String).to_list())
    return sorted(v for v in values if len(v) >= MIN_LENGTH)


def leaks(output: pl.DataFrame, values: list[str]) -> dict[str, list[str]]:
    """Per output column, the training identifier values found in it (whole cell or substring)."""
    found: dict[str, list[str]] = {}
    for name in output.columns:
        cells = output[name].cast(pl.String).drop_nulls()
        hit = cells.filter(cells.str.contains_any(values))
        if hit.len():
            found[name] = [v for v in values if hit.str.contains(v, literal=True).any()][:5]
    return found


def weblog(n: int = 3000, seed: int = 0) -> pl.DataFrame:
    """Web server events per host: request ids, client IPs and user emails, and a log message
    that embeds the IP and the email, as real log lines do."""
    rng = np.random.default_rng(seed)
    ips = [f"10.{a}.{b}.{c}" for a, b, c in rng.integers(1, 255, (300, 3))]
    users = [f"user{i:03d}@corp-example.org" for i in range(80)]
    ip = [ips[i] for i in rng.integers(0, len(ips), n)]
    user = [users[i] for i in rng.integers(0, len(users), n)]
    status = rng.choice(["200", "404", "500"], n, p=[0.8, 0.15, 0.05])
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame({
        "ts": [start + timedelta(seconds=int(s)) for s in np.sort(rng.integers(0, 3 * 86_400, n))],
        "host": [f"web-{h:02d}.prod.corp-example.org" for h in rng.integers(0, 40, n)],
        "request_id": [f"req-{i:08x}" for i in rng.permutation(10**6)[:n]],
        "client_ip": ip,
        "user_email": user,
        "latency_ms": rng.gamma(2.0, 30.0, n),
        "status": status,
        "message": [
            f"GET /api/v1/items from {a} user {u} status {s}" for a, u, s in zip(ip, user, status, strict=True)
        ],
    })


def weblog_schema(frame: pl.DataFrame) -> Schema:
    # 300 IPs over 3000 rows infer as categorical; a user marks them as identifiers
    return Schema.infer(frame, overrides={"client_ip": {"role": "identifier", "kind": "ipv4"}})


def test_baseline_payments_emit_no_training_identifier() -> None:
    frame = payments(n_customers=300, n_days=7, seed=2)
    schema = Schema.infer(frame)
    assert {c.name for c in schema.by_role(Role.IDENTIFIER)} == {"tx_id", "card_number"}
    values = identifier_values(frame, schema)
    assert len(values) > 5000
    out = create("baseline", seed=0).fit(frame, schema).sample(n_events=20_000)
    assert leaks(out, values) == {}
    assert leaks(frame.head(50), values)  # the check itself finds what is there


def test_baseline_identifier_columns_are_faked() -> None:
    frame = weblog()
    schema = weblog_schema(frame)
    assert {c.name for c in schema.by_role(Role.IDENTIFIER)} == {"request_id", "client_ip", "user_email"}
    values = identifier_values(frame, schema)
    out = create("baseline", seed=0).fit(frame, schema).sample(n_events=10_000)
    found = leaks(out.drop("message"), values)
    assert found == {}, f"training identifiers emitted: {found}"


def test_baseline_free_text_carries_no_training_identifier() -> None:
    frame = weblog()
    schema = weblog_schema(frame)
    values = identifier_values(frame, schema)
    out = create("baseline", seed=0).fit(frame, schema).sample(n_events=10_000)
    assert leaks(out.select("message"), values) == {}


def test_rules_mode_emits_no_identifier_of_real_data(tmp_path) -> None:
    """The rules mode never sees data; its faked cards and ids must not collide with real ones."""
    from streamsynth.cli.rules import example_text
    from streamsynth.models.rules import RuleSynthesizer

    path = tmp_path / "payments.yaml"
    path.write_text(example_text("payments"))
    out = RuleSynthesizer.from_file(path).sample(n_events=20_000)
    real = payments(n_customers=300, n_days=7, seed=0)
    values = identifier_values(real, Schema.infer(real))
    assert leaks(out, values) == {}


@pytest.mark.slow
def test_transformer_emits_no_training_identifier() -> None:
    frame = weblog(n=1500)
    schema = weblog_schema(frame)
    values = identifier_values(frame, schema)
    model = create("transformer", seed=0, epochs=1, n_layer=1, n_embd=32, n_head=2, progress=False)
    out = model.fit(frame, schema).sample(n_events=3000)
    assert leaks(out, values) == {}


def test_identifier_like_columns_infer_as_identifiers() -> None:
    frame = weblog()
    schema = Schema.infer(frame)
    values = sorted(v for v in frame["client_ip"].unique().to_list() if len(v) >= MIN_LENGTH)
    out = create("baseline", seed=0).fit(frame, schema).sample(n_events=10_000)
    assert leaks(out.drop("message"), values) == {}
