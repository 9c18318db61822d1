"""Cohort data contract, version 1: the schema as data, ingest and validation.

``SCHEMA`` is the one machine-readable copy of the contract (one row = one
treatment episode of one patient). ``docs/data-contract.md`` is generated from it
by :func:`render_contract_markdown`; :func:`read_table` loads a CSV/Parquet file
as raw cells and :func:`validate_cohort` checks every rule at once, returning a
new, canonically typed frame or raising one :class:`ContractError` that lists
every problem with its column, data rows (1-based, header excluded) and fix.
Error messages show only the offending cells of the offending column, and never
the values of a column that looks like a direct identifier.

Regenerate the page with ``python -m precision_pain.data.contract > docs/data-contract.md``.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa

from precision_pain.registry import CONDITIONS, TREATMENT_NAMES

logger = logging.getLogger(__name__)

CONTRACT_VERSION = 1

Kind = Literal["id", "int", "float", "bool", "category", "diplotype", "genotype"]
Role = Literal["identity", "feature", "genotype", "outcome"]


@dataclass(frozen=True)
class ColumnSpec:
    """One contract column: type, role, allowed values or range, and meaning.

    ``ceiling`` (age only) is the largest plausible value: values in
    (``max``, ``ceiling``] are top-coded to ``max`` instead of refused.
    ``examples`` are documentation for diplotypes, whose alleles are open-ended.
    """

    name: str
    kind: Kind
    role: Role
    description: str
    allowed: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    ceiling: float | None = None
    nullable: bool = False


_SNP = ("A/A", "A/G", "G/A", "G/G")

SCHEMA: tuple[ColumnSpec, ...] = (
    ColumnSpec("patient_id", "id", "identity",
               "pseudonymous key; several rows may share it (sequential treatment trials); "
               "splits group by it"),
    ColumnSpec("age", "int", "feature",
               "years; 90 means 90 or older (HIPAA Safe Harbor top-coding)",
               min=18, max=90, ceiling=120),
    ColumnSpec("sex", "category", "feature", "sex", allowed=("F", "M")),
    ColumnSpec("ancestry", "category", "feature", "ancestry group",
               allowed=("european", "african_american", "east_asian", "latino", "south_asian",
                        "other")),
    ColumnSpec("bmi", "float", "feature", "body-mass index, kg/m2", min=12, max=70),
    ColumnSpec("condition", "category", "feature", "the chronic-pain condition treated",
               allowed=CONDITIONS),
    ColumnSpec("pain_duration_months", "float", "feature",
               "months in pain (chronic = at least 3 months)", min=3, max=600),
    ColumnSpec("pain_baseline", "float", "feature", "NRS pain at the start of the episode",
               min=0, max=10),
    ColumnSpec("pcs", "int", "feature", "Pain Catastrophizing Scale", min=0, max=52),
    ColumnSpec("phq9", "int", "feature", "PHQ-9 depression score", min=0, max=27),
    ColumnSpec("gad7", "int", "feature", "GAD-7 anxiety score", min=0, max=21),
    ColumnSpec("smoker", "bool", "feature", "current smoker"),
    ColumnSpec("activity_level", "category", "feature", "physical activity level",
               allowed=("low", "moderate", "high")),
    ColumnSpec("prior_spine_surgery", "bool", "feature", "had spine surgery before"),
    ColumnSpec("baseline_mme", "float", "feature",
               "current opioid dose, morphine milligram equivalents/day", min=0),
    ColumnSpec("ort_score", "int", "feature", "Opioid Risk Tool", min=0, max=26),
    ColumnSpec("egfr", "float", "feature", "kidney function, mL/min/1.73m2", min=5, max=150),
    ColumnSpec("prior_gi_ulcer", "bool", "feature", "history of gastrointestinal ulcer"),
    ColumnSpec("anticoagulant", "bool", "feature", "takes an anticoagulant"),
    ColumnSpec("cyp2d6_inhibitor", "bool", "feature",
               "takes a strong CYP2D6 inhibitor (phenoconversion)"),
    ColumnSpec("CYP2D6", "diplotype", "genotype", "CYP2D6 star-allele diplotype",
               examples=("*1/*4", "*1/*1x2", "*10/*41", "*5/*5"), nullable=True),
    ColumnSpec("CYP2C9", "diplotype", "genotype", "CYP2C9 star-allele diplotype",
               examples=("*1/*1", "*1/*3", "*2/*3"), nullable=True),
    ColumnSpec("CYP2C19", "diplotype", "genotype", "CYP2C19 star-allele diplotype",
               examples=("*1/*17", "*2/*2"), nullable=True),
    ColumnSpec("OPRM1_rs1799971", "genotype", "genotype", "OPRM1 A118G (A>G)",
               allowed=_SNP, nullable=True),
    ColumnSpec("COMT_rs4680", "genotype", "genotype", "COMT Val158Met (G = Val, A = Met)",
               allowed=_SNP, nullable=True),
    ColumnSpec("treatment", "category", "outcome",
               "the treatment tried in this episode: a treatment registry name",
               allowed=TREATMENT_NAMES),
    ColumnSpec("pain_followup", "float", "outcome", "NRS pain at follow-up (12 weeks)",
               min=0, max=10),
    ColumnSpec("adverse_event", "bool", "outcome",
               "a serious treatment-related adverse event during the episode"),
)

_BY_NAME = {spec.name: spec for spec in SCHEMA}
_ROW_NOTE = "row numbers count data rows from 1, header excluded"
_DOC = "docs/data-contract.md"


def column(name: str) -> ColumnSpec:
    """The spec of contract column ``name``; unknown names list the valid ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a contract column; columns: {', '.join(_BY_NAME)}"
                       ) from None


