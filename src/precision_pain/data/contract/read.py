"""The one table reader: CSV or Parquet, whole or in chunks, with one set of file errors.

Every table the project reads goes through :func:`iter_table` (chunks) or
:func:`read_table` (the whole file): a researcher's cohort for ``prepare`` and
``predict`` (CSV as raw text cells, validated later by the contract), and the files
the pipeline itself wrote (``typed=True``: CSV with inferred types, Parquet as
stored; an empty table allowed). A file that cannot be read raises one
:class:`ContractError` naming the file, what is wrong and the fix; nothing here
ends in a traceback.
"""

from __future__ import annotations

import csv
import errno
import logging
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pandas as pd
import pyarrow as pa

from precision_pain.data.contract.deid import shown_name
from precision_pain.data.contract.errors import ContractError, Problem
from precision_pain.data.contract.schema import _DOC
from precision_pain.io import TABLE_SUFFIXES

logger = logging.getLogger(__name__)

RUN_PIPELINE_FIX = "run `dvc repro` in the project first (it writes this file)"
_NOT_UTF8 = ("the file is not UTF-8 text", "save it as 'CSV UTF-8'")
_BAD_PARQUET_FIX = "write it again with pandas/pyarrow, or save it as CSV"


class TableNotFoundError(ContractError, FileNotFoundError):
    """The table's path names no file (a :class:`ContractError` and a ``FileNotFoundError``)."""


def read_table(path: str | Path, *, typed: bool = False, allow_empty: bool = False,
               missing_fix: str | None = None) -> pd.DataFrame:
    """Read a whole CSV/Parquet table; CSV cells stay raw text unless ``typed``.

    ``allow_empty`` accepts a header without rows (the pipeline writes an empty ground
    truth); ``missing_fix`` replaces the fix given when the file does not exist.
    """
    (frame,) = iter_table(path, None, typed=typed, allow_empty=allow_empty,
                          missing_fix=missing_fix)
    return frame


def read_pipeline_table(path: str | Path) -> pd.DataFrame:
    """A table a pipeline stage wrote: typed, possibly empty, 'run dvc repro' if absent."""
    return read_table(path, typed=True, allow_empty=True, missing_fix=RUN_PIPELINE_FIX)


def iter_table(path: str | Path, chunk_size: int | None, *, typed: bool = False,
               allow_empty: bool = False, missing_fix: str | None = None
               ) -> Iterator[pd.DataFrame]:
    """A table in chunks of ``chunk_size`` rows (``None``: the whole file as one chunk).

    File errors (also those found in a later chunk) name the file and the fix.
    """
    path = Path(path)
    fmt = _table_file(path, missing_fix)
    chunks = (_csv_chunks(path, chunk_size, typed) if fmt == "csv"
              else _parquet_chunks(path, chunk_size))
    rows = columns = 0
    for chunk in chunks:
        rows, columns = rows + len(chunk), chunk.shape[1]
        if len(chunk) or allow_empty:
            yield chunk
    if rows == 0 and not allow_empty:
        _fail(path, "the file has a header but no data rows", "add the cohort rows")
    # logged once the last chunk has been used, so after the work done on the chunks
    logger.info("read %s to the end: %d rows x %d columns", path, rows, columns)


def _fail(path: str | Path, message: str, fix: str, column: str | None = None) -> NoReturn:
    raise ContractError(path, [Problem(column, message, fix)])


# --------------------------------------------------------------------------- the file itself

