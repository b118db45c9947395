"""Reading and writing event tables: CSV, Parquet, JSON Lines, or a directory of them.

Reads are lazy (polars scans); timestamps in common shapes (ISO strings, epoch seconds or
milliseconds, log formats, separate date and time columns) become ``Datetime(us, UTC)``.
Numeric dates whose layout is ambiguous (``17/06/09``) are decided from the data, with a
:class:`DataWarning` when the data cannot decide; years outside 1900-2200 are an error.
Integer-looking columns with leading zeros (``00005``) stay strings; mostly-numeric text
columns become numbers with nulls, with a warning.

Input types, so that nothing is lost or silently wrong (issue 29):

- CSV: the separator (``,`` ``;`` tab ``|``) is the one that splits the first lines into the
  same number of fields; a header naming a column twice is an error.
- Nested objects (JSON Lines objects, Parquet structs) become one column per field, named
  ``parent.field`` (``device.os``); models learn and sample them as flat columns.
- Timestamps stored as such (Parquet, typed JSON) must fall in years 1678-9999; text read as
  timestamps in 1900-2200. Either is otherwise an error naming the column.
- ``Decimal`` and ``Duration`` columns are read as they are: the schema calls them numeric,
  models learn their numbers (durations as counts of their unit) and samples carry the input's
  type back (``Decimal(12, 2)`` in, ``Decimal(12, 2)`` out).
"""

from __future__ import annotations

import csv
import itertools
import re
import warnings
from collections.abc import Iterable, Iterator
from io import StringIO
from pathlib import Path

import polars as pl

from streamsynth.contract import TIME_DTYPE
from streamsynth.errors import StreamsynthError, closest
from streamsynth.outputs import Staged

FORMATS = {
    ".csv": "csv", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}

_TIME_NAMES = ("ts", "timestamp", "time", "datetime", "date", "event_time", "event_ts", "created", "tx_datetime")
_DATE_PARTS = {"date", "day", "month", "year"}
_STRING_FORMATS = (
    None,  # ISO 8601 and the other shapes polars infers
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d-%H.%M.%S%.f",  # BGL
    "%a %b %d %H:%M:%S %Y",  # Apache error log
    "%d/%b/%Y:%H:%M:%S %z",  # Apache access log
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%y%m%d %H%M%S",  # HDFS: Date=081109, Time=203615
    "%Y %b %d %H:%M:%S",  # syslog with the year put in front
    "%Y-%m-%d",
)
_DEFAULT_YEAR = 2000  # for logs whose dates carry no year (syslog "Dec 10 06:55:46"); a leap year
_YEARS = (1900, 2200)  # event times outside these years come from a misread layout
_STORED_YEARS = (1678, 9999)  # timestamps stored as such outside these years are an error
_INFER_ROWS = 10_000
# Values that are timestamps whatever the column is called (flights' ``time_hour``).
_TIME_VALUE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{1,2}:\d{2}\S*( ?[+-]\d{2}:?\d{2}|Z)?)?$"
    r"|^\d{1,4}[/.-]\d{1,2}[/.-]\d{2,4}[ T]\d{1,2}:\d{2}"
)
# Day, month and year as numbers: 17/06/09, 09.06.2017, 6-9-17.
_NUMERIC_DATE = r"^(\d{1,4})([/.-])(\d{1,2})[/.-](\d{1,4})"
_LAYOUTS = {  # by preference when the data fit several: log layouts first, then the existing order
    "ymd": ("year", "month", "day"), "dmy": ("day", "month", "year"), "mdy": ("month", "day", "year")
}
_CLOCKS = ("", " %H:%M:%S%.f", " %H:%M:%S", " %H:%M", "T%H:%M:%S%.f", "T%H:%M:%S", " %H:%M:%S%.f%z", "T%H:%M:%S%.f%z")
_MIXED_SHARE = 0.5  # a text column whose values are mostly numbers is read as numbers
_SEPARATORS = (",", ";", "\t", "|")  # CSV separators, by preference when several fit
_SNIFF_CHARS, _SNIFF_ROWS = 1 << 16, 20  # the separator is judged on the first lines


class DataWarning(UserWarning):
    """Something in the input was read in a way the user should know about (one line)."""