def feature_columns() -> tuple[str, ...]:
    """Names of the patient-feature columns (genotypes excluded), in schema order."""
    return _names("feature")


def genotype_columns() -> tuple[str, ...]:
    """Names of the genotype/diplotype columns, in schema order."""
    return _names("genotype")


def outcome_columns() -> tuple[str, ...]:
    """Names of the treatment and outcome columns, in schema order."""
    return _names("outcome")


def _names(role: Role) -> tuple[str, ...]:
    return tuple(spec.name for spec in SCHEMA if spec.role == role)


# --------------------------------------------------------------------------- errors

_SHOW = 5  # row numbers and values shown per problem
_KEEP_ROWS = 1000  # row numbers kept per problem; ``count`` is the total


@dataclass(frozen=True)
class Problem:
    """One contract violation.

    ``rows`` are 1-based data row numbers (header excluded), at most the first
    1000; ``count`` is the total number of offending rows (or columns, for
    file-level problems). ``values`` are distinct offending cells of ``column``.
    """

    column: str | None
    message: str
    fix: str
    rows: list[int] = field(default_factory=list)
    count: int = 0
    values: list[str] = field(default_factory=list)
    allowed: str = ""

    def describe(self) -> str:
        """One readable line: column, count, rows, values, allowed values, fix."""
        where = self.column if self.column is not None else "(file)"
        text = f"{where}: {self.message}"
        if self.rows:
            noun = "row" if self.count == 1 else "rows"
            text = f"{where}: {self.count} {noun} {self.message} ({_rows_text(self)})"
        if self.values:
            text += f"; values: {', '.join(self.values)}"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        return f"{text}. Fix: {self.fix}"


def _rows_text(problem: Problem) -> str:
    shown = ", ".join(str(r) for r in problem.rows[:_SHOW])
    more = problem.count - min(len(problem.rows), _SHOW)
    label = "row" if problem.count == 1 else "rows"
    return f"{label} {shown}" + (f" and {more} more" if more > 0 else "")


class ContractError(ValueError):
    """Input that breaks the data contract; ``problems`` lists every violation."""

    def __init__(self, source: str | Path, problems: Sequence[Problem]) -> None:
        self.source = str(source)
        self.problems = list(problems)
        super().__init__(self.report())

    def __reduce__(self) -> tuple[type, tuple[str, list[Problem]]]:
        return type(self), (self.source, self.problems)

    def report(self) -> str:
        """Multi-line report: the file first, then one line per problem."""
        n = len(self.problems)
        head = (f"{self.source}: {n} problem{'s' if n != 1 else ''} with the cohort data "
                f"(contract v{CONTRACT_VERSION}, see {_DOC}; {_ROW_NOTE}):")
        return "\n".join([head, *(f"  - {p.describe()}" for p in self.problems)])


# --------------------------------------------------------------------------- de-identification

