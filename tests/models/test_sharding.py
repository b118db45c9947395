"""Sharding through the CLI: N `streamsynth sample --shard K/N` processes write disjoint parts whose
union is exactly the unsharded output (same event_ids, same rows), for each kind of source."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from streamsynth.cli import main
from streamsynth.contract import EVENT_ID

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "streamsynth" / "rules" / "examples"
LIBRARY = ROOT / "scenarios" / "library"
TINY_TRANSFORMER = {"n_layer": 1, "n_head": 2, "n_embd": 32, "epochs": 2, "batch_size": 8, "progress": False}


def sample_shards(
    source: str | Path, out: Path, n: int, *args: str, processes: bool = False
) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """The unsharded output and the N shard outputs of `streamsynth sample` (``--shard K/N``).

    With ``processes`` each runs in its own process, as sharded workers do: a split that leaned
    on anything per-process, such as Python's salted ``hash()``, would then disagree. Otherwise
    the CLI is called in this process, which is several times faster.
    """
    out.mkdir(parents=True, exist_ok=True)
    if not processes:
        for name, extra in _runs(n).items():
            code = main(["sample", str(source), "-o", str(out / f"{name}.parquet"), *args, *extra])
            assert code == 0, f"{name}: exit code {code}"
        return _read(out, n)
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "streamsynth", "sample", str(source), "-o", str(out / f"{name}.parquet"),
             *args, *extra],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, extra in _runs(n).items()
    }
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{name}: {stderr[-3000:]}"
    return _read(out, n)


def _runs(n: int) -> dict[str, list[str]]:
    return {"all": []} | {f"shard{k}": ["--shard", f"{k}/{n}"] for k in range(n)}


def _read(out: Path, n: int) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    return pl.read_parquet(out / "all.parquet"), [pl.read_parquet(out / f"shard{k}.parquet") for k in range(n)]


def assert_shards_partition(whole: pl.DataFrame, shards: list[pl.DataFrame], entity: str | None) -> None:
    """Shards are disjoint, time-ordered, non-empty, and together are the unsharded rows."""
    assert whole.height > 0 and whole[EVENT_ID].n_unique() == whole.height
    seen: set[str] = set()
    for k, part in enumerate(shards):
        assert part.height > 0, f"shard {k} is empty: the test would prove nothing"
        assert part.columns == whole.columns
        ids = set(part[EVENT_ID].to_list())
        assert len(ids) == part.height, f"shard {k} repeats event_ids"
        assert not ids & seen, f"shard {k} overlaps an earlier shard"
        seen |= ids
        time = next(c for c, t in part.schema.items() if isinstance(t, pl.Datetime))
        assert part[time].is_sorted(), f"shard {k} is not in event-time order"
    if entity is not None:
        entity_sets = [set(p[entity].to_list()) for p in shards]
        for a in range(len(shards)):
            for b in range(a + 1, len(shards)):
                assert not entity_sets[a] & entity_sets[b], f"shards {a} and {b} share entities"
    union = pl.concat(shards).sort(EVENT_ID)
    assert_frame_equal(union, whole.sort(EVENT_ID))


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory, payments_small) -> Path:
    from streamsynth.models.baseline import BaselineSynthesizer

    path = tmp_path_factory.mktemp("baseline") / "model"
    BaselineSynthesizer(seed=5).fit(payments_small).save(path)
    return path


def test_baseline_shards_partition_the_stream(baseline_dir, tmp_path):
    whole, shards = sample_shards(baseline_dir, tmp_path, 3, "--end", "2024-01-04T00:00:00Z", processes=True)
    assert_shards_partition(whole, shards, entity="customer_id")


@pytest.mark.parametrize("schema", ["payments", "weblogs"])
def test_rules_schema_shards_partition_the_stream(schema, tmp_path):
    whole, shards = sample_shards(RULES / f"{schema}.yaml", tmp_path, 3, "--entities", "400",
                                  "--end", "2024-05-01T06:00:00Z")
    entity = {"payments": "customer_id", "weblogs": "user_id"}[schema]
    assert_shards_partition(whole, shards, entity=entity)


def test_scenario_shards_partition_the_stream_with_its_labels(tmp_path):
    """Drift, latency and error spikes change base rows of the shard that owns them."""
    whole, shards = sample_shards(LIBRARY / "cpu_saturation.yaml", tmp_path, 4)
    assert_shards_partition(whole, shards, entity="host")
    labels = set(whole["label"].to_list())
    assert len(labels - {"normal"}) >= 2, labels


def test_fraud_scenario_shards_partition_the_stream(tmp_path):
    whole, shards = sample_shards(LIBRARY / "card_testing_burst.yaml", tmp_path, 3, "--entities", "300")
    assert_shards_partition(whole, shards, entity="customer_id")
    assert (whole["label"] == "fraud.card_testing").sum() == 200


#: The library's other fraud scenarios and what they inject: with card_testing_burst above, every
#: fraud injector kind, on the demo baseline and on the rule-based payments schema.
FRAUD_LIBRARY = {
    "account_takeover_wave.yaml": ["fraud.account_takeover"],
    "compromised_merchant.yaml": ["fraud.compromised_merchant"],
    "mule_ring.yaml": ["fraud.mule_fan_in", "fraud.mule_fan_out"],
    "rules_payments_fraud_mix.yaml": ["fraud.card_testing", "fraud.velocity_burst", "fraud.account_takeover"],
}


@pytest.mark.parametrize("scenario", sorted(FRAUD_LIBRARY))
def test_fraud_scenarios_shard_exactly_and_their_manifests_add_up(scenario, tmp_path):
    """Each shard picks the same victims and emits the injected rows of the entities it owns (a new
    mule account on one shard only); the shard manifests count every injected row once."""
    whole, shards = sample_shards(LIBRARY / scenario, tmp_path, 3, "--entities", "600",
                                  processes=scenario == "mule_ring.yaml")
    assert_shards_partition(whole, shards, entity="customer_id")
    for label in FRAUD_LIBRARY[scenario]:
        assert (whole["label"] == label).sum() > 0, label
    injecting = [k for k, part in enumerate(shards) if part["scenario_id"].is_not_null().any()]
    assert len(injecting) >= 2, "one shard made every injected row: the split was not exercised"
    manifests = {name: json.loads((tmp_path / f"{name}.parquet.manifest.json").read_text())
                 for name in _runs(len(shards))}
    events = {name: m["model"]["scenario"]["events"] for name, m in manifests.items()}
    for i, event in enumerate(events.pop("all")):
        assert sum(e[i]["rows_added"] for e in events.values()) == event["rows_added"] > 0
        assert {e[i]["templates"] for e in events.values()} == {event["templates"]}
    totals = Counter()
    for name, m in manifests.items():
        if name != "all":
            totals.update(m["counts"]["labels"])
    assert dict(totals) == manifests["all"]["counts"]["labels"]


def test_a_shard_whose_base_ends_before_a_window_still_makes_its_rows(tmp_path):
    """Eight entities on four shards: a shard's base can end before the last takeover wave opens
    (at 16:00); it then makes its victims' rows when its base ends, the same rows as unsharded."""
    whole, shards = sample_shards(LIBRARY / "account_takeover_wave.yaml", tmp_path, 4, "--entities", "8")
    assert_shards_partition(whole, shards, entity="customer_id")
    opened = datetime(2024, 1, 3, 16, tzinfo=UTC)
    base_ends = [part.filter(pl.col("scenario_id").is_null())["ts"].max() for part in shards]
    early = [part for part, end in zip(shards, base_ends, strict=True) if end is None or end < opened]
    assert any(part.filter(pl.col("scenario_id").is_not_null())["ts"].max() >= opened for part in early), \
        "no shard ended before the last wave with rows in it: the case was not exercised"


