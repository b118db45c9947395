"""Scenario injection overhead: base events/s through a busy scenario vs the bare base stream.

The base is the demo baseline (saved once, loaded through the pipeline like any model); the
busy scenario has 14 events of every kind spread over the run, several overlapping, with
fraud templates drawn from the model. Both runs are timed alternately (medians), in one process.
Run: python benchmarks/bench_scenarios.py [--repeats 3] [--entities 20000] [--days 6]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_seconds, print_table  # noqa: E402

from streamsynth.pipeline import demo_model, open_scenario_run, open_source  # noqa: E402

START = datetime(2024, 1, 2, tzinfo=UTC)


def busy_events(days: int) -> list[dict]:
    """Fourteen events spread over the run; the long ones act on most batches."""
    h = days * 24
    return [
        {"kind": "drift", "at": "0s", "duration": f"{h}h", "targets": {"share": 0.3},
         "params": {"column": "amount", "mode": "scale", "amount": 1.5}},
        {"kind": "duplicate_events", "at": "1h", "duration": f"{h - 2}h", "targets": {"share": 0.02},
         "params": {"delay": "5m"}},
        {"kind": "out_of_order", "at": "2h", "duration": f"{h - 4}h", "targets": {"share": 0.02}},
        {"kind": "traffic_surge", "at": f"{h // 3}h", "duration": "6h", "params": {"factor": 2}},
        {"kind": "dropout", "at": f"{h // 2}h", "duration": "30m"},
        {"kind": "card_testing", "at": "10h", "duration": "30m", "params": {"cards": 10}},
        {"kind": "card_testing", "at": f"{h // 2 + 5}h", "duration": "30m", "params": {"cards": 10}},
        {"kind": "account_takeover", "at": "20h", "duration": "2h"},
        {"kind": "velocity_burst", "at": "30h", "duration": "1h"},
        {"kind": "mule_fan_in", "at": "40h", "duration": "2h", "params": {"mule_id": "M1"}},
        {"kind": "mule_fan_out", "at": "43h", "duration": "2h", "params": {"mule_id": "M1"}},
        {"kind": "compromised_merchant", "at": "50h", "duration": "3h"},
        {"kind": "velocity_burst", "at": f"{h - 10}h", "duration": "1h"},
        {"kind": "account_takeover", "at": f"{h - 20}h", "duration": "2h"},
    ]


def consume(stream) -> int:
    return sum(batch.height for batch in stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--entities", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-scenarios-"))
    model_dir = demo_model(seed=0).save(work / "model")
    end = START + timedelta(days=args.days)
    spec = {
        "name": "busy", "seed": 1,
        "base": {"source": str(model_dir), "entities": args.entities, "start": START.isoformat(),
                 "duration": f"{args.days}d", "batch_size": args.batch_size},
        "events": busy_events(args.days),
    }
    spec_path = work / "busy.yaml"
    spec_path.write_text(yaml.safe_dump(spec))

    def base() -> int:
        src = open_source(model_dir, start=START, end=end, n_entities=args.entities, batch_size=args.batch_size)
        return consume(src.stream)

    counts = {}

    def with_scenario() -> int:
        run = open_scenario_run(spec_path)
        counts["out"] = consume(run.stream)
        counts["report"] = run.report
        return counts["out"]

    n_base = base()
    base_times, scen_times = [], []
    for _ in range(args.repeats):  # alternate, so both see the same background load
        base_times += median_seconds(base, repeats=1, warmup=0)[1]
        scen_times += median_seconds(with_scenario, repeats=1, warmup=0)[1]
    base_s, scen_s = sorted(base_times)[len(base_times) // 2], sorted(scen_times)[len(scen_times) // 2]
    events = counts["report"]["events"]
    added = sum(e["rows_added"] for e in events)
    changed = sum(e["rows_changed"] for e in events)
    removed = sum(e["rows_removed"] for e in events)
    rows = [
        ["base only", f"{n_base:,}", f"{n_base:,}", f"{base_s:.2f}", f"{n_base / base_s:,.0f}", "1.00"],
        ["busy scenario", f"{n_base:,}", f"{counts['out']:,}", f"{scen_s:.2f}", f"{n_base / scen_s:,.0f}",
         f"{base_s / scen_s:.2f}"],
    ]
    print_table(
        f"injection overhead: demo baseline, {args.entities:,} entities x {args.days} d, batch "
        f"{args.batch_size:,}; {len(events)} events: +{added:,} added, {changed:,} changed, "
        f"{removed:,} removed (median of {args.repeats})",
        ["run", "base events", "output events", "seconds", "base events/s", "ratio"],
        rows,
    )


if __name__ == "__main__":
    main()