_ID_FIX = "remove the column; keep only the pseudonymous patient_id"
# Compact names (lower case, separators removed) that are direct identifiers anywhere inside.
_ID_FRAGMENTS = (
    "firstname", "lastname", "middlename", "givenname", "familyname", "fullname", "surname",
    "maidenname", "patientname", "ptname", "medicalrecord", "socialsecurity", "streetaddress",
    "homeaddress", "mailingaddress", "email", "phonenumber", "telephone", "cellphone",
    "zipcode", "postalcode", "postcode", "dateofbirth", "birthdate", "birthday",
)
# Compact names that are identifiers when they are the whole name.
_ID_EXACT = frozenset({"name", "initials", "mrn", "ssn", "address", "street", "city", "county",
                       "phone", "tel", "mobile", "fax", "email", "dob", "zip", "zip5"})
# Words (after splitting on separators and camelCase) that mark an identifier column.
_ID_WORDS = frozenset({"mrn", "ssn", "address", "street", "city", "county", "phone",
                       "telephone", "mobile", "fax", "email", "zip", "zipcode", "postcode",
                       "postal", "dob", "dod", "date", "dates", "datetime", "timestamp"})
_DATE_NAME = re.compile(r"^dateof|(birth|service|admission|admit|discharge|visit|encounter|"
                        r"death|procedure|surgery|appointment|followup|enrol+ment|episode|"
                        r"start|end|treatment)dat(e|etime)s?$")