def test_fraud_scenario_on_a_recorded_file_shards_exactly(payments_small, tmp_path):
    """A data-file base: victims come from the file read unsharded (one window opens with the file,
    so it has no rows before it), and shard processes agree on the new mule account's shard."""
    data = tmp_path / "recorded.parquet"
    payments_small.write_parquet(data)
    spec = tmp_path / "recorded_fraud.yaml"
    spec.write_text(
        f"name: recorded_fraud\nseed: 3\nbase: {{source: {data}, duration: 3d}}\nevents:\n"
        "  - {kind: card_testing, at: 0s, duration: 30m, params: {cards: 4, attempts: 6}}\n"
        "  - {kind: velocity_burst, at: 1d, duration: 1h, params: {entities: 6, transactions: 5}}\n"
        "  - {kind: mule_fan_out, at: 40h, duration: 2h, params: {recipients: 12, mule_id: MULE-7}}\n"
    )
    whole, shards = sample_shards(spec, tmp_path / "out", 3, processes=True)
    assert_shards_partition(whole, shards, entity="customer_id")
    counts = dict(whole["label"].value_counts().iter_rows())
    assert counts["fraud.card_testing"] == 24 and counts["fraud.velocity_burst"] == 30
    assert counts["fraud.mule_fan_out"] == 12
    assert sum(part["customer_id"].is_in(["MULE-7"]).any() for part in shards) == 1


def test_sharded_fraud_replays_verify_against_their_own_manifests(tmp_path, capsys):
    """Two `replay --shard K/2` workers of a fraud scenario: together they send the unsharded
    stream, and each one's output verifies against its own manifest."""
    scenario, population = str(LIBRARY / "mule_ring.yaml"), ["--entities", "600"]
    for k in range(2):
        assert main(["replay", scenario, *population, "--shard", f"{k}/2", "--to", f"file://{tmp_path}/shard{k}.parquet",
                     "--manifest", str(tmp_path / f"shard{k}.json")]) == 0
    assert main(["sample", scenario, *population, "-o", str(tmp_path / "all.parquet")]) == 0
    whole, shards = _read(tmp_path, 2)
    assert_shards_partition(whole, shards, entity="customer_id")
    for k in range(2):
        capsys.readouterr()
        assert main(["verify", "--from", str(tmp_path / f"shard{k}.parquet"),
                     "--manifest", str(tmp_path / f"shard{k}.json")]) == 0
        assert "0 missing" in capsys.readouterr().out