def format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise StreamsynthError(
            f"{path}: unknown file type {path.suffix!r}",
            hint="use .csv, .parquet, .jsonl (or .ndjson)",
        )
    return fmt


def data_files(path: str | Path) -> list[Path]:
    """The data file, or the data files of one format in a directory (sorted by name)."""
    path = Path(path)
    if not path.exists():
        raise StreamsynthError(f"{path} does not exist", hint="check the path")
    if path.is_file():
        format_of(path)
        if path.stat().st_size == 0:
            raise StreamsynthError(f"{path} is empty", hint="give a file with a header and rows")
        return [path]
    if not path.is_dir():  # a device, a pipe or a socket: nothing polars can scan
        raise StreamsynthError(f"{path} is neither a data file nor a directory",
                               hint="give a .csv, .parquet or .jsonl file, or a directory of them")
    if (path / "config.json").is_file() and (path / "weights.safetensors").is_file():  # models.base's files
        raise StreamsynthError(f"{path} is a model directory, not data",
                               hint="sample, stream and replay read a model; fit, inspect and evaluate read "
                               "data files (.csv, .parquet, .jsonl) or a directory of them")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FORMATS)
    if not files:
        raise StreamsynthError(
            f"directory {path} holds no data files",
            hint="put .csv, .parquet or .jsonl files in it",
        )
    formats = {format_of(p) for p in files}
    if len(formats) > 1:
        raise StreamsynthError(
            f"directory {path} mixes formats {sorted(formats)}",
            hint="keep one format per directory",
        )
    for p in files:
        if p.stat().st_size == 0:
            raise StreamsynthError(f"{p} is empty", hint="remove it or give it rows")
    return files


def scan(path: str | Path) -> pl.LazyFrame:
    """A lazy frame over a file or a directory of files, as stored (timestamps untouched)."""
    files = data_files(path)
    fmt = format_of(files[0])
    sources = [str(p) for p in files]
    if fmt == "csv":
        return pl.concat([_scan_csv(s) for s in sources], how="diagonal_relaxed")
    if fmt == "parquet":
        return pl.scan_parquet(sources)
    return pl.concat([pl.scan_ndjson(s, infer_schema_length=10_000) for s in sources], how="diagonal_relaxed")


def _scan_csv(source: str) -> pl.LazyFrame:
    """A CSV scan in which integer columns written with leading zeros (ids ``00005``, codes
    ``0042``) stay strings, judged on the rows polars infers types from. The separator is
    sniffed from the first lines; a header that names a column twice is an error."""
    sep, header = _sniff_csv(source)
    _check_header(header, source, sep)
    frame = pl.scan_csv(source, separator=sep, infer_schema_length=_INFER_ROWS, try_parse_dates=False)
    ints = [name for name, dtype in frame.collect_schema().items() if dtype.is_integer()]
    if not ints:
        return frame
    head = pl.read_csv(source, separator=sep, n_rows=_INFER_ROWS, infer_schema=False, columns=ints)
    padded = {name: pl.String for name in ints if head[name].str.contains(r"^[+-]?0\d").any()}
    if not padded:
        return frame
    return pl.scan_csv(source, separator=sep, infer_schema_length=_INFER_ROWS, try_parse_dates=False,
                       schema_overrides=padded)


def _sniff_csv(source: str) -> tuple[str, list[str]]:
    """The separator (``,`` ``;`` tab ``|``, in that preference) that splits the first lines into
    the same number of fields, more than one; ``,`` when none does. Also the header's names."""
    lines: list[str] = []
    with open(source, encoding="utf-8-sig", errors="replace", newline="") as fh:
        while len(lines) < _SNIFF_ROWS and sum(map(len, lines)) < _SNIFF_CHARS and (line := fh.readline()):
            lines.append(line)  # whole lines, so that the header's last name is not cut
    text = "".join(lines)
    for sep in _SEPARATORS:
        rows = [r for r in _first_rows(text, sep) if r]
        widths = {len(r) for r in rows}
        if len(widths) == 1 and widths.pop() > 1:
            return sep, rows[0]
    rows = _first_rows(text, ",")
    return ",", rows[0] if rows else []


