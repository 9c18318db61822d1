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
    "maidenname", "forename", "patientname", "ptname", "namefirst", "namelast", "namemiddle",
    "namegiven", "namefamily", "namefull", "firstnm", "lastnm", "medicalrecord",
    "socialsecurity", "streetaddress", "homeaddress", "mailingaddress", "email", "emailaddr",
    "phonenumber", "telephone", "cellphone", "zipcode", "postalcode", "postcode", "dateofbirth",
    "dtofbirth", "birthdate", "birthday", "insuranceid", "insurancenumber", "insuranceno",
    "insurancenum", "insurancenbr", "healthplan", "memberid", "membernumber", "subscriberid",
    "subscribernumber", "beneficiaryid", "beneficiarynumber", "policynumber", "policyno",
    "medicaidid", "medicaidnumber", "medicareid", "medicarenumber", "accountnumber",
    "accountno", "accountnum", "accountnbr", "accountid", "acctnumber", "acctno", "acctnum",
    "acctnbr", "acctid", "licensenumber", "driverslicense", "passportnumber", "ipaddress",
)
# Compact names that are identifiers when they are the whole name.
_ID_EXACT = frozenset({"name", "initials", "mrn", "ssn", "address", "street", "city", "county",
                       "phone", "tel", "mobile", "fax", "email", "mail", "dob", "zip", "zip5",
                       "fname", "lname", "mname", "telno", "telnr", "telnum", "phoneno",
                       "phonenr", "phonenum", "phonenbr", "account", "acct", "url", "website"})
# Words (after splitting on separators and camelCase) that mark an identifier column.
_ID_WORDS = frozenset({"mrn", "ssn", "address", "addr", "street", "city", "county", "phone",
                       "telephone", "tel", "telno", "telnr", "mobile", "fax", "email", "mail",
                       "zip", "zipcode", "postcode", "postal", "dob", "dod", "date", "dates",
                       "datetime", "timestamp", "fname", "lname", "mname", "surname",
                       "forename", "url", "website"})
_DATE_NAME = re.compile(r"^dateof|(birth|service|admission|admit|discharge|visit|encounter|"
                        r"death|procedure|surgery|appointment|followup|enrol+ment|episode|"
                        r"start|end|treatment)(dat(e|etime)s?|dt|dts|dttm)$")
_DATE = (r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?"
         r"|\d{1,2}[-/.]\d{1,2}[-/.](\d{2}|\d{4})")
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_ID_VALUES = (
    ("e-mail addresses", re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")),
    ("US Social Security numbers", re.compile(r"\d{3}-\d{2}-\d{4}")),
    ("US phone numbers", re.compile(r"(\+?1[\s.-]?)?(\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}")),
    ("exact dates", re.compile(_DATE)),
    ("5-digit ZIP codes", re.compile(r"\d{5}(-\d{4})?")),
    ("long digit strings (record, account or phone numbers)", re.compile(r"\d{7,}")),
)
# A cell that looks like one of these is never echoed, wherever it is found in the cell.
_ID_IN_CELL = (
    ("an e-mail address", re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")),
    ("a URL", re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://|www\.)\S")),
    ("a US Social Security number", re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
    ("a phone number", re.compile(r"(\+\d{1,3}[\s.-]?)?(\(\d{2,4}\)\s?|\b\d{3}[\s.-])"
                                  r"\d{3}[\s.-]\d{4}\b")),
    ("a date", re.compile(rf"(?i){_DATE}|\b\d{{1,2}}\s*{_MONTH}\s*\d{{2,4}}\b"
                          rf"|\b{_MONTH}\s*\d{{1,2}}(st|nd|rd|th)?,?\s*\d{{4}}\b")),
    ("a long digit string", re.compile(r"\d{7,}")),
)
_FRACTION = re.compile(r"(?<=\d)\.\d+")
# patient_id values that are direct identifiers rather than pseudonyms: the cell patterns
# above, a number of 7 or more digits (an MRN, account or phone number), or an "MRN" prefix.
_RECORD_NUMBER = re.compile(r"(?i)mrn.*|[\d\s.()+/-]*(\d[\s.()+/-]*){7,}")
_PSEUDONYM_FIX = ("replace them with study pseudonyms (for example P000123) and keep the key "
                  "that links them to the source records outside this file")
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
        numeric = label.startswith(("5-digit", "long digit"))
        if hits.mean() > 0.5 and not (numeric and _row_counter(sample)):
            return label
    return None


def _row_counter(sample: pd.Series) -> bool:
    """A long, strictly increasing integer column (e.g. a saved index) is not an identifier."""
    numbers = pd.to_numeric(sample, errors="coerce")
    return bool(len(numbers) >= 20 and numbers.notna().all()
                and numbers.is_monotonic_increasing and numbers.is_unique)


def _identifier_problems(columns: Sequence[str], df: pd.DataFrame) -> list[Problem]:
    problems = []
    for name, reason in _identifier_reasons(columns, df).items():
        why = ("its name marks a direct identifier" if reason == "name"
               else f"most of its cells look like {reason}")
        problems.append(Problem(shown_name(name),
                                f"looks like a direct identifier ({why}; values not shown)",
                                _ID_FIX))
    return problems


def shown_name(name: str) -> str:
    """A column name as messages and logs show it: hidden when it looks like an identifier.

    A file without a header row makes its first data row the column names.
    """
    kind = identifier_kind(str(name))
    return str(name) if kind is None else f"(a column name that looks like {kind}, not shown)"


def identifier_kind(text: str, long_digits: bool = True) -> str | None:
    """What a cell looks like if it is a direct identifier ('an e-mail address', ...), else None.

    Decimal fractions are ignored for the long-digit rule, so '0.30000000000000004' is a
    number, while '1234567.0' (an MRN read as a float) is not shown. ``long_digits=False``
    skips that rule (a pseudonym such as 'P0000001' may hold 7 digits).
    """
    for label, pattern in _ID_IN_CELL:
        if label == "a long digit string":
            if not long_digits:
                continue
            text = _FRACTION.sub("", text)
        if pattern.search(text):
            return label
    return None


def pseudonym_kind(text: str) -> str | None:
    """What a ``patient_id`` looks like if it is a direct identifier, not a pseudonym; else None."""
    kind = identifier_kind(text, long_digits=False)
    if kind is None and _RECORD_NUMBER.fullmatch(text):
        kind = "a medical record or account number"
    return kind
