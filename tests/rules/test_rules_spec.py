"""Rules schema files: malformed ones fail with file, key path and expectation; examples load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamsynth.cli import main
from streamsynth.errors import StreamsynthError
from streamsynth.models.rules import RuleSynthesizer
from streamsynth.rules import EXAMPLES, load_spec, parse_spec

BAD = Path(__file__).resolve().parents[1] / "data" / "bad_schemas"

# file -> (key path the message names, what it says was expected or wrong)
EXPECTED = {
    "unknown_top_key.yaml": ("entitty", "unknown key (did you mean 'entity'?)"),
    "negative_sigma.yaml": ("events.fields.amount.distribution.sigma", "expected a number > 0, got -0.5"),
    "unknown_distribution.yaml": ("events.fields.amount.distribution", "'kind' to be one of normal"),
    "unknown_reference.yaml": ("events.fields.fee", "refers to 'amout', which is not defined"),
    "unknown_state.yaml": ("events.type.states.browse.next.checkout", "moves to a state that is not declared"),
    "hour_profile_length.yaml": ("arrival.hour_of_day", "expected a list of 24 weights, got 23"),
    "weights_mismatch.yaml": ("events.fields.channel.distribution", "weights must be a list of 3 numbers"),
    "unknown_faker.yaml": ("entity.attributes.card.faker", "did you mean 'credit_card'?"),
    "field_cycle.yaml": ("events.fields.net", "cycle: net -> fee -> net"),
    "invalid_yaml.yaml": ("not valid YAML", "at line 9"),
    "unsafe_expression.yaml": ("events.fields.x.expr", "unknown function"),
    "count_not_a_number.yaml": ("entity.count", "valid integer"),
    "lookup_missing_category.yaml": ("events.fields.amount.distribution.mu.values", "no entry for category = 'fuel'"),
    "poisson_without_rate.yaml": ("arrival", "needs 'sessions_per_day'"),
    "unknown_field_key.yaml": ("events.fields.amount.distribution.stdev", "did you mean 'std'?"),
    "label_not_a_field.yaml": ("label", "'is_fraud' is not an event field"),
}


def test_every_bad_schema_file_is_covered() -> None:
    files = sorted(p.name for p in BAD.glob("*.yaml"))
    assert len(files) >= 8
    assert files == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_schema_message_names_file_key_and_expectation(name: str) -> None:
    path = BAD / name
    key, expected = EXPECTED[name]
    with pytest.raises(StreamsynthError) as info:
        load_spec(path)
    message = info.value.message
    assert message.startswith(f"{path}: "), message
    assert f": {key}" in message or key in message.split(": ")[1], message
    assert expected in message, message
    assert info.value.hint, "every schema error carries a hint"


def test_bad_schema_through_the_cli_is_a_two_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["schema", "check", str(BAD / "negative_sigma.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert "events.fields.amount.distribution.sigma" in err
    assert "Traceback" not in err


def test_missing_file_and_non_mapping() -> None:
    with pytest.raises(StreamsynthError, match="does not exist"):
        load_spec(BAD / "nope.yaml")
    with pytest.raises(StreamsynthError, match="expected a mapping at the top level"):
        parse_spec(["a", "b"], source="list.yaml")


@pytest.mark.parametrize("example", EXAMPLES)
def test_shipped_examples_are_valid_and_commented(example: str, tmp_path: Path) -> None:
    path = tmp_path / f"{example}.yaml"
    assert main(["schema", "init", example, "-o", str(path)]) == 0
    text = path.read_text()
    assert text.count("#") >= 5, "examples explain themselves in comments"
    model = RuleSynthesizer.from_file(path)
    assert model.spec.name == example
    frame = model.sample(n_events=2_000)
    assert frame.height == 2_000
    assert set(model.schema.names) <= set(frame.columns)
    # init refuses to overwrite without --force
    assert main(["schema", "init", example, "-o", str(path)]) == 2
    assert main(["schema", "init", example, "-o", str(path), "--force"]) == 0


def test_schema_check_lists_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    main(["schema", "init", "payments", "-o", str(path)])
    capsys.readouterr()
    assert main(["schema", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "card_number" in out and "credit_card" in out and "ok" in out


def test_unknown_example() -> None:
    assert main(["schema", "init", "trains"]) == 2


def test_spec_round_trips_through_json_dump() -> None:
    spec = load_spec(_example_path("weblogs"))
    again = parse_spec(yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json"))))
    assert again == spec


def _example_path(name: str) -> Path:
    import streamsynth.rules

    return Path(streamsynth.rules.__file__).parent / "examples" / f"{name}.yaml"