def _first_rows(text: str, sep: str) -> list[list[str]]:
    try:
        return list(itertools.islice(csv.reader(StringIO(text), delimiter=sep), _SNIFF_ROWS))
    except csv.Error:
        return []


def _check_header(header: list[str], source: str, sep: str) -> None:
    """Columns named twice (polars would rename the second ``amount_duplicated_0``), and a
    header that reads as one column although it holds another separator, are errors."""
    seen: set[str] = set()
    twice = [name for name in header if name in seen or seen.add(name)]
    if twice:
        raise StreamsynthError(
            f"{source}: the header names {', '.join(map(repr, dict.fromkeys(twice)))} more than once",
            hint="give every column its own name",
        )
    if len(header) == 1:
        inside = [s for s in _SEPARATORS if s != sep and s in header[0]]
        if inside:
            name = {"\t": "tab"}.get(inside[0], repr(inside[0]))
            raise StreamsynthError(
                f"{source}: the header reads as one column {header[0]!r}, which holds the separator {name}, "
                "but the first lines do not all split into the same number of fields by it",
                hint=f"separate columns by {name} (or ','), with the same number of fields on every line",
            )


def read(
    path: str | Path,
    *,
    time: str | None = None,
    columns: list[str] | None = None,
    time_format: str | None = None,
    text_columns: Iterable[str] = (),
) -> pl.DataFrame:
    """Read a file or directory and normalise its event-time column to ``Datetime(us, UTC)``.

    ``time`` names the time column, or several joined by ``+`` (``"Date+Time"``) when date
    and time of day are stored apart; by default the time column is found by name and type.
    ``time_format`` (strftime, e.g. ``"%y/%m/%d %H:%M:%S"``) fixes how time strings are read.
    ``text_columns`` stay text even when most of their values are numbers.
    """
    path = Path(path)
    try:
        frame = scan(path).collect()
    except pl.exceptions.PolarsError as exc:
        raise _read_error(path, exc) from None
    if frame.height == 0:
        raise StreamsynthError(f"{path} has a header but no rows", hint="give data with rows")
    frame = _flatten(frame, str(path))
    if columns:
        _require_columns(frame, columns, str(path))
        frame = frame.select(columns)
    frame = _numbers_from_mixed(frame, str(path), keep=set(text_columns))
    frame = normalize_time(frame, time=time, source=str(path), time_format=time_format)
    _check_years(frame, str(path))
    return frame


def iter_batches(path: str | Path, batch_size: int = 10_000, *, time: str | None = None) -> Iterator[pl.DataFrame]:
    """Stream a file or directory in batches without reading it whole (for replay).

    The time column (or columns) and its layout are chosen on the first batch and parsed the
    same way in every batch; what the first batch's reading warned about is said once.
    """
    path = Path(path)
    chosen: dict[str, str | None] = {}
    try:
        for batch in scan(path).collect_batches(chunk_size=batch_size):
            if batch.height == 0:
                continue
            batch = _flatten(batch, str(path))  # as read() does, so a large file replays as a small one
            if not chosen:
                batch = normalize_time(batch, time=time, source=str(path), chosen=chosen)
                chosen.setdefault("time", None)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DataWarning)
                    batch = normalize_time(batch, time=chosen["time"], time_format=chosen.get("format"),
                                           source=str(path))
            _check_years(batch, str(path))
            yield batch
    except pl.exceptions.PolarsError as exc:
        raise _read_error(path, exc) from None


