"""Reading and writing event tables: round trips, timestamp shapes, and bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from streamsynth import io
from streamsynth.contract import TIME_DTYPE
from streamsynth.errors import StreamsynthError


@pytest.fixture
def events() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": pl.datetime_range(
                datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 1, 0, 0, 59, tzinfo=UTC),
                interval="1s", eager=True, time_unit="us",
            ),
            "user_id": [f"U{i % 7}" for i in range(60)],
            "amount": [i * 1.25 for i in range(60)],
            "status": [200 if i % 5 else 503 for i in range(60)],
            "ok": [i % 5 != 0 for i in range(60)],
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_round_trip_each_format(tmp_path, events, suffix):
    path = io.write(events, tmp_path / f"events{suffix}")
    back = io.read(path)
    assert back.schema["ts"] == TIME_DTYPE
    assert back.equals(events)


def test_batches_written_one_by_one_read_back_whole(tmp_path, events):
    for suffix in (".parquet", ".csv", ".jsonl"):
        path = io.write_batches([events.slice(0, 20), events.slice(20, 40)], tmp_path / f"b{suffix}")
        assert io.read(path).equals(events)


def test_directory_of_files_is_read_as_one_table(tmp_path, events):
    (tmp_path / "d").mkdir()
    io.write(events.slice(0, 30), tmp_path / "d" / "part-0.parquet")
    io.write(events.slice(30), tmp_path / "d" / "part-1.parquet")
    assert io.read(tmp_path / "d").equals(events)


def test_iter_batches_streams_a_file(tmp_path, events):
    path = io.write(events, tmp_path / "e.csv")
    batches = list(io.iter_batches(path, batch_size=25))
    assert sum(b.height for b in batches) == 60
    assert all(b.schema["ts"] == TIME_DTYPE for b in batches)


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        ("timestamp", ["2024-03-01T10:00:00Z", "2024-03-01T10:00:01.5Z"], datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("timestamp", ["2024-03-01 12:00:00+02:00", "2024-03-01 12:00:05+02:00"], datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("ts", [1709287200, 1709287201], datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("ts", [1709287200000, 1709287201000], datetime(2024, 3, 1, 10, tzinfo=UTC)),
        ("time", ["Fri Mar 01 10:00:00 2024", "Fri Mar 01 10:00:09 2024"], datetime(2024, 3, 1, 10, tzinfo=UTC)),
    ],
)
def test_timestamp_shapes_become_utc_microseconds(tmp_path, column, values, expected):
    path = tmp_path / "t.csv"
    pl.DataFrame({column: values, "v": [1, 2]}).write_csv(path)
    frame = io.read(path)
    assert frame.schema[column] == TIME_DTYPE
    assert frame[column][0] == expected


def test_separate_date_and_time_columns_are_combined(tmp_path):
    path = tmp_path / "hdfs.csv"
    path.write_text("LineId,Date,Time,Level\n1,081109,203615,INFO\n2,081109,203807,WARN\n")
    frame = io.read(path)
    assert "ts" in frame.columns and "Date" not in frame.columns
    assert frame["ts"][0] == datetime(2008, 11, 9, 20, 36, 15, tzinfo=UTC)


def test_explicit_date_plus_time(tmp_path):
    path = tmp_path / "split.csv"
    path.write_text("day,clock,v\n2024-03-01,10:00:00,1\n2024-03-01,10:00:02,2\n")
    frame = io.read(path, time="day+clock")
    assert frame["ts"][1] == datetime(2024, 3, 1, 10, 0, 2, tzinfo=UTC)


def test_real_logs_parse(shared_data):
    for name, column in [("HDFS", "ts"), ("BGL", "Time"), ("Apache", "Time"), ("OpenSSH", "ts")]:
        frame = io.read(shared_data / "loghub" / f"{name}_2k.log_structured.csv")
        assert frame.schema[column] == TIME_DTYPE, name
        assert frame[column].null_count() == 0, name


# -- bad input ---------------------------------------------------------------------------------
def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(StreamsynthError, match=r"empty\.csv is empty"):
        io.read(tmp_path / "empty.csv")


def test_header_without_rows(tmp_path):
    (tmp_path / "h.csv").write_text("ts,amount\n")
    with pytest.raises(StreamsynthError, match="no rows"):
        io.read(tmp_path / "h.csv")


def test_missing_column_names_the_closest(tmp_path, events):
    path = io.write(events, tmp_path / "e.parquet")
    with pytest.raises(StreamsynthError, match=r"no column 'amout' \(did you mean 'amount'\?\)"):
        io.read(path, columns=["amout"])


def test_unparseable_timestamps_name_column_and_value(tmp_path):
    path = tmp_path / "bad_ts.csv"
    path.write_text("timestamp,v\n2024-03-01T10:00:00,1\nlast tuesday,2\n")
    with pytest.raises(StreamsynthError, match=r"timestamp.*last tuesday"):
        io.read(path, time="timestamp")


def test_mixed_types_name_column_value_and_row(tmp_path):
    rows = "\n".join(f"{i},{i * 1.5}" for i in range(30))
    (tmp_path / "mixed.csv").write_text(f"id,amount\n{rows}\n31,abc\n")
    with pytest.warns(io.DataWarning, match=r"'amount' is numbers except 3.2%.*'abc', first at row 31"):
        frame = io.read(tmp_path / "mixed.csv")
    assert frame.schema["amount"] == pl.Float64 and frame["amount"].null_count() == 1


def test_directory_without_data_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(StreamsynthError, match="holds no data files"):
        io.read(tmp_path)


def test_unknown_suffix(tmp_path):
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(StreamsynthError, match="unknown file type"):
        io.read(tmp_path / "x.xlsx")


def test_missing_path(tmp_path):
    with pytest.raises(StreamsynthError, match="does not exist"):
        io.read(tmp_path / "nope.csv")