def test_recorded_file_shards_by_entity_hash(payments_small, tmp_path):
    data = tmp_path / "recorded.parquet"
    payments_small.write_parquet(data)
    whole, shards = sample_shards(data, tmp_path / "out", 3, processes=True)
    assert_shards_partition(whole, shards, entity="customer_id")


def test_stream_shards_partition_the_stream(baseline_dir, tmp_path):
    """`stream --shard K/N -o FILE` splits the same way as `sample` (small batches, to cross many)."""
    args = [str(baseline_dir), "--end", "2024-01-03T00:00:00Z", "--batch-size", "97"]
    for name, extra in _runs(2).items():
        assert main(["stream", *args, *extra, "-o", str(tmp_path / f"{name}.parquet")]) == 0
    whole, shards = _read(tmp_path, 2)
    assert_shards_partition(whole, shards, entity="customer_id")


def test_one_shard_of_one_is_the_whole_stream(baseline_dir, tmp_path):
    args = [str(baseline_dir), "--end", "2024-01-02T00:00:00Z"]
    assert main(["sample", *args, "-o", str(tmp_path / "a.parquet")]) == 0
    assert main(["sample", *args, "--shard", "0/1", "-o", str(tmp_path / "b.parquet")]) == 0
    assert_frame_equal(pl.read_parquet(tmp_path / "a.parquet"), pl.read_parquet(tmp_path / "b.parquet"))


@pytest.mark.parametrize("bad", ["3/3", "1", "a/b", "-1/2", "0/0"])
def test_a_bad_shard_is_a_two_line_error(bad, baseline_dir, tmp_path, capsys):
    assert main(["sample", str(baseline_dir), "--shard", bad, "-o", str(tmp_path / "x.parquet")]) == 2
    assert "shard" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def connector_fixtures():
    """tests/connectors/conftest.py (the loopback tansu broker), loaded by path rather than copied."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sharding_connector_fixtures",
                                                  ROOT / "tests" / "connectors" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def kafka_broker():
    broker = connector_fixtures().Broker()  # skips when the tansu binary is not installed
    broker.start()
    yield broker
    broker.stop(kill=True)


def test_sharded_replay_workers_fill_one_topic_with_the_unsharded_stream(baseline_dir, kafka_broker, tmp_path,
                                                                         capsys):
    """Two `replay --shard K/2` processes into one Kafka topic: every event of the unsharded
    stream arrives once, with its label."""
    from streamsynth.connectors import read_back

    end = ["--end", "2024-01-03T00:00:00Z"]
    topic = f"kafka://{kafka_broker.address}/sharded"
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "streamsynth", "replay", str(baseline_dir), "--to", topic, *end,
             "--shard", f"{k}/2", "--manifest", str(tmp_path / f"shard-{k}.json")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for k in range(2)
    ]
    for k, proc in enumerate(workers):
        _, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"shard {k}: {stderr[-3000:]}"
    assert main(["sample", str(baseline_dir), *end, "-o", str(tmp_path / "all.parquet")]) == 0
    expected = pl.read_parquet(tmp_path / "all.parquet").select(EVENT_ID, "label").sort(EVENT_ID)
    received = pl.concat(list(read_back(topic, timeout=10))).select(EVENT_ID, "label").sort(EVENT_ID)
    assert received[EVENT_ID].n_unique() == received.height, "an event arrived twice"
    assert_frame_equal(received, expected)
    for k in range(2):  # each worker's own events are all there; the other's count as unexpected
        capsys.readouterr()
        assert main(["verify", "--from", topic, "--manifest", str(tmp_path / f"shard-{k}.json")]) == 0
        assert "0 missing" in capsys.readouterr().out


@pytest.mark.slow
def test_transformer_shards_partition_the_stream(payments_small, tmp_path):
    from streamsynth.models import create

    customers = payments_small["customer_id"].unique().sort()[:80]
    frame = payments_small.filter(pl.col("customer_id").is_in(customers.implode()))
    model_dir = tmp_path / "transformer"
    create("transformer", seed=2, **TINY_TRANSFORMER).fit(frame).save(model_dir)
    whole, shards = sample_shards(model_dir, tmp_path / "out", 3, "--end", "2024-01-03T00:00:00Z",
                                  processes=True)
    assert_shards_partition(whole, shards, entity="customer_id")


#: Sparse bases (web sessions) need more entities for both shards to see events in the window.
SPARSE_POPULATIONS = {"log_gap_duplicate_replay.yaml": "2000"}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", [p.name for p in sorted(LIBRARY.glob("*.yaml"))])
def test_every_library_scenario_shards_cleanly(scenario, tmp_path):
    """The whole library at a small population, two shards."""
    entities = SPARSE_POPULATIONS.get(scenario, "200")
    whole, shards = sample_shards(LIBRARY / scenario, tmp_path, 2, "--entities", entities)
    assert_shards_partition(whole, shards, entity=None)
