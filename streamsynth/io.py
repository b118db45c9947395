"""Reading and writing event tables: CSV, Parquet, JSON Lines, or a directory of them.

Reads are lazy (polars scans); timestamps in common shapes (ISO strings, epoch seconds or
milliseconds, log formats, separate date and time columns) become ``Datetime(us, UTC)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl

from streamsynth.contract import TIME_DTYPE
from streamsynth.errors import StreamsynthError

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
        return pl.concat(
            [pl.scan_csv(s, infer_schema_length=10_000, try_parse_dates=False) for s in sources],
            how="diagonal_relaxed",
        )
    if fmt == "parquet":
        return pl.scan_parquet(sources)
    return pl.concat([pl.scan_ndjson(s, infer_schema_length=10_000) for s in sources], how="diagonal_relaxed")


def read(path: str | Path, *, time: str | None = None, columns: list[str] | None = None) -> pl.DataFrame:
    """Read a file or directory and normalise its event-time column to ``Datetime(us, UTC)``.

    ``time`` names the time column, or several joined by ``+`` (``"Date+Time"``) when date
    and time of day are stored apart; by default the time column is found by name and type.
    """
    path = Path(path)
    try:
        frame = scan(path).collect()
    except pl.exceptions.PolarsError as exc:
        raise _read_error(path, exc) from None
    if frame.height == 0:
        raise StreamsynthError(f"{path} has a header but no rows", hint="give data with rows")
    if columns:
        _require_columns(frame, columns, str(path))
        frame = frame.select(columns)
    _check_mixed_types(frame, str(path))
    return normalize_time(frame, time=time, source=str(path))


def iter_batches(path: str | Path, batch_size: int = 10_000, *, time: str | None = None) -> Iterator[pl.DataFrame]:
    """Stream a file or directory in batches without reading it whole (for replay).

    The time column is chosen on the first batch and parsed the same way in every batch.
    """
    path = Path(path)
    chosen = time
    try:
        for batch in scan(path).collect_batches(chunk_size=batch_size):
            if batch.height == 0:
                continue
            batch = normalize_time(batch, time=chosen, source=str(path))
            if chosen is None:
                chosen = _time_name_after(batch)
            yield batch
    except pl.exceptions.PolarsError as exc:
        raise _read_error(path, exc) from None


def write(frame: pl.DataFrame, path: str | Path) -> Path:
    """Write one frame as Parquet, CSV or JSON Lines, by the file's suffix."""
    return write_batches([frame], path)