_ID_VALUES = (
    ("e-mail addresses", re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")),
    ("US Social Security numbers", re.compile(r"\d{3}-\d{2}-\d{4}")),
    ("US phone numbers", re.compile(r"(\+?1[\s.-]?)?(\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}")),
    ("exact dates", re.compile(r"\d{4}-\d{1,2}-\d{1,2}([T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?"
                               r"|\d{1,2}/\d{1,2}/(\d{2}|\d{4})")),
    ("5-digit ZIP codes", re.compile(r"\d{5}(-\d{4})?")),
)
_VALUE_SAMPLE = 10_000


def find_identifier_columns(columns: Iterable[object], df: pd.DataFrame | None = None
                            ) -> list[str]:
    """Columns that look like direct identifiers: by name, and by value for non-contract ones."""
    return list(_identifier_reasons([str(c) for c in columns], df))


def _identifier_reasons(columns: Sequence[str], df: pd.DataFrame | None) -> dict[str, str]:
    reasons: dict[str, str] = {}
    for position, name in enumerate(columns):
        if name in _BY_NAME or name in reasons:
            continue
        if _identifier_name(name):
            reasons[name] = "name"
        elif df is not None:
            kind = _identifier_values(df.iloc[:, position])
            if kind:
                reasons[name] = kind
    return reasons


def _identifier_name(name: str) -> bool:
    compact = re.sub(r"[^a-z0-9]", "", name.lower())
    camel = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    words = set(re.split(r"[^a-z0-9]+", camel)) | set(re.split(r"[^a-z0-9]+", name.lower()))
    return (compact in _ID_EXACT or bool(words & _ID_WORDS)
            or any(f in compact for f in _ID_FRAGMENTS) or bool(_DATE_NAME.search(compact)))


def _identifier_values(s: pd.Series) -> str | None:
    if pd.api.types.is_datetime64_any_dtype(s):
        return "exact dates"
    if pd.api.types.is_float_dtype(s) or pd.api.types.is_bool_dtype(s):
        return None
    step = max(1, len(s) // _VALUE_SAMPLE)
    sample = s.iloc[::step].dropna().astype(str).str.strip()
    sample = sample[sample != ""]
    if sample.empty:
        return None
    for label, pattern in _ID_VALUES:
        hits = sample.str.fullmatch(pattern)
        if hits.mean() > 0.5 and not (label.startswith("5-digit") and _row_counter(sample)):
            return label
    return None


def _row_counter(sample: pd.Series) -> bool:
    """A long, strictly increasing integer column (e.g. a saved index) is not a ZIP code."""
    numbers = pd.to_numeric(sample, errors="coerce")
    return bool(len(numbers) >= 20 and numbers.notna().all()
                and numbers.is_monotonic_increasing and numbers.is_unique)


def _identifier_problems(columns: Sequence[str], df: pd.DataFrame) -> list[Problem]:
    problems = []
    for name, reason in _identifier_reasons(columns, df).items():
        why = ("its name marks a direct identifier" if reason == "name"
               else f"most of its cells look like {reason}")
        problems.append(Problem(name, f"looks like a direct identifier ({why}; values not shown)",
                                _ID_FIX))
    return problems


# --------------------------------------------------------------------------- reading files

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


# --------------------------------------------------------------------------- cell parsing

_MISSING = frozenset({"", "na", "n/a", "nan", "null", "none"})
_GENOTYPE_MISSING = frozenset({"", "unknown"})
_BOOL_WORDS = {"true": True, "t": True, "yes": True, "1": True, "1.0": True,
               "false": False, "f": False, "no": False, "0": False, "0.0": False}
_DIPLOTYPE = re.compile(r"[^/\s]+/[^/\s]+")


@dataclass(frozen=True)
class _Cells:
    """A column as codes into its distinct cells (stripped text); code -1 = missing (NaN)."""

    codes: np.ndarray
    texts: list[str]

    def take(self, per_text: Sequence[object], missing: object, dtype: object = object
             ) -> np.ndarray:
        """Expand one value per distinct cell to one value per row."""
        table = np.empty(len(per_text) + 1, dtype=dtype)
        table[:-1] = per_text
        table[-1] = missing
        return table[self.codes]


def _cells(s: pd.Series) -> _Cells:
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    return _Cells(codes, [str(u).strip() for u in uniques])


def _parse_numbers(s: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values as float64, missing mask, not-a-number mask) for any input dtype."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        return values, np.isnan(values), np.zeros(len(s), dtype=bool)
    cells = _cells(s)
    numbers = pd.to_numeric(pd.Series(cells.texts, dtype=object), errors="coerce")
    values = cells.take(numbers.to_numpy(dtype="float64"), np.nan, "float64")
    missing = cells.take([t.lower() in _MISSING for t in cells.texts], True, bool)
    return values, missing, np.isnan(values) & ~missing


# --------------------------------------------------------------------------- column checks

_Checked = tuple[np.ndarray, list[Problem]]


def _problem(spec: ColumnSpec, bad: np.ndarray, raw: pd.Series, message: str, fix: str,
             allowed: str = "", show_values: bool = True) -> Problem:
    positions = np.flatnonzero(bad)
    values = _first_distinct(raw.iloc[positions[:1000]]) if show_values else []
    return Problem(spec.name, message, fix, (positions[:_KEEP_ROWS] + 1).tolist(),
                   int(len(positions)), values, allowed)


def _first_distinct(cells: pd.Series) -> list[str]:
    shown = dict.fromkeys(_show(v) for v in cells)
    return list(islice(shown, _SHOW))


def _show(value: object) -> str:
    text = "" if pd.isna(value) else str(value)
    return "(empty)" if not text.strip() else repr(text if len(text) <= 40 else text[:37] + "...")


def _missing_problem(spec: ColumnSpec, missing: np.ndarray, raw: pd.Series) -> list[Problem]:
    if spec.nullable or not missing.any():
        return []
    fix = ("give every row its pseudonymous patient_id" if spec.kind == "id"
           else f"fill in {spec.name} for these rows, or remove the rows")
    return [_problem(spec, missing, raw, "missing a value", fix)]


def _check_id(spec: ColumnSpec, s: pd.Series) -> _Checked:
    cells = _cells(s)
    missing = cells.take([t.lower() in _MISSING for t in cells.texts], True, bool)
    return cells.take(cells.texts, ""), _missing_problem(spec, missing, s)


def _check_number(spec: ColumnSpec, s: pd.Series) -> _Checked:
    values, missing, text = _parse_numbers(s)
    text |= ~missing & ~text & ~np.isfinite(values)
    problems = _missing_problem(spec, missing, s)
    if text.any():
        comma = any("," in v for v in _first_distinct(s[text]))
        fix = "use '.' as the decimal separator" if comma else "write a plain number"
        problems.append(_problem(spec, text, s, "not a number", fix, _range_text(spec)))
    ok = ~missing & ~text
    if spec.kind == "int":
        fraction = ok & (values != np.floor(values))
        if fraction.any():
            problems.append(_problem(spec, fraction, s, "not a whole number",
                                     "write whole numbers", _range_text(spec)))
    problems += _range_problems(spec, values, ok, s)
    dtype = "int64" if spec.kind == "int" else "float64"
    return np.where(ok, values, 0 if spec.kind == "int" else np.nan).astype(dtype), problems


def _range_problems(spec: ColumnSpec, values: np.ndarray, ok: np.ndarray, s: pd.Series
                    ) -> list[Problem]:
    problems = []
    upper = spec.ceiling if spec.ceiling is not None else spec.max
    for bound, bad, word in ((spec.min, lambda b: values < b, "below the minimum"),
                             (upper, lambda b: values > b, "above the maximum")):
        if bound is None:
            continue
        mask = ok & bad(bound)
        if mask.any():
            problems.append(_problem(spec, mask, s, f"{word} {bound:g}",
                                     "check the source data and correct these values",
                                     _range_text(spec)))
    return problems


def _check_bool(spec: ColumnSpec, s: pd.Series) -> _Checked:
    cells = _cells(s)
    keys = [t.lower() for t in cells.texts]
    parsed = cells.take([_BOOL_WORDS.get(k, False) for k in keys], False, bool)
    missing = cells.take([k in _MISSING for k in keys], True, bool)
    invalid = cells.take([k not in _BOOL_WORDS and k not in _MISSING for k in keys], False, bool)
    problems = _missing_problem(spec, missing, s)
    if invalid.any():
        problems.append(_problem(spec, invalid, s, "not true/false",
                                 "write true/false (1/0, yes/no and t/f also work)",
                                 "true, false, 1, 0, yes, no, t, f (any case)"))
    return parsed, problems


def _category_key(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


def _check_category(spec: ColumnSpec, s: pd.Series) -> _Checked:
    lookup = {_category_key(v): v for v in spec.allowed}
    cells = _cells(s)
    keys = [_category_key(t) for t in cells.texts]
    missing = cells.take([k in _MISSING for k in keys], True, bool)
    invalid = cells.take([k not in lookup and k not in _MISSING for k in keys], False, bool)
    problems = _missing_problem(spec, missing, s)
    if invalid.any():
        problems.append(_problem(spec, invalid, s, "with an unknown value",
                                 f"use one of the allowed values ({_DOC})",
                                 ", ".join(spec.allowed)))
    return cells.take([lookup.get(k, "") for k in keys], ""), problems


def _check_genotype(spec: ColumnSpec, s: pd.Series) -> _Checked:
    cells = _cells(s)
    missing = [t.lower() in _GENOTYPE_MISSING for t in cells.texts]
    if spec.kind == "diplotype":
        values = cells.texts
        valid = [bool(_DIPLOTYPE.fullmatch(t)) for t in values]
        allowed, form = "two alleles 'a/b', e.g. " + ", ".join(spec.examples), "*1/*4"
    else:
        values = [t.upper() for t in cells.texts]
        valid = [v in spec.allowed for v in values]
        allowed, form = ", ".join(spec.allowed), "A/G"
    invalid = cells.take([not (m or v) for m, v in zip(missing, valid)], False, bool)
    problems = []
    if invalid.any():
        problems.append(_problem(spec, invalid, s, "not a genotype",
                                 f"write it like {form}; leave it empty or write 'unknown' "
                                 "if not genotyped", allowed))
    return cells.take([("" if m else v) for m, v in zip(missing, values)], ""), problems


_CHECKERS: dict[str, Callable[[ColumnSpec, pd.Series], _Checked]] = {
    "id": _check_id, "int": _check_number, "float": _check_number, "bool": _check_bool,
    "category": _check_category, "diplotype": _check_genotype, "genotype": _check_genotype,
}


# --------------------------------------------------------------------------- validation

def validate_cohort(df: pd.DataFrame, source: str, require_outcomes: bool) -> pd.DataFrame:
    """Check ``df`` against the contract; return a new canonically typed frame or raise."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    columns = [str(c) for c in df.columns]
    specs = [s for s in SCHEMA if require_outcomes or s.role != "outcome"]
    problems = _identifier_problems(columns, df) + _table_problems(df, columns, specs)
    position = {name: i for i, name in reversed(list(enumerate(columns)))}
    converted: dict[str, np.ndarray] = {}
    for spec in (s for s in specs if s.name in position):
        values, found = _CHECKERS[spec.kind](spec, df.iloc[:, position[spec.name]])
        converted[spec.name] = values
        problems += found
    if require_outcomes and "pain_baseline" in converted:
        raw_baseline = df.iloc[:, position["pain_baseline"]]
        problems += _zero_baseline(converted["pain_baseline"], raw_baseline)
    if problems:
        raise ContractError(source, problems)
    _top_code(converted, source)
    _log_dropped(columns, specs, source)
    logger.info("validated %s: %d rows, contract v%d", source, len(df), CONTRACT_VERSION)
    return pd.DataFrame(converted, index=df.index.copy())


def _table_problems(df: pd.DataFrame, columns: list[str], specs: Sequence[ColumnSpec]
                    ) -> list[Problem]:
    problems = [Problem(name, f"appears {columns.count(name)} times in the columns",
                        "keep one column of that name; rename or delete the others")
                for name in dict.fromkeys(c for c in columns if columns.count(c) > 1)]
    if len(df) == 0:
        problems.append(Problem(None, "the table has no data rows", "add the cohort rows"))
    missing = [s.name for s in specs if s.name not in columns]
    if missing:
        problems.append(Problem(None, f"missing required columns: {', '.join(missing)}",
                                _missing_columns_fix(missing, columns), count=len(missing)))
    return problems


def _missing_columns_fix(missing: list[str], columns: list[str]) -> str:
    by_key = {_category_key(c).replace("_", ""): c for c in columns}
    renames = [f"rename {by_key[k]!r} to {m!r}" for m in missing
               if (k := m.lower().replace("_", "")) in by_key]
    hint = f" ({'; '.join(renames)})" if renames else ""
    return (f"add these columns{hint}; genotype cells may be left empty, every other cell "
            f"needs a value ({_DOC})")


def _zero_baseline(baseline: np.ndarray, raw: pd.Series) -> list[Problem]:
    zero = baseline == 0
    if not zero.any():
        return []
    return [_problem(column("pain_baseline"), zero, raw,
                     "with pain_baseline = 0, so response = (baseline - followup) / baseline "
                     "cannot be defined",
                     "remove these episodes from the training file (they can still be scored "
                     "for prediction)")]


def _top_code(converted: dict[str, np.ndarray], source: str) -> None:
    for spec in SCHEMA:
        if spec.ceiling is None or spec.name not in converted:
            continue
        values = converted[spec.name]
        above = values > spec.max
        if above.any():
            converted[spec.name] = np.where(above, spec.max, values).astype(values.dtype)
            logger.info("%s: top-coded %d %s value(s) above %g to %g (HIPAA Safe Harbor)",
                        source, int(above.sum()), spec.name, spec.max - 1, spec.max)


def _log_dropped(columns: list[str], specs: Sequence[ColumnSpec], source: str) -> None:
    wanted = {s.name for s in specs}
    ignored = [c for c in columns if c in _BY_NAME and c not in wanted]
    extra = [c for c in columns if c not in _BY_NAME]
    if ignored:
        logger.info("%s: outcome columns ignored (outcomes not required): %s",
                    source, ", ".join(ignored))
    if extra:
        logger.warning("%s: dropped %d column(s) not in the data contract: %s",
                       source, len(extra), ", ".join(extra))


# --------------------------------------------------------------------------- outcome

_TIE = 1e-9  # a reduction of exactly ``threshold`` counts, despite float rounding


def derive_response(pain_baseline: pd.Series | np.ndarray, pain_followup: pd.Series | np.ndarray,
                    threshold: float) -> pd.Series:
    """Responder flag: (baseline - followup) / baseline >= threshold (IMMPACT; Dworkin 2008)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    base = np.asarray(pain_baseline, dtype="float64")
    follow = np.asarray(pain_followup, dtype="float64")
    if (base <= 0).any():
        raise ValueError("pain_baseline must be > 0 to define response (validate_cohort "
                         "refuses rows with pain_baseline = 0)")
    index = pain_baseline.index if isinstance(pain_baseline, pd.Series) else None
    return pd.Series((base - follow) / base >= threshold - _TIE, index=index, name="response")


# --------------------------------------------------------------------------- documentation

_TYPE_LABEL = {"id": "string"}


def render_contract_markdown() -> str:
    """The user-facing contract page (docs/data-contract.md), generated from ``SCHEMA``."""
    parts = [
        "<!-- Generated from precision_pain.data.contract.SCHEMA; do not edit. Regenerate with:\n"
        "     python -m precision_pain.data.contract > docs/data-contract.md -->",
        f"# Cohort data contract, version {CONTRACT_VERSION}",
        "The one table a researcher brings, and the one the synthetic generator writes. One "
        "row = one treatment episode of one patient. Extensions are additive (new optional "
        "columns); the meaning of a column below never changes silently.",
        _FILE_RULES,
        "## Identity (pseudonymous only)", _column_table("identity"),
        "## De-identification", _DEID_RULES,
        "## Patient features", _column_table("feature"),
        "## Genotypes", _genotype_table(), _GENOTYPE_NOTE,
        "## Treatment and outcome (required for training, absent for prediction)",
        _column_table("outcome"), _response_rules(),
    ]
    return "\n\n".join(parts) + "\n"


_FILE_RULES = """## Files

- CSV (comma-separated, UTF-8; a byte-order mark and any line endings are fine) or
  Parquet (`.parquet`, `.pq`). Column order does not matter; spaces around header
  names are ignored; each name may appear once.
- Every cell needs a value except genotype cells. Booleans may be written `true`/`false`,
  `1`/`0`, `yes`/`no` or `t`/`f`, in any case. Category values are matched ignoring case
  (`f` = `F`) and are written back in the spelling below.
- Columns not listed here are dropped with a warning that names them.
- Errors list every problem at once, each with its column, the data rows concerned
  (counted from 1, header excluded), the offending cells of that column only, and the fix."""

_DEID_RULES = """- Columns that look like direct identifiers are refused with an error naming the
  column (never its values); the fix is to remove the column and keep only the
  pseudonymous `patient_id`. By name: names, MRN, SSN, street address, city, county,
  phone, fax, e-mail, date of birth and any other date column, ZIP/postal code (any
  case, any separator). By value, for columns not in this contract: most cells look
  like e-mail addresses, US Social Security numbers, US phone numbers, exact dates or
  5-digit ZIP codes.
- Ages above 89 are top-coded to 90 (HIPAA Safe Harbor) and counted in the log; ages
  above 120 and below 18 are errors."""

_GENOTYPE_NOTE = """Diplotypes are kept as written and translated to activity scores and
phenotypes with the CPIC tables; an allele the tables do not know gives phenotype
`indeterminate`, never a guess, and the report says which guideline checks could not
be made. SNP genotypes are written in capitals, alleles in the order given."""


def _column_table(role: Role) -> str:
    rows = [(f"`{s.name}`", _TYPE_LABEL.get(s.kind, s.kind), _allowed_text(s), s.description)
            for s in SCHEMA if s.role == role]
    return _markdown_table(("column", "type", "allowed values", "meaning"), rows)


def _genotype_table() -> str:
    rows = [(f"`{s.name}`", s.kind, _allowed_text(s), "empty or `unknown`", s.description)
            for s in SCHEMA if s.role == "genotype"]
    return _markdown_table(("column", "type", "values", "missing", "meaning"), rows)


def _markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _allowed_text(spec: ColumnSpec) -> str:
    if spec.kind == "id":
        return "any non-empty text"
    if spec.kind == "bool":
        return "`true`, `false`"
    if spec.kind == "diplotype":
        return ", ".join(f"`{v}`" for v in spec.examples) + " (any two alleles `a/b`)"
    if spec.kind in ("int", "float"):
        return _range_text(spec)
    return ", ".join(f"`{v}`" for v in spec.allowed)


def _range_text(spec: ColumnSpec) -> str:
    if spec.max is None:
        return f">= {spec.min:g}"
    text = f"{spec.min:g}-{spec.max:g}"
    if spec.ceiling is not None:
        text += f" ({spec.max + 1:g}-{spec.ceiling:g} are recorded as {spec.max:g})"
    return text


def _response_rules() -> str:
    registry = ", ".join(f"`{name}`" for name in TREATMENT_NAMES)
    return (
        "Derived, never supplied: `response` = (pain_baseline - pain_followup) / "
        "pain_baseline >= threshold (0.30 by default, IMMPACT \"moderate\"; Dworkin et al. "
        "2008). When outcomes are required (training), rows with `pain_baseline` = 0 cannot "
        "define response and are refused with a clear error. For prediction the outcome "
        "columns are optional and ignored when present.\n\n"
        f"Default treatment registry: {registry}."
    )


if __name__ == "__main__":
    print(render_contract_markdown(), end="")
