"""Real files' hard edges, each on a small file of the same shape: ISO strings under any name,
durations named ``*_time``, a schema file's time column, log4j and Spark timestamps, ambiguous
and implausible dates, zero-padded ids, mostly-numeric text columns."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import polars as pl
import pytest

from streamsynth import io
from streamsynth.cli import main
from streamsynth.errors import StreamsynthError
from streamsynth.schema import Role, Schema

FLIGHTS = [
    # flight, carrier, sched_dep, air_time (minutes), time_hour
    (1, "UA", "2013-01-01 05:15", 227, "2013-01-01T05:15:00"),
    (2, "AA", "2013-01-01 05:29", 150, "2013-01-01T05:29:00"),
    (3, "B6", "2013-01-01 05:40", 160, "2013-01-01T05:40:00"),
    (4, "UA", "2013-01-01 05:45", 183, "2013-01-01T05:45:00"),
    (5, "DL", "2013-01-01 06:00", 116, "2013-01-01T06:00:00"),
    (6, "UA", "2013-01-01 06:14", 150, "2013-01-01T06:14:00"),
    (7, "AA", "2013-01-01 06:20", 201, "2013-01-01T06:20:00"),
    (8, "B6", "2013-01-01 06:31", 98, "2013-01-01T06:31:00"),
] * 4


def flights(tmp_path, suffix: str = ".csv", columns=("flight", "carrier", "sched_dep", "air_time", "time_hour")):
    rows = [dict(zip(("flight", "carrier", "sched_dep", "air_time", "time_hour"), r, strict=True)) for r in FLIGHTS]
    frame = pl.DataFrame(rows).select(columns)
    path = tmp_path / f"flights{suffix}"
    frame.write_csv(path) if suffix == ".csv" else frame.write_ndjson(path)
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamsynth", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_an_iso_string_column_is_the_event_time_whatever_its_name(tmp_path, suffix):
    path = flights(tmp_path, suffix, columns=("flight", "carrier", "air_time", "time_hour"))
    frame = io.read(path)
    schema = Schema.infer(frame)
    assert schema.time == "time_hour" and frame["time_hour"][0] == datetime(2013, 1, 1, 5, 15, tzinfo=UTC)
    assert schema["air_time"].role is Role.NUMERIC  # minutes in the air, not a second time column
    assert main(["fit", str(path), "-o", str(tmp_path / "model")]) == 0


def test_with_time_given_a_duration_stays_numeric_and_a_second_timestamp_is_reported(tmp_path, capsys):
    path = flights(tmp_path)
    with pytest.warns(io.DataWarning, match=r"'time_hour' holds timestamps besides the event time 'sched_dep'"):
        schema = Schema.infer(io.read(path, time="sched_dep"), time="sched_dep")
    assert schema["air_time"].role is Role.NUMERIC
    assert schema["time_hour"].role is Role.IGNORE and schema["time_hour"].dtype.startswith("Datetime")
    assert main(["inspect", str(path), "--time", "sched_dep"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "'time_hour'" in lines[0]


def test_a_schema_files_time_column_is_parsed_like_the_time_option(tmp_path):
    path = flights(tmp_path, columns=("flight", "carrier", "sched_dep", "air_time"))
    schema_file = tmp_path / "schema.yaml"
    schema_file.write_text("time: sched_dep\n")
    assert main(["fit", str(path), "-o", str(tmp_path / "m"), "--schema", str(schema_file)]) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["schema"]["time"] == "sched_dep"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_log4j_comma_milliseconds_parse_as_date_plus_time(tmp_path, suffix):
    frame = pl.DataFrame({
        "Date": ["2015-10-18"] * 3, "Time": ["18:01:47,978", "18:01:48,112", "18:01:50,005"],
        "Level": ["INFO", "WARN", "INFO"],
    })
    path = tmp_path / f"hadoop{suffix}"
    frame.write_csv(path) if suffix == ".csv" else frame.write_ndjson(path)
    out = io.read(path, time="Date+Time")
    assert out["ts"].to_list()[:2] == [
        datetime(2015, 10, 18, 18, 1, 47, 978_000, tzinfo=UTC), datetime(2015, 10, 18, 18, 1, 48, 112_000, tzinfo=UTC)
    ]
    assert main(["inspect", str(path), "--time", "Date+Time"]) == 0


def test_spark_yy_mm_dd_is_read_as_2017_with_a_one_line_warning(tmp_path):
    path = tmp_path / "spark.csv"
    path.write_text(
        "Date,Time,Level,Component\n17/06/09,20:10:40,INFO,executor\n17/06/09,20:10:41,INFO,executor\n"
        "17/06/09,20:10:44,WARN,storage\n"
    )
    with pytest.warns(io.DataWarning, match=r"fit %y/%m/%d or %d/%m/%y; reading them as %y/%m/%d.*time_format"):
        frame = io.read(path, time="Date+Time")
    assert frame["ts"][0] == datetime(2017, 6, 9, 20, 10, 40, tzinfo=UTC)
    proc = cli("inspect", str(path))
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "%y/%m/%d" in warned[0], proc.stderr
    assert "2017-06-09 20:10:40" in proc.stdout


@pytest.mark.parametrize(
    "values, expected",
    [
        (["13/06/2017 10:00:00", "14/06/2017 10:00:00"], datetime(2017, 6, 13, 10, tzinfo=UTC)),  # day > 12
        (["06/13/2017 10:00:00", "06/14/2017 10:00:00"], datetime(2017, 6, 13, 10, tzinfo=UTC)),  # US order
        (["6/9/17 10:00", "6/30/17 10:00"], datetime(2017, 6, 9, 10, tzinfo=UTC)),  # unpadded: no yy first
    ],
)
def test_a_field_above_12_decides_the_layout_without_a_warning(tmp_path, values, expected, recwarn):
    path = tmp_path / "d.csv"
    pl.DataFrame({"ts": values, "v": [1, 2]}).write_csv(path)
    assert io.read(path)["ts"][0] == expected
    assert not [w for w in recwarn if issubclass(w.category, io.DataWarning)]


def test_an_ambiguous_day_month_order_warns_with_the_override(tmp_path):
    path = tmp_path / "d.csv"
    # twenty events (the fewest a model learns from), every date ambiguous
    days = ["05/06/2017 10:00:00", "07/06/2017 10:00:00"] + [f"07/06/2017 11:{m:02d}:00" for m in range(20)]
    pl.DataFrame({"ts": days, "v": list(range(len(days)))}).write_csv(path)
    with pytest.warns(io.DataWarning, match=r"reading them as %d/%m/%Y. If that is wrong, give `time_format: '%m/%d"):
        assert io.read(path)["ts"][0] == datetime(2017, 6, 5, 10, tzinfo=UTC)
    schema_file = tmp_path / "s.yaml"
    schema_file.write_text("time: ts\ntime_format: '%m/%d/%Y %H:%M:%S'\n")
    assert main(["fit", str(path), "-o", str(tmp_path / "m"), "--schema", str(schema_file)]) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["fitted_start"].startswith("2017-05-06")


def test_implausible_years_are_an_error_naming_column_value_and_fix(tmp_path, capsys):
    path = tmp_path / "old.csv"
    pl.DataFrame({"ts": ["0017-06-09 20:10:40", "0017-06-09 20:10:41"], "v": [1, 2]}).write_csv(path)
    with pytest.raises(StreamsynthError, match=r"column 'ts' reads as year 17 \('0017-06-09 20:10:40'") as err:
        io.read(path)
    assert "time_format" in err.value.hint
    spark = tmp_path / "spark.csv"
    spark.write_text("when,v\n17/06/09 20:10:40,1\n17/06/09 20:10:41,2\n")
    schema_file = tmp_path / "s.yaml"
    schema_file.write_text("time: when\ntime_format: '%Y/%m/%d %H:%M:%S'\n")
    assert main(["inspect", str(spark), "--schema", str(schema_file)]) == 2
    assert "column 'when' reads as year 17" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_zero_padded_ids_stay_strings(tmp_path, suffix):
    frame = pl.DataFrame({
        "ts": [f"2024-01-01T00:00:{s:02d}" for s in range(12)],
        "customer_id": ["00005", "00017", "00005", "00230", "00017", "00005"] * 2,
        "amount": [1.5, 2.0, 3.25, 4.0, 5.5, 6.0] * 2,
        "count": list(range(12)),
    })
    path = tmp_path / f"c{suffix}"
    frame.write_csv(path) if suffix == ".csv" else frame.write_ndjson(path)
    out = io.read(path)
    assert out.schema["customer_id"] == pl.String and out["customer_id"][0] == "00005"
    assert out.schema["count"] == pl.Int64
    assert Schema.infer(out).entity == "customer_id"


def test_a_mostly_numeric_column_is_read_as_numbers_with_a_warning(tmp_path, capsys):
    amounts = [str(10 + i) if i % 7 else "abc" for i in range(70)]
    path = tmp_path / "pay.csv"
    times = [f"2024-01-01T{m // 60:02d}:{m % 60:02d}:00" for m in range(70)]
    pl.DataFrame({"ts": times, "amount": amounts}).write_csv(path)
    with pytest.warns(
        io.DataWarning, match=r"column 'amount' is numbers except 14.3% of its values \(e.g. 'abc', first at row 1\)"
        r".*`columns: \{amount: categorical\}`",
    ):
        frame = io.read(path)
    assert frame.schema["amount"] == pl.Float64 and frame["amount"].null_count() == 10
    assert Schema.infer(frame)["amount"].role is Role.NUMERIC
    assert main(["inspect", str(path)]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "amount" in line][0].startswith("warning: "), err
    # The override the message suggests keeps the column as text.
    schema_file = tmp_path / "s.yaml"
    schema_file.write_text("columns:\n  amount: categorical\n")
    assert main(["inspect", str(path), "--schema", str(schema_file)]) == 0
    out = capsys.readouterr()
    assert "warning" not in out.err and "categorical" in out.out


def test_batches_of_a_file_share_the_first_batchs_columns_and_layout(tmp_path, recwarn):
    # The first batch cannot tell 05/06 from 06/05; a later one could, but must not change the reading.
    days = ["05/06/17"] * 5 + ["25/06/17"] * 5
    path = tmp_path / "spark.csv"
    pl.DataFrame({"Date": days, "Time": [f"10:00:{i:02d}" for i in range(10)], "v": list(range(10))}).write_csv(path)
    batches = list(io.iter_batches(path, batch_size=5, time="Date+Time"))
    assert [b.height for b in batches] == [5, 5]
    assert batches[0]["ts"][0] == datetime(2005, 6, 17, 10, tzinfo=UTC)  # yy/mm/dd, the log layout
    assert batches[1]["ts"][0] == datetime(2025, 6, 17, 10, 0, 5, tzinfo=UTC)
    assert len([w for w in recwarn if issubclass(w.category, io.DataWarning)]) == 1
    # Found by name on the first batch, the combined Date+Time is parsed in every batch.
    auto = list(io.iter_batches(path, batch_size=5))
    assert all(b.schema["ts"] == pl.Datetime("us", "UTC") for b in auto)


# -- input types (issue 29) ------------------------------------------------------------------
def events(n: int = 40, entity: str = "customer_id") -> pl.DataFrame:
    return pl.DataFrame({
        "ts": [datetime(2024, 1, 1, 0, i // 60, i % 60, tzinfo=UTC) for i in range(n)],
        entity: [f"c{i % 5}" for i in range(n)],
        "amount": [float(i % 7) + 0.25 for i in range(n)],
    })


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_csv_separated_by_semicolons_tabs_or_bars_is_read_by_its_separator(tmp_path, sep):
    path = tmp_path / "events.csv"
    events().with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S")).write_csv(path, separator=sep)
    frame = io.read(path)
    assert frame.columns == ["ts", "customer_id", "amount"] and frame["ts"].dtype == pl.Datetime("us", "UTC")
    assert frame["amount"].dtype == pl.Float64


def test_a_comma_csv_whose_text_holds_semicolons_stays_a_comma_csv(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("ts,note\n2024-01-01T00:00:00,a;b\n2024-01-01T00:00:01,c;d\n")
    assert io.read(path).columns == ["ts", "note"]


def test_a_header_split_by_semicolons_over_ragged_rows_names_the_separator(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("ts;customer_id;amount\n2024-01-01T00:00:00;c1;1\n2024-01-01T00:00:01;c2\n")
    with pytest.raises(StreamsynthError, match=r"holds the separator ';'") as err:
        io.read(path)
    assert "same number of fields" in err.value.hint


def test_a_header_that_names_a_column_twice_is_an_error(tmp_path, capsys):
    path = tmp_path / "twice.csv"
    path.write_text("ts,amount,amount\n2024-01-01T00:00:00,1,2\n2024-01-01T00:00:01,3,4\n")
    with pytest.raises(StreamsynthError, match=r"the header names 'amount' more than once"):
        io.read(path)
    assert main(["fit", str(path), "-o", str(tmp_path / "m")]) == 2
    assert "'amount' more than once" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_nested_fields_are_flattened_into_dotted_columns_and_learned(tmp_path, suffix):
    frame = events().with_columns(
        pl.struct(os=pl.Series(["ios", "android"] * 20), app=pl.struct(ver=pl.Series([1, 2, 3, 4] * 10)))
        .alias("device")
    )
    path = tmp_path / f"nested{suffix}"
    frame.write_ndjson(path) if suffix == ".jsonl" else frame.write_parquet(path)
    read = io.read(path)
    assert read.columns == ["ts", "customer_id", "amount", "device.os", "device.app.ver"]
    assert Schema.infer(read)["device.os"].role is Role.CATEGORICAL
    assert main(["fit", str(path), "-o", str(tmp_path / "m")]) == 0
    assert main(["sample", str(tmp_path / "m"), "-n", "20", "-o", str(tmp_path / "s.parquet")]) == 0
    assert set(pl.read_parquet(tmp_path / "s.parquet")["device.os"]) <= {"ios", "android"}
    streamed = pl.concat(io.iter_batches(path, batch_size=7))  # how replay reads a large file
    assert streamed.columns == read.columns and streamed.equals(read)


@pytest.mark.parametrize("year", [1600, 10000])
def test_stored_timestamps_outside_1678_to_9999_are_an_error_naming_the_column(tmp_path, year):
    base = datetime(2000 if year < 5000 else 9999, 1, 1, tzinfo=UTC)
    stamps = pl.Series([base] * 4).dt.offset_by(f"{year - base.year}y")
    path = tmp_path / "far.parquet"
    events(4).with_columns(stamps.alias("ts")).write_parquet(path)
    with pytest.raises(StreamsynthError, match=rf"column 'ts' holds the year {year} \(row 1\), outside 1678-9999"):
        io.read(path)
    with pytest.raises(StreamsynthError, match=rf"year {year}"):
        list(io.iter_batches(path))


def test_text_timestamps_past_9999_are_an_error_naming_the_column(tmp_path):
    path = tmp_path / "far.csv"
    path.write_text("ts,v\n10000-01-01T00:00:00,1\n10000-01-01T00:00:01,2\n")
    with pytest.raises(StreamsynthError, match=r"column 'ts' holds years past 9999 \(e.g. '10000-01-01T00:00:00'\)"):
        io.read(path)


def _fit_and_sample(tmp_path, frame: pl.DataFrame, n: int = 60) -> tuple[pl.DataFrame, int]:
    real = tmp_path / "real.parquet"
    frame.write_parquet(real)
    assert main(["fit", str(real), "-o", str(tmp_path / "m")]) == 0
    assert main(["sample", str(tmp_path / "m"), "-n", str(n), "-o", str(tmp_path / "s.parquet")]) == 0
    code = main(["evaluate", str(real), str(tmp_path / "s.parquet"), "--no-gru", "--json", str(tmp_path / "e.json")])
    return pl.read_parquet(tmp_path / "s.parquet"), code


def test_a_decimal_column_is_learned_as_numbers_and_sampled_back_as_the_same_decimal(tmp_path):
    frame = events().with_columns((pl.col("amount") * 100 + 0.37).cast(pl.Decimal(12, 2)))
    assert Schema.infer(io.read(_write(tmp_path, frame)))["amount"].role is Role.NUMERIC
    sample, code = _fit_and_sample(tmp_path, frame)
    assert sample.schema["amount"] == pl.Decimal(12, 2) and sample["amount"].null_count() == 0
    assert code == 0  # evaluate reads the sample it made


def test_a_duration_column_is_learned_as_counts_of_its_unit_and_sampled_back_as_a_duration(tmp_path, recwarn):
    frame = events().with_columns(wait=pl.duration(seconds=pl.int_range(40) * 13 % 300, time_unit="ms"))
    schema = Schema.infer(io.read(_write(tmp_path, frame)))
    assert schema["wait"].role is Role.NUMERIC
    assert not [w for w in recwarn if "holds timestamps" in str(w.message)]
    sample, code = _fit_and_sample(tmp_path, frame)
    assert sample.schema["wait"] == pl.Duration("ms")
    assert frame["wait"].min() <= sample["wait"].min() <= sample["wait"].max() <= frame["wait"].max()
    assert code == 0


def test_list_columns_are_named_in_a_warning_at_fit(tmp_path):
    path = tmp_path / "lists.jsonl"
    events().with_columns(tags=pl.Series([["a", "b"], ["c"]] * 20)).write_ndjson(path)
    with pytest.warns(io.DataWarning, match=r"models leave out 'tags' \(List\(String\)\)"):
        schema = Schema.infer(io.read(path))
    assert schema["tags"].role is Role.IGNORE


def _write(tmp_path, frame: pl.DataFrame):
    path = tmp_path / "typed.parquet"
    frame.write_parquet(path)
    return path