def write_batches(batches: Iterable[pl.DataFrame], path: str | Path) -> Path:
    """Write a stream of batches to one file without holding them all in memory."""
    path = Path(path)
    fmt = format_of(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = BatchFileWriter(path, fmt)
    except OSError as exc:
        raise StreamsynthError(f"cannot write {path}: {exc.strerror}", hint="choose a writable path") from None
    with writer:
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
def normalize_time(frame: pl.DataFrame, *, time: str | None = None, source: str = "data") -> pl.DataFrame:
    """Parse the event-time column into ``Datetime(us, UTC)`` in place.

    With ``time=None`` every candidate (datetime-typed columns, time-like names, date and time
    stored apart) is tried and the one parsing to the most distinct instants is kept; the
    parsed column keeps its name (``ts`` for a combination). Other time-like columns stay as
    they are. Frames without any time column come back unchanged.
    """
    if time:
        parts = [p.strip() for p in time.split("+")]
        _require_columns(frame, parts, source)
        expr = _combine(frame, parts)
        parsed = _parse(frame, expr, parts)
        if parsed is None or parsed.null_count() > 0:
            bad = _first_unparsed(frame, parts, parsed)
            raise StreamsynthError(
                f"{source}: cannot parse column {time!r} as timestamps (e.g. {bad!r})",
                hint="use ISO 8601, epoch seconds or milliseconds, or give date and time columns "
                "as --time Date+Time",
            )
        return _replace(frame, parts, parsed)

    if TIME_DTYPE in frame.schema.values():
        return frame
    best: tuple[int, list[str], pl.Series] | None = None
    for parts in _candidates(frame):
        parsed = _parse(frame, _combine(frame, parts), parts)
        if parsed is None or parsed.null_count() > 0.01 * frame.height:
            continue
        score = parsed.n_unique()
        if best is None or score > best[0]:
            best = (score, parts, parsed)
    if best is None:
        strings = [p for p in _candidates(frame) if frame.schema[p[0]] == pl.String or len(p) > 1]
        if strings:
            cand = strings[0]
            parsed = _parse(frame, _combine(frame, cand), cand)
            failed = frame.height if parsed is None else parsed.null_count()
            raise StreamsynthError(
                f"{source}: cannot parse column {'+'.join(cand)!r} as timestamps: {failed:,} of "
                f"{frame.height:,} values fail (e.g. {_first_unparsed(frame, cand, parsed)!r})",
                hint="use ISO 8601 or epoch seconds/milliseconds, fix or drop those rows, name the time "
                "column with --time, or mark this one as not a time in a schema file",
            )
        return frame
    _, parts, parsed = best
    if parsed.null_count():
        raise StreamsynthError(
            f"{source}: column {'+'.join(parts)!r} has {parsed.null_count()} unparseable timestamps "
            f"(e.g. {_first_unparsed(frame, parts, parsed)!r})",
            hint="fix or drop those rows",
        )
    return _replace(frame, parts, parsed)


def is_time_name(name: str) -> bool:
    """Whether a column's name says it holds a time or a date."""
    low = name.lower()
    return low in _TIME_NAMES or low.endswith(("_at", "_time", "_ts", "_timestamp", "_date"))


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


def _parse(frame: pl.DataFrame, expr: pl.Expr, parts: list[str]) -> pl.Series | None:
    dtype = frame.schema[parts[0]] if len(parts) == 1 else pl.String
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
    if len(parts) == 1 and strings.drop_nulls().head(100).str.contains(r"^\d{9,19}(\.\d+)?$").all():
        return _parse_epoch(strings.cast(pl.Float64, strict=False))
    best = None
    for fmt in _STRING_FORMATS:
        try:
            parsed = strings.str.to_datetime(format=fmt, strict=False, time_unit="us", time_zone="UTC")
        except (pl.exceptions.PolarsError, ValueError):
            continue
        if best is None or parsed.null_count() < best.null_count():
            best = parsed
        if best.null_count() == strings.null_count():
            break
    if best is None or best.null_count() == best.len():
        return None
    return best.dt.convert_time_zone("UTC").dt.cast_time_unit("us")


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
    from streamsynth.schema import _closest

    for name in names:
        if name not in frame.columns:
            close = _closest(name, frame.columns)
            raise StreamsynthError(
                f"{source} has no column {name!r}" + (f" (did you mean {close!r}?)" if close else ""),
                hint=f"columns are: {', '.join(frame.columns)}",
            )


def _check_mixed_types(frame: pl.DataFrame, source: str) -> None:
    """A text column whose values are nearly all numbers is a data error, not a category."""
    for name, dtype in frame.schema.items():
        if dtype != pl.String:
            continue
        values = frame[name].drop_nulls()
        if values.len() < 10:
            continue
        numeric = values.cast(pl.Float64, strict=False)
        n_numeric = numeric.len() - numeric.null_count()
        if 0.9 * values.len() <= n_numeric < values.len():
            bad = values.filter(numeric.is_null())
            idx = frame.with_row_index("_row").filter(
                pl.col(name).is_not_null() & pl.col(name).cast(pl.Float64, strict=False).is_null()
            )["_row"][0]
            raise StreamsynthError(
                f"{source}: column {name!r} mixes numbers and text "
                f"({n_numeric} numbers, {bad.len()} other values such as {bad[0]!r} at row {idx + 1})",
                hint=f"fix those values, or declare the column's role in a schema file "
                f"(e.g. `{name}: categorical`)",
            )


def _read_error(path: Path, exc: Exception) -> StreamsynthError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = "check that the file is complete and in the format its suffix says"
    if "could not parse" in text or "mixed" in text.lower() or "cast" in text.lower():
        hint = "a column holds values of more than one type; fix the rows or declare the column in a schema file"
    return StreamsynthError(f"cannot read {path}: {text}", hint=hint)
