"""Scenario files: malformed ones fail with the file, the key path and what was expected."""

from __future__ import annotations

import textwrap

import pytest
from streamsynth.scenarios import INJECTORS, load_scenario
from streamsynth.scenarios.catalog import library_files

from streamsynth.cli import main
from streamsynth.errors import StreamsynthError

GOOD = """
name: ok
seed: 1
base: {source: demo, entities: 100, duration: 1h}
events:
  - {kind: error_spike, at: 10m, duration: 5m, params: {column: status}}
"""

MALFORMED = {
    "not_yaml": ("name: x\nbase: [unclosed\n", "not valid YAML at line"),
    "not_a_mapping": ("- just\n- a list\n", "expected a mapping with name, base and events"),
    "missing_base": ("name: x\nevents: [{kind: dropout, at: 1m, duration: 1m}]\n", "base: required key is missing"),
    "unknown_top_key": (GOOD + "evnts: []\n",
     "(top level): unknown key 'evnts' (allowed: name, description, seed, base, events, output)"),
    "unknown_kind": (GOOD.replace("error_spike", "error_spik"), "events[0].kind: unknown injector 'error_spik'"),
    "bad_param_type": (GOOD.replace("{column: status}", "{multiplier: lots}").replace("error_spike", "latency_spike"),
     "events[0].params.multiplier: Input should be a valid number"),
    "unknown_param": (GOOD.replace("{column: status}", "{column: status, colour: red}"),
     "events[0].params: unknown key 'colour' (allowed: column, values, weights)"),
    "bad_duration": (GOOD.replace("at: 10m", "at: ten minutes"),
     "events[0].at: expected a duration such as 90s, 5m, 2h or 1d, got 'ten minutes'"),
    "share_out_of_range": (GOOD.replace("duration: 5m,", "duration: 5m, targets: {share: 1.5},"),
     "events[0].targets.share: Input should be less than or equal to 1"),
    "after_base_end": (GOOD.replace("at: 10m", "at: 2h"),
     "events[0].at: starts at 2:00:00 after the base start, but the base lasts only 1:00:00"),
    "unbounded_base": (GOOD.replace("duration: 1h}", "entities: 3}").replace("entities: 100, ", ""),
     "base: give the base a 'duration' (e.g. 2h) or an 'events' count"),
    "bad_start": (GOOD.replace("duration: 1h}", "duration: 1h, start: yesterday}"),
     "base.start: expected an ISO 8601 time"),
    "no_events": ("name: x\nbase: {source: demo, duration: 1h}\nevents: []\n",
     "events: List should have at least 1 item"),
    "drift_without_amount": (
        GOOD.replace("error_spike", "drift").replace("{column: status}", "{column: amount, mode: scale}"),
        "events[0].params: mode 'scale' needs 'amount'",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_names_file_key_and_expectation(tmp_path, case):
    text, expected = MALFORMED[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(StreamsynthError) as info:
        load_scenario(path)
    message = info.value.message
    assert message.startswith(f"{path}: "), message
    assert expected in message, message


def test_unknown_kind_lists_the_kinds(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace("error_spike", "meteor_strike"))
    with pytest.raises(StreamsynthError) as info:
        load_scenario(path)
    assert all(kind in info.value.hint for kind in INJECTORS)


def test_validate_command_exit_codes_and_message(tmp_path, capsys):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("{column: status}", "{column: status, colour: red}"))
    assert main(["scenario", "validate", str(good), "--no-base"]) == 0
    assert "ok (ok, 1 events)" in capsys.readouterr().out
    # With the base opened, the missing column is found (the demo base has no 'status').
    assert main(["scenario", "validate", str(good)]) == 2
    assert "events[0].params.column: the base has no column 'status'" in capsys.readouterr().err
    assert main(["scenario", "validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: events[0].params: unknown key 'colour'" in err
    assert "hint:" in err


def test_a_column_the_base_lacks_is_named_when_the_run_starts(tmp_path):

    from streamsynth.pipeline import open_scenario_run

    path = tmp_path / "s.yaml"
    path.write_text(GOOD)  # the demo base has no 'status' column
    run = open_scenario_run(path)
    with pytest.raises(StreamsynthError) as info:
        next(run.stream)
    assert info.value.message.startswith(f"{path}: events[0].params.column: the base has no column 'status'")
    assert "amount" in info.value.hint


def test_a_missing_base_file_is_named(tmp_path):

    from streamsynth.pipeline import open_scenario_run

    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace("source: demo", "source: nowhere.parquet"))
    with pytest.raises(StreamsynthError, match=r"base.source: 'nowhere.parquet' does not exist"):
        open_scenario_run(path)


def test_schema_yaml_is_not_taken_for_a_scenario(tmp_path):
    from streamsynth.scenarios.spec import is_scenario_file

    scenario, schema = tmp_path / "a.yaml", tmp_path / "b.yaml"
    scenario.write_text(GOOD)
    schema.write_text("name: x\nentity: {name: id, count: 3}\nevents: {fields: {}}\n")
    assert is_scenario_file(scenario) and not is_scenario_file(schema)


def test_library_has_ten_described_scenarios_that_validate():
    files = library_files()
    assert len(files) >= 10
    for path in files:
        scenario = load_scenario(path)
        assert scenario.name == path.stem
        assert len(scenario.description) > 60, f"{path.name} needs a description of what it is for"


def test_the_scenario_layer_imports_no_model_or_delivery_code():
    import subprocess
    import sys

    code = (
        "import sys, streamsynth.scenarios, streamsynth.scenarios.catalog; "
        "bad = [m for m in sys.modules if m.startswith(('streamsynth.models', 'streamsynth.connectors', 'torch'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