def _table_file(path: Path, missing_fix: str | None) -> str:
    """'csv' or 'parquet' for a readable regular file; otherwise a clear error."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        what = ("is a symbolic link to a file that does not exist" if path.is_symlink()
                else "not found")
        raise TableNotFoundError(path, [Problem(None, what, missing_fix or (
            f"check the path (the current directory is {Path.cwd()})"))]) from None
    except OSError as exc:
        _fail(path, *_os_problem(exc))
    except ValueError:  # e.g. an embedded NUL character
        _fail(path, "is not a usable file path (it contains a NUL character)",
              "check how the path was built or typed")
    if stat.S_ISDIR(mode):
        _fail(path, "is a directory", "give the path of the CSV or Parquet file inside it")
    if not stat.S_ISREG(mode):
        _fail(path, "is not a regular file (a device, pipe or socket)",
              "save the table to a file and give its path")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        _fail(path, f"unsupported file type {suffix or '(no suffix)'!r}",
              "save it as CSV (comma-separated, UTF-8; suffix .csv) or Parquet (.parquet/.pq)")
    return "csv" if suffix == ".csv" else "parquet"


def _os_problem(exc: OSError) -> tuple[str, str]:
    """(message, fix) for an operating-system error while opening or reading a table."""
    if exc.errno == errno.ELOOP:
        return ("is a symbolic link loop (following the links leads back to a link)",
                "point the link at the real file, or give the file's own path")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read (permission denied)", "make the file readable for this user"
    return (f"cannot be read ({exc.strerror or type(exc).__name__})",
            "check the file and the disk it is on")


# --------------------------------------------------------------------------- CSV

def _csv_chunks(path: Path, chunk_size: int | None, typed: bool) -> Iterator[pd.DataFrame]:
    header = csv_header(path)
    check_header(path, header)
    text = {} if typed else {"dtype": str, "na_filter": False}
    try:
        reader = pd.read_csv(path, encoding="utf-8-sig", chunksize=chunk_size, **text)
        for chunk in ([reader] if chunk_size is None else reader):
            chunk.columns = [str(name).strip() for name in chunk.columns]
            yield chunk
    except UnicodeDecodeError:
        _fail(path, *_NOT_UTF8)
    except pd.errors.ParserError as exc:
        _fail(path, _parser_detail(exc, len(header)),
              "quote cells that contain commas, or remove the extra fields")
    except OSError as exc:
        _fail(path, *_os_problem(exc))


def _parser_detail(exc: pd.errors.ParserError, n_header: int) -> str:
    line = re.search(r"line (\d+), saw (\d+)", str(exc))
    return (f"file line {line[1]} has {line[2]} fields but the header has {n_header}"
            if line else f"cannot parse the CSV ({exc})")


def csv_header(path: Path) -> list[str]:
    """The first non-blank row of a CSV file, as written (BOM removed)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = csv.reader(handle)
            first = next((row for row in rows if any(c.strip() for c in row)), None)
    except UnicodeDecodeError:
        _fail(path, *_NOT_UTF8)
    except csv.Error as exc:
        _fail(path, f"the header cannot be read ({_csv_error(exc)})",
              "check that this is the cohort CSV: a header cell is never this long (a quote "
              "left open makes the rest of the file one cell); close the quote or remove it")
    except OSError as exc:
        _fail(path, *_os_problem(exc))
    if first is None:
        _fail(path, "the file is empty", f"write the header row and data rows ({_DOC})")
    return first


def _csv_error(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return f"a cell is longer than {csv.field_size_limit():,} characters"
    return str(exc)


def check_header(path: Path, header: list[str]) -> None:
    """Refuse a header that shows the wrong delimiter or repeats a column name."""
    if len(header) == 1:
        counts = {d: header[0].count(d) for d in (";", "\t", "|")}
        delimiter, n = max(counts.items(), key=lambda item: item[1])
        if n:
            shown = "tab" if delimiter == "\t" else repr(delimiter)
            _fail(path, f"file looks {shown}-delimited (the header parsed as one column)",
                  "save it comma-separated (or as Parquet)")
    names = [name.strip() for name in header]
    problems = [
        Problem(shown_name(name), f"appears {names.count(name)} times in the header (columns "
                      f"{', '.join(str(i + 1) for i, n in enumerate(names) if n == name)})",
                "keep one column of that name; rename or delete the others")
        for name in dict.fromkeys(n for n in names if names.count(n) > 1)
    ]
    if problems:
        raise ContractError(path, problems)


# --------------------------------------------------------------------------- Parquet

def _parquet_chunks(path: Path, chunk_size: int | None) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        _fail(path, f"not a readable Parquet file ({type(exc).__name__})", _BAD_PARQUET_FIX)
    names = handle.schema_arrow.names
    duplicated = list(dict.fromkeys(n for n in names if names.count(n) > 1))
    if duplicated:
        raise ContractError(path, [Problem(shown_name(n), "appears more than once in the columns",
                                           "keep one column of that name") for n in duplicated])
    try:
        if chunk_size is None:
            yield pd.read_parquet(path)
            return
        for batch in handle.iter_batches(batch_size=chunk_size):
            yield batch.to_pandas()
    except (OSError, ValueError, pa.ArrowException) as exc:
        _fail(path, f"not a readable Parquet file ({type(exc).__name__})", _BAD_PARQUET_FIX)
