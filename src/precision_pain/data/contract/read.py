"""Reading cohort files: CSV as raw text cells, or Parquet, with file-level errors."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import NoReturn

import pandas as pd
import pyarrow as pa

from precision_pain.data.contract.errors import ContractError, Problem
from precision_pain.data.contract.schema import _DOC

logger = logging.getLogger(__name__)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a cohort file (CSV as raw text cells, or Parquet) without validating it."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        _fail(path, what, f"check the path (the current directory is {Path.cwd()})")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        df = _read_csv(path)
    elif suffix in (".parquet", ".pq"):
        df = _read_parquet(path)
    else:
        _fail(path, f"unsupported file type {suffix or '(no suffix)'!r}",
              "save it as CSV (comma-separated, UTF-8; suffix .csv) or Parquet (.parquet/.pq)")
    if len(df) == 0:
        _fail(path, "the file has a header but no data rows", "add the cohort rows")
    logger.info("read %s: %d rows x %d columns", path, len(df), df.shape[1])
    return df


def _fail(path: str | Path, message: str, fix: str, column: str | None = None) -> NoReturn:
    raise ContractError(path, [Problem(column, message, fix)])


def _read_csv(path: Path) -> pd.DataFrame:
    header = csv_header(path)
    check_header(path, header)
    try:
        df = pd.read_csv(path, dtype=str, na_filter=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        _fail(path, "the file is not UTF-8 text", "save it as 'CSV UTF-8'")
    except pd.errors.ParserError as exc:
        line = re.search(r"line (\d+), saw (\d+)", str(exc))
        detail = (f"file line {line[1]} has {line[2]} fields but the header has {len(header)}"
                  if line else f"cannot parse the CSV ({exc})")
        _fail(path, detail, "quote cells that contain commas, or remove the extra fields")
    df.columns = [str(name).strip() for name in df.columns]
    return df


def csv_header(path: Path) -> list[str]:
    """The first non-blank row of a CSV file, as written (BOM removed)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            first = next((row for row in csv.reader(handle) if any(c.strip() for c in row)), None)
    except UnicodeDecodeError:
        _fail(path, "the file is not UTF-8 text", "save it as 'CSV UTF-8'")
    if first is None:
        _fail(path, "the file is empty", f"write the header row and data rows ({_DOC})")
    return first


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
        Problem(name, f"appears {names.count(name)} times in the header (columns "
                      f"{', '.join(str(i + 1) for i, n in enumerate(names) if n == name)})",
                "keep one column of that name; rename or delete the others")
        for name in dict.fromkeys(n for n in names if names.count(n) > 1)
    ]
    if problems:
        raise ContractError(path, problems)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        _fail(path, f"not a readable Parquet file ({type(exc).__name__})",
              "write it again with pandas/pyarrow, or save it as CSV")
    duplicated = list(dict.fromkeys(df.columns[df.columns.duplicated()]))
    if duplicated:
        raise ContractError(path, [Problem(str(c), "appears more than once in the columns",
                                           "keep one column of that name") for c in duplicated])
    return df
