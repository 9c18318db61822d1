"""De-identification: refuse columns (by name or by value) that look like direct identifiers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pandas as pd

from precision_pain.data.contract.errors import Problem
from precision_pain.data.contract.schema import _BY_NAME

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