def write(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write one frame as Parquet, CSV or JSON Lines, by the file's suffix."""
    return write_batches([frame], path)


def write_batches(batches: Iterable[pl.DataFrame], path: str | Path, stage: Staged | None = None) -> Path:
    """Write a stream of batches to one file without holding them all in memory.

    The file is written under a temporary name beside ``path`` and renamed into place once
    complete: a failure (a bad batch, a full disk) leaves any earlier file at ``path`` as it was.
    With ``stage`` the rename waits for the stage to commit (with a manifest, say)."""
    path = Path(path)
    fmt = format_of(path)
    if stage is None:
        with Staged() as own:
            return write_batches(batches, path, own)
    with BatchFileWriter(stage.file(path), fmt) as writer:
        for batch in batches:
            writer.write(batch)
    return path


class BatchFileWriter:
    """Appends batches to one Parquet, CSV or JSON Lines file; close() finishes the file."""

    def __init__(self, path: Path, fmt: str | None = None) -> None:
        self.path = path
        self.fmt = fmt or format_of(path)
        self.rows = 0
        self._parquet = None
        self._fh = None if self.fmt == "parquet" else open(path, "wb")  # noqa: SIM115

    def write(self, batch: pl.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            table = batch.to_arrow()
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._parquet.write_table(table)
        elif self.fmt == "csv":
            # CSV has no duration type: a duration is written as a count of its own unit
            durations = [name for name, dtype in batch.schema.items() if isinstance(dtype, pl.Duration)]
            if durations:
                batch = batch.with_columns(pl.col(durations).cast(pl.Int64))
            batch.write_csv(self._fh, include_header=self.rows == 0)
        else:
            batch.write_ndjson(self._fh)
        self.rows += batch.height

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        elif self.fmt == "parquet" and self.rows == 0:
            pl.DataFrame().write_parquet(self.path)
        if self._fh is not None:
            self._fh.close()

    def __enter__(self) -> BatchFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- timestamps ----------------------------------------------------------------------------
def normalize_time(
    frame: pl.DataFrame, *, time: str | None = None, source: str = "data", time_format: str | None = None,
    chosen: dict[str, str | None] | None = None,
) -> pl.DataFrame:
    """Parse the event-time column into ``Datetime(us, UTC)`` in place.

    With ``time=None`` every candidate (datetime-typed columns, time-like names or values, date
    and time stored apart) is tried and the one parsing to the most distinct instants is kept;
    the parsed column keeps its name (``ts`` for a combination). Other text columns that parse
    as timestamps become timestamps too (the schema reports them as second time columns).
    Frames without any time column come back unchanged. ``chosen``, when given, receives the
    time column(s) (``time``, as ``--time`` takes it) and the strftime layout (``format``) used.
    """
    if time:
        return _given_time(frame, time, source, time_format, chosen)
    if TIME_DTYPE in frame.schema.values():
        if chosen is not None:
            chosen.update(time=_time_name_after(frame), format=None)
        return frame
    best: tuple[int, list[str], pl.Series] | None = None
    layouts: dict[str, str | None] = {}
    others: dict[str, pl.Series] = {}
    notes: dict[str, list[warnings.WarningMessage]] = {}  # said only for the columns kept
    for parts in _candidates(frame):
        layout: dict[str, str | None] = {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            parsed = _parse(frame, _combine(frame, parts), parts, source=source, time_format=time_format,
                            chosen=layout)
        if parsed is None or parsed.null_count() > 0.01 * frame.height:
            continue
        notes["+".join(parts)] = caught
        layouts["+".join(parts)] = layout.get("format")
        text = len(parts) == 1 and frame.schema[parts[0]] == pl.String
        if text and parsed.null_count() == frame[parts[0]].null_count():
            others[parts[0]] = parsed
        score = parsed.n_unique()
        if best is None or score > best[0]:
            best = (score, parts, parsed)
    if best is None:
        _refuse_unparsed_text(frame, source, time_format)
        return frame
    _, parts, parsed = best
    if parsed.null_count():
        raise StreamsynthError(
            f"{source}: column {'+'.join(parts)!r} has {parsed.null_count()} unparseable timestamps "
            f"(e.g. {_first_unparsed(frame, parts, parsed)!r})",
            hint="fix or drop those rows",
        )
    out = _replace(frame, parts, parsed)
    extra = [pl.Series(name, values) for name, values in others.items() if name in out.columns and name not in parts]
    for name in ["+".join(parts), *(s.name for s in extra)]:
        for note in notes.get(name, []):
            warnings.warn(note.message, note.category, stacklevel=2)
    if chosen is not None:
        chosen.update(time="+".join(parts), format=layouts.get("+".join(parts)))
    return out.with_columns(extra) if extra else out


def _given_time(
    frame: pl.DataFrame, time: str, source: str, time_format: str | None, chosen: dict[str, str | None] | None
) -> pl.DataFrame:
    """The event time named with ``--time`` (``Date+Time`` for parts), parsed, or an error."""
    layout: dict[str, str | None] = {}
    parts = [p.strip() for p in time.split("+")]
    _require_columns(frame, parts, source)
    expr = _combine(frame, parts)
    parsed = _parse(frame, expr, parts, source=source, time_format=time_format, strict=True, chosen=layout)
    if parsed is None or parsed.null_count() > 0:
        bad = _first_unparsed(frame, parts, parsed)
        raise StreamsynthError(
            f"{source}: cannot parse column {time!r} as timestamps (e.g. {bad!r})",
            hint="use ISO 8601, epoch seconds or milliseconds, give date and time columns "
            "as --time Date+Time, or give the layout as `time_format: '%d/%m/%Y %H:%M:%S'` in a "
            "schema file (--schema)",
        )
    if chosen is not None:
        chosen.update(time=time, format=layout.get("format"))
    return _parse_other_times(_replace(frame, parts, parsed), source)


def _refuse_unparsed_text(frame: pl.DataFrame, source: str, time_format: str | None) -> None:
    """No candidate parsed: a text column that looks like a time but fails is an error naming
    its bad values; a frame with no such column has no time column, which is allowed."""
    strings = [p for p in _candidates(frame) if frame.schema[p[0]] == pl.String or len(p) > 1]
    if not strings:
        return
    cand = strings[0]
    # strict: a layout that only parses to implausible years is reported as such
    parsed = _parse(frame, _combine(frame, cand), cand, source=source, time_format=time_format, strict=True)
    failed = frame.height if parsed is None else parsed.null_count()
    example = _first_unparsed(frame, cand, parsed)
    if re.match(r"^\s*[+-]?\d{5,}-\d\d-\d\d", example):
        raise StreamsynthError(
            f"{source}: column {'+'.join(cand)!r} holds years past 9999 (e.g. {example!r})",
            hint=f"fix or drop those rows; event times must fall in {_YEARS[0]}-{_YEARS[1]}",
        )
    raise StreamsynthError(
        f"{source}: cannot parse column {'+'.join(cand)!r} as timestamps: {failed:,} of "
        f"{frame.height:,} values fail (e.g. {example!r})",
        hint="use ISO 8601 or epoch seconds/milliseconds, fix or drop those rows, name the time "
        "column with --time, or mark this one as not a time in a schema file",
    )


def _parse_other_times(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Text columns besides the event time whose every value is a timestamp, as timestamps."""
    extra = []
    for parts in _candidates(frame):
        name = parts[0]
        if len(parts) > 1 or frame.schema[name] != pl.String:
            continue
        parsed = _parse(frame, pl.col(name), parts, source=source)
        if parsed is not None and parsed.null_count() == frame[name].null_count():
            extra.append(parsed.alias(name))
    return frame.with_columns(extra) if extra else frame


def is_time_name(name: str) -> bool:
    """Whether a column's name says it holds a time or a date."""
    low = name.lower()
    return low in _TIME_NAMES or low.endswith(("_at", "_time", "_ts", "_timestamp", "_date"))


def is_epoch(series: pl.Series) -> bool:
    """Whether a numeric column's magnitudes are those of epoch seconds, ms, us or ns
    (``air_time`` in minutes is not)."""
    return series.dtype.is_numeric() and _parse_epoch(series.head(1000).cast(pl.Float64)) is not None


def _candidates(frame: pl.DataFrame) -> Iterator[list[str]]:
    names = {c.lower(): c for c in frame.columns}
    for col, dtype in frame.schema.items():
        if dtype.is_temporal():
            yield [col]
    for col in frame.columns:
        if is_time_name(col) and not frame.schema[col].is_temporal():
            yield [col]
    if "time" in names:
        date_parts = [names[p] for p in ("year", "date", "month", "day") if p in names]
        if date_parts:
            yield [*date_parts, names["time"]]
    for col, dtype in frame.schema.items():
        if dtype == pl.String and not is_time_name(col):
            head = frame[col].drop_nulls().head(100)
            if head.len() and head.str.contains(_TIME_VALUE.pattern).all():
                yield [col]


def _combine(frame: pl.DataFrame, parts: list[str]) -> pl.Expr:
    if len(parts) == 1:
        return pl.col(parts[0])
    lowered = {p.lower() for p in parts}
    # Compact numeric dates and times (HDFS: 081109, 203615) lose leading zeros when read as ints.
    pieces = [
        pl.col(p).cast(pl.String).str.zfill(6)
        if frame.schema[p].is_integer() and p.lower() in ("date", "time")
        else pl.col(p).cast(pl.String)
        for p in parts
    ]
    if "year" not in lowered and _month_names(frame, parts):
        pieces.insert(0, pl.lit(str(_DEFAULT_YEAR)))
    return pl.concat_str(pieces, separator=" ")


def _month_names(frame: pl.DataFrame, parts: list[str]) -> bool:
    first = frame[parts[0]].cast(pl.String).drop_nulls().head(1).to_list()
    return bool(first) and first[0][:3].lower() in {
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"
    }


def _parse(
    frame: pl.DataFrame, expr: pl.Expr, parts: list[str], *, source: str = "data",
    time_format: str | None = None, strict: bool = False, chosen: dict[str, str | None] | None = None,
) -> pl.Series | None:
    """The column(s) as UTC timestamps, or None when they are not timestamps. Layouts that read
    as years outside 1900-2200 do not count; with ``strict`` they are an error naming the fix."""
    dtype = frame.schema[parts[0]] if len(parts) == 1 else pl.String
    name = "+".join(parts)
    if dtype == pl.Datetime or isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            expr = expr.dt.replace_time_zone("UTC")
        return frame.select(expr.dt.convert_time_zone("UTC").dt.cast_time_unit("us")).to_series()
    if dtype == pl.Date:
        return frame.select(expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")).to_series()
    if dtype.is_numeric():
        return _parse_epoch(frame.select(expr.cast(pl.Float64)).to_series())
    if dtype != pl.String:
        return None
    strings = frame.select(expr.cast(pl.String).str.strip_chars()).to_series()
    head = strings.drop_nulls().head(100)
    if len(parts) == 1 and time_format is None and head.str.contains(r"^\d{9,19}(\.\d+)?$").all():
        return _parse_epoch(strings.cast(pl.Float64, strict=False))
    if head.str.contains(r"\d:\d\d,\d").any():  # log4j's 18:01:47,978: a comma before the fraction
        strings = strings.str.replace(r"(\d:\d\d),(\d)", "$1.$2")
    if time_format is not None:
        formats: tuple[str | None, ...] = (time_format,)
    else:
        formats = _numeric_date_formats(strings, name, source) or _STRING_FORMATS
    best, best_format, implausible = None, None, None
    for fmt in formats:
        try:
            parsed = strings.str.to_datetime(format=fmt, strict=False, time_unit="us", time_zone="UTC")
        except (pl.exceptions.PolarsError, ValueError):
            continue
        if parsed.null_count() == parsed.len():
            continue
        years = parsed.dt.year()
        if not _YEARS[0] <= years.min() <= years.max() <= _YEARS[1]:
            implausible = implausible or (fmt, parsed)
            continue
        if best is None or parsed.null_count() < best.null_count():
            best, best_format = parsed, fmt
        if best.null_count() == strings.null_count():
            break
    if best is None and implausible is not None and strict:
        fmt, parsed = implausible
        years = parsed.dt.year()
        odd = parsed.filter((years < _YEARS[0]) | (years > _YEARS[1]))[0]
        value = strings.filter((years < _YEARS[0]) | (years > _YEARS[1]))[0]
        raise StreamsynthError(
            f"{source}: column {name!r} reads as year {odd.year} ({value!r} -> {odd:%Y-%m-%d %H:%M:%S}"
            f"{f' with {fmt!r}' if fmt else ''}), outside {_YEARS[0]}-{_YEARS[1]}",
            hint="give the layout as `time_format: '%y/%m/%d %H:%M:%S'` (strftime codes; %y is a two-digit "
            "year) in a schema file (--schema)",
        )
    if best is None:
        return None
    if chosen is not None:
        chosen["format"] = best_format
    return best.dt.convert_time_zone("UTC").dt.cast_time_unit("us")


def _numeric_date_formats(strings: pl.Series, name: str, source: str) -> tuple[str, ...] | None:
    """Formats for dates written as three numbers (17/06/09, 09.06.2017), the day-month-year
    order decided by the data: a field above 12 is no month, one above 31 no day. When the data
    fit several orders the first of :data:`_LAYOUTS` is taken, with a warning naming the fix."""
    sample = strings.drop_nulls().head(100_000)
    if not sample.head(100).str.contains(_NUMERIC_DATE).all():
        return None  # most time columns (ISO, epochs, log formats) stop here
    fields = sample.str.extract_groups(_NUMERIC_DATE)
    if sample.len() == 0 or fields.struct.field("1").null_count():
        return None
    first, sep, second, third = (fields.struct.field(k) for k in ("1", "2", "3", "4"))
    if first.str.len_chars().max() == 4 or sep.n_unique() > 1:
        return None  # year first in four digits: ISO and its cousins, read by the general formats
    values = [f.cast(pl.Int64) for f in (first, second, third)]
    lengths = [(f.str.len_chars().min(), f.str.len_chars().max()) for f in (first, second, third)]
    wide = [high == 4 for _, high in lengths]
    ranges = {"day": 31, "month": 12, "year": 10**4}

    def fit(order: tuple[str, ...]) -> bool:
        # A four-digit field is the year; a two-digit year is always written with two digits
        # (6/9/17 is no 2006); days and months within their ranges.
        for part, v, (low, high), w in zip(order, values, lengths, wide, strict=True):
            if any(wide) and (part == "year") != w:
                return False
            if part == "year" and low != high:
                return False
            if v.min() < (0 if part == "year" else 1) or v.max() > ranges[part]:
                return False
        return True

    fits = [layout for layout, order in _LAYOUTS.items() if fit(order)]
    if not fits:
        return None
    codes = {"day": "%d", "month": "%m", "year": "%Y" if any(wide) else "%y"}
    s = sep[0]
    dates = {layout: s.join(codes[f] for f in _LAYOUTS[layout]) for layout in fits}
    if len(fits) > 1:
        chosen, other = dates[fits[0]], dates[fits[1]]
        warnings.warn(
            f"{source}: column {name!r}: dates such as {sample[0]!r} fit {' or '.join(dates.values())}; "
            f"reading them as {chosen}. If that is wrong, give `time_format: '{other} %H:%M:%S'` "
            "(or the layout that fits) in a schema file (--schema)",
            DataWarning, stacklevel=2,
        )
    date = dates[fits[0]]
    return tuple(date + clock for clock in _CLOCKS)


def _parse_epoch(values: pl.Series) -> pl.Series | None:
    """Epoch numbers by magnitude: seconds, milliseconds, microseconds or nanoseconds."""
    sample = values.drop_nulls()
    if sample.len() == 0:
        return None
    magnitude = float(sample.abs().median())
    for unit, low, high in (("s", 1e8, 1e10), ("ms", 1e11, 1e13), ("us", 1e14, 1e16), ("ns", 1e17, 1e19)):
        if low <= magnitude < high:
            scale = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 0.001}[unit]
            micros = (values * scale).round(0).cast(pl.Int64)
            return micros.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return None


def _replace(frame: pl.DataFrame, parts: list[str], parsed: pl.Series) -> pl.DataFrame:
    if len(parts) == 1:
        return frame.with_columns(parsed.alias(parts[0]))
    name = "ts" if "ts" not in frame.columns else "event_ts"
    index = frame.columns.index(parts[0])
    out = frame.drop(parts).insert_column(min(index, frame.width - len(parts)), parsed.alias(name))
    return out


def _time_name_after(frame: pl.DataFrame) -> str | None:
    for name, dtype in frame.schema.items():
        if dtype == TIME_DTYPE:
            return name
    return None


def _first_unparsed(frame: pl.DataFrame, parts: list[str], parsed: pl.Series | None) -> str:
    raw = frame.select(_combine(frame, parts).cast(pl.String)).to_series()
    if parsed is None:
        return raw.drop_nulls().head(1).to_list()[0] if raw.drop_nulls().len() else "<null>"
    bad = raw.filter(parsed.is_null())
    return bad.head(1).to_list()[0] if bad.len() else "<null>"


# -- checks --------------------------------------------------------------------------------
def _require_columns(frame: pl.DataFrame, names: list[str], source: str) -> None:
    for name in names:
        if name not in frame.columns:
            close = closest(name, frame.columns)
            raise StreamsynthError(
                f"{source} has no column {name!r}" + (f" (did you mean {close!r}?)" if close else ""),
                hint=f"columns are: {', '.join(frame.columns)}",
            )


def _numbers_from_mixed(frame: pl.DataFrame, source: str, keep: set[str]) -> pl.DataFrame:
    """Text columns whose values are mostly numbers, read as numbers: the rest become nulls,
    with a warning naming the column, the share and examples of the other values, and the
    schema override that keeps the column as text."""
    converted = []
    for name, dtype in frame.schema.items():
        if dtype != pl.String or name in keep:
            continue
        values = frame[name].drop_nulls()
        if values.len() < 10:
            continue
        head = values.head(1000)
        if head.cast(pl.Float64, strict=False).null_count() > (1 - _MIXED_SHARE) * head.len():
            continue  # cheap test on the first values: most text columns stop here
        numeric = values.cast(pl.Float64, strict=False)
        n_other = numeric.null_count()
        if n_other == 0 or n_other >= (1 - _MIXED_SHARE) * values.len():
            continue
        others = values.filter(numeric.is_null()).unique(maintain_order=True).head(3).to_list()
        row = frame.with_row_index("_row").filter(
            pl.col(name).is_not_null() & pl.col(name).cast(pl.Float64, strict=False).is_null()
        )["_row"][0]
        warnings.warn(
            f"{source}: column {name!r} is numbers except {n_other / values.len():.1%} of its values "
            f"(e.g. {', '.join(map(repr, others))}, first at row {row + 1}); reading it as numbers with those "
            f"as nulls. To keep it as text, give `columns: {{{name}: categorical}}` in a schema file (--schema)",
            DataWarning, stacklevel=3,
        )
        converted.append(pl.col(name).cast(pl.Float64, strict=False))
    return frame.with_columns(converted) if converted else frame


def _flatten(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Struct columns (nested JSON objects, Parquet groups) as one column per field, named
    ``parent.field`` (``device.os``), nested ones to any depth."""
    while any(isinstance(dtype, pl.Struct) for dtype in frame.schema.values()):
        exprs = []
        for name, dtype in frame.schema.items():
            if isinstance(dtype, pl.Struct):
                exprs += [pl.col(name).struct.field(f.name).alias(f"{name}.{f.name}") for f in dtype.fields]
            else:
                exprs.append(pl.col(name))
        names = [e.meta.output_name() for e in exprs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise StreamsynthError(
                f"{source}: nested fields flatten to {', '.join(map(repr, twice))}, which another column is "
                "already called",
                hint="rename that column or the nested field",
            )
        frame = frame.select(exprs)
    return frame


def _check_years(frame: pl.DataFrame, source: str) -> None:
    """Timestamps stored as such (Parquet, or text already parsed) in years outside 1678-9999:
    beyond what Python's datetimes and nanosecond clocks downstream hold, and most likely a
    misread unit."""
    low, high = _STORED_YEARS
    for name, dtype in frame.schema.items():
        if not (isinstance(dtype, pl.Datetime) or dtype == pl.Date):
            continue
        years = frame[name].dt.year()
        first, last = years.min(), years.max()
        if first is None or low <= first <= last <= high:
            continue
        outside = (years < low) | (years > high)
        row = int(outside.arg_true()[0])
        raise StreamsynthError(
            f"{source}: column {name!r} holds the year {years[row]} (row {row + 1}), outside {low}-{high}",
            hint="fix or drop those rows; a timestamp stored in the wrong unit (milliseconds taken as seconds) "
            "gives such years",
        )


def _read_error(path: Path, exc: Exception) -> StreamsynthError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = "check that the file is complete and in the format its suffix says"
    if "could not parse" in text or "mixed" in text.lower() or "cast" in text.lower():
        hint = "a column holds values of more than one type; fix the rows or declare the column in a schema file"
    return StreamsynthError(f"cannot read {path}: {text}", hint=hint)
