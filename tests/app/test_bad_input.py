"""Bad input across the whole command line: exit code 2, one line naming the input, a hint.

One table: each case is the arguments a user might type and the text that the error line must
hold (the input it names). Errors the tool raises print ``error: ...`` and ``  hint: ...``
and nothing after; click's usage errors print the usage line, ``Try '... --help'`` and
``Error: ...``. None prints a traceback. The cases run through ``streamsynth.cli.main`` in this
process (stderr captured), since 60 interpreter starts would take a minute on 2 cores;
tests/app/test_cli_usage.py runs the usage errors through a real subprocess.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from streamsynth.cli import main

# (id, arguments split at spaces, text the error line must contain); {tmp} is a scratch folder with bad files,
# {model} a fitted baseline, {csv} its training data, {out} {tmp}/o.parquet. Usage errors (click) are
# marked USAGE.
USAGE = "usage"
CASES: list[tuple[str, str, str] | tuple[str, str, str, str]] = [
    # nothing lost, nothing silently wrong (issue 29): checked before anything is written
    ("condition on an unseen category", "sample {model} -c merchant_category=spaceship -o {out}",
     "never saw that value of merchant_category"),
    ("condition boolean spelled maybe", "sample {model} -c is_fraud=maybe -o {out}", "is_fraud is a true/false column"),
    ("condition boolean spelled t", "sample {model} -c is_fraud=t -o {out}", "is_fraud is a true/false column"),
    ("condition out of the learned range", "sample {model} -c amount=1e12 -o {out}",
     "outside the range the baseline model learned"),
    ("end before start", "sample {model} --start 2024-03-02 --end 2024-03-01 -o {out}", "is not after the start"),
    ("start before 1678", "sample {model} --start 1500-01-01 -o {out}", "outside the times a stream can hold"),
    ("one-row training file", "fit {tmp}/one.csv -o {tmp}/m1", "too little data to learn from"),
    ("bit-flipped weights", "sample {tmp}/flipped_model -o {out}", "is damaged"),
    ("fit over a folder of other files", "fit {csv} -o {tmp}/nodata", "holds files that are not a model's"),
    ("output under a file", "sample {model} -n 5 -o {tmp}/empty.csv/o.parquet", "a part of the path is a file"),
    # files and columns
    ("missing file", "inspect {tmp}/missing.csv", "missing.csv"),
    ("empty file", "inspect {tmp}/empty.csv", "empty.csv is empty"),
    ("folder without data", "inspect {tmp}/nodata", "holds no data files"),
    ("a model where data belongs", "inspect {model}", "is a model directory, not data"),
    ("unknown transformer preset", "fit {csv} -o {tmp}/x -m transformer --preset huge", "unknown transformer preset"),
    ("unparseable timestamp", "inspect {tmp}/ts.csv", "'yesterday'"),
    ("implausible year", "inspect {tmp}/year17.csv", "reads as year 17"),
    ("a device, not a data file", "fit /dev/null -o {tmp}/x", "neither a data file nor a directory"),
    ("misnamed time column", "fit {tmp}/ts.csv -o {tmp}/x --time timestmp", "'timestmp'"),
    ("misnamed entity column", "fit {csv} -o {tmp}/x --entity custmer_id", "custmer_id"),
    ("no time column to fit", "fit {tmp}/notime.csv -o {tmp}/x", "event-time column"),
    ("no time column to replay", "sample {tmp}/notime.csv -o {out}", "notime.csv"),
    ("missing schema file", "fit {csv} -o {tmp}/x --schema {tmp}/roles.yaml", "roles.yaml"),
    ("bad output format", "sample {model} -n 5 -o {tmp}/out.xlsx", "out.xlsx"),
    # model kinds and options
    ("unknown model kind", "fit {csv} -o {tmp}/x --model gpt", "unknown model 'gpt'"),
    ("unknown kind listed", "models gpt", "unknown model 'gpt'"),
    ("option without =", "fit {csv} -o {tmp}/x --option epochs", "'epochs' is not KEY=VALUE"),
    ("unknown option", "fit {csv} -o {tmp}/x -m transformer --option epoch=3", "no option 'epoch'"),
    ("option of the wrong type", "fit {csv} -o {tmp}/x -m timegan --option seq_len=long", "seq_len='long'"),
    ("baseline has no options", "fit {csv} -o {tmp}/x --option epochs=3", "no option 'epochs'"),
    ("seed as an option", "fit {csv} -o {tmp}/x --option seed=3", "--option seed"),
    ("DP on the baseline", "fit {csv} -o {tmp}/x --dp-epsilon 3",
     "baseline model cannot train with differential privacy"),
    ("bad sampling precision", "fit {csv} -o {tmp}/x -m transformer --option precision=fp8", "'fp8'"),
    # model directories
    ("model folder missing", "sample {tmp}/no_model -n 5 -o {out}", "no_model"),
    ("model without config.json", "sample {tmp}/headless -n 5 -o {out}",
     "headless is not a model directory: it has no config.json"),
    ("empty model folder", "sample {tmp}/hollow -n 5 -o {out}", "hollow"),
    ("other format version", "sample {tmp}/old_model -n 5 -o {out}", "model format 0"),
    ("corrupt weights", "sample {tmp}/corrupt_model -n 5 -o {out}", "corrupt"),
    ("config not JSON", "sample {tmp}/garbled -n 5 -o {out}", "is not valid JSON"),
    ("config without schema", "sample {tmp}/schemaless -n 5 -o {out}", "has no 'schema' entry"),
    # counts, times, shards, conditions
    ("negative -n", "sample {model} -n -5 -o {out}", "got -5"),
    ("zero -n", "sample {model} -n 0 -o {out}", "--events (-n)"),
    ("zero entities", "sample {model} --entities 0 -o {out}", "--entities"),
    ("zero batch size", "stream {model} -n 5 --batch-size 0", "--batch-size"),
    ("zero batch size, replay", "replay {model} --to - -n 5 --batch-size 0", "--batch-size"),
    ("demo with no events", "demo -o {tmp}/demo -n 0", "--events (-n)"),
    ("shard past N", "sample {model} -n 5 -o {out} --shard 3/2", "'3/2'"),
    ("shard not K/N", "sample {model} -n 5 -o {out} --shard half", "'half'"),
    ("start not a time", "sample {model} -n 5 -o {out} --start noon", "'noon'"),
    ("end not a time", "sample {model} -o {out} --end 2024-13-01", "'2024-13-01'"),
    ("condition without =", "sample {model} -n 5 -o {out} -c is_fraud", "'is_fraud'"),
    ("condition on an unknown column", "sample {model} -n 5 -o {out} -c fraud=1", "'fraud'"),
    ("condition on recorded data", "sample {csv} -n 5 -o {out} -c is_fraud=true", "conditions apply to models"),
    # delivery URLs
    ("unknown sink scheme", "replay {model} --to ftp://host/x -n 5", "ftp://host/x"),
    ("kafka port not a number", "replay {model} --to kafka://localhost:port/t -n 5", "port"),
    ("kafka without a topic", "replay {model} --to kafka://localhost:9092 -n 5", "topic"),
    ("file sink of unknown format", "replay {model} --to file://{tmp}/out.xlsx -n 5", "out.xlsx"),
    ("live Parquet file", "replay {model} --to file://{tmp}/out.parquet?live=true -n 5",
     "live=true is for JSON Lines and CSV"),
    ("live not a boolean", "replay {model} --to file://{tmp}/out.jsonl?live=often -n 5", "live"),
    ("rate of zero", "replay {model} --to - -n 5 --rate 0", "--rate"),
    ("negative speed", "replay {model} --to - -n 5 --speed -1", "--speed"),
    # rule-based schemas and scenarios
    ("unknown example schema", "schema init shop -o {tmp}/s.yaml", "'shop'"),
    ("schema file exists", "schema init payments -o {tmp}/ts.csv", "already exists"),
    ("schema file missing", "schema check {tmp}/nothing.yaml", "nothing.yaml"),
    ("schema YAML syntax", "schema check {tmp}/broken.yaml", "broken.yaml"),
    ("schema unknown key", "schema check {tmp}/typo_rules.yaml", "entitys"),
    ("sample a bad schema", "sample {tmp}/typo_rules.yaml -n 5 -o {out}", "entitys"),
    ("unknown library scenario", "scenario show card_testin_burst", "card_testin_burst"),
    ("scenario unknown injector", "scenario validate {tmp}/bad_kind.yaml", "fraud_wave"),
    ("scenario bad duration", "scenario validate {tmp}/bad_duration.yaml", "soon"),
    ("run a bad scenario", "scenario run {tmp}/bad_kind.yaml -o {out}", "fraud_wave"),
    # input types (issue 29)
    ("a column named twice", "inspect {tmp}/twice.csv", "'amount' more than once"),
    ("semicolons over ragged rows", "inspect {tmp}/ragged.csv", "holds the separator ';'"),
    ("stored year past 9999", "fit {tmp}/far.parquet -o {tmp}/x", "column 'ts' holds the year 10000"),
    ("stored year before 1678", "inspect {tmp}/old.parquet", "column 'ts' holds the year 1600"),
    ("text year past 9999", "inspect {tmp}/year10000.csv", "column 'ts' holds years past 9999"),
    ("nested field named twice", "inspect {tmp}/nested_twice.jsonl", "flatten to 'device.os'"),
    # usage errors, from click
    ("missing -o", "sample {model}", "Missing option '--output'", USAGE),
    ("-n ten", "sample {model} -n ten -o {out}", "'-n'", USAGE),
    ("mistyped command", "smaple {model}", "No such command 'smaple'", USAGE),
    ("unknown flag", "sample {model} -o {out} --evnts 5", "--evnts", USAGE),
    ("--to on stream", "stream {model} --to -", "--to", USAGE),
    ("fit without data", "fit -o {tmp}/x", "Missing argument", USAGE),
    ("replay without --to", "replay {model}", "Missing option '--to'", USAGE),
    ("unknown scenario command", "scenario play x", "No such command 'play'", USAGE),
    ("--seed not a number", "sample {model} -o {out} --seed abc", "'--seed'", USAGE),
    ("metrics port past 65535", "replay {model} --to - -n 5 --metrics-port 70000", "'--metrics-port'", USAGE),
    ("negative flush interval", "replay {model} --to - -n 5 --flush-every -1", "'--flush-every'", USAGE),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory, payments_small) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad")
    csv = tmp / "payments.csv"
    payments_small.write_csv(csv)
    model = tmp / "model"
    assert main(["fit", str(csv), "-o", str(model), "--seed", "1"]) == 0
    (tmp / "empty.csv").write_text("")
    (tmp / "nodata").mkdir()
    (tmp / "nodata" / "readme.txt").write_text("x")
    (tmp / "ts.csv").write_text("timestamp,v\n2024-01-01T00:00:00,1\nyesterday,2\n")
    (tmp / "year17.csv").write_text("ts,v\n0017-06-09T10:00:00,1\n0017-06-09T10:00:01,2\n")
    (tmp / "notime.csv").write_text("user,amount\na,1\nb,2\n")
    payments_small.head(1).write_csv(tmp / "one.csv")
    flipped = _copy_model(model, tmp / "flipped_model") / "weights.safetensors"
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    _copy_model(model, tmp / "headless").joinpath("config.json").unlink()
    (tmp / "hollow").mkdir()
    old = _copy_model(model, tmp / "old_model")
    config = json.loads((old / "config.json").read_text())
    (old / "config.json").write_text(json.dumps({**config, "format_version": 0}))
    (_copy_model(model, tmp / "corrupt_model") / "weights.safetensors").write_bytes(b"not safetensors")
    (_copy_model(model, tmp / "garbled") / "config.json").write_text("{model: baseline")
    schemaless = _copy_model(model, tmp / "schemaless")
    (schemaless / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "schema"}))
    (tmp / "broken.yaml").write_text("name: x\nentity: [unclosed\n")
    from streamsynth.cli.rules import example_text

    (tmp / "typo_rules.yaml").write_text(example_text("payments").replace("\nentity:", "\nentitys:", 1))
    scenario = (Path(__file__).resolve().parents[2] / "scenarios/library/card_testing_burst.yaml").read_text()
    (tmp / "bad_kind.yaml").write_text(scenario.replace("kind: card_testing", "kind: fraud_wave"))
    (tmp / "bad_duration.yaml").write_text(scenario.replace("duration: 20m", "duration: soon"))
    (tmp / "twice.csv").write_text("ts,amount,amount\n2024-01-01T00:00:00,1,2\n2024-01-01T00:00:01,3,4\n")
    (tmp / "ragged.csv").write_text("ts;user;amount\n2024-01-01T00:00:00;a;1\n2024-01-01T00:00:01;b\n")
    (tmp / "year10000.csv").write_text("ts,v\n10000-01-01T00:00:00,1\n10000-01-01T00:00:01,2\n")
    (tmp / "nested_twice.jsonl").write_text(
        '{"ts": "2024-01-01T00:00:00", "device.os": "x", "device": {"os": "y"}}\n'
        '{"ts": "2024-01-01T00:00:01", "device.os": "x", "device": {"os": "z"}}\n'
    )
    import polars as pl

    for name, year in (("far", 10000), ("old", 1600)):
        stamps = pl.datetime_range(pl.datetime(2000, 1, 1), pl.datetime(2000, 1, 4), "1d", eager=True)
        pl.DataFrame({"ts": stamps.dt.offset_by(f"{year - 2000}y"), "user": ["a", "b", "a", "b"]}).write_parquet(
            tmp / f"{name}.parquet")
    return {"tmp": str(tmp), "model": str(model), "csv": str(csv), "out": str(tmp / "o.parquet")}


def _copy_model(model: Path, to: Path) -> Path:
    shutil.copytree(model, to)
    return to


def test_the_table_is_large_and_distinct():
    assert len(CASES) >= 50
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_exits_2_with_one_line_and_a_hint(case, files, capsys):
    name, args, expected, *kind = case
    code = main([a.format(**files) for a in args.split()])
    err = capsys.readouterr().err
    assert code == 2, f"{name}: exit {code}\n{err}"
    assert "Traceback" not in err, err
    lines = err.rstrip("\n").splitlines()
    if kind == [USAGE]:
        assert lines[0].startswith("Usage: ") and "--help' for help" in lines[1], err
        assert lines[-1].startswith("Error: ") and expected in lines[-1], err
        return
    errors = [i for i, line in enumerate(lines) if line.startswith("error: ")]
    assert len(errors) == 1, err
    at = errors[0]
    assert expected in lines[at], f"{name}: {expected!r} not in {lines[at]!r}"
    assert lines[at + 1:] and lines[at + 1].startswith("  hint: ") and len(lines) == at + 2, err
