"""Cells and column checks: parse one column by its kind, and report every bad cell."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np
import pandas as pd

from precision_pain.data.contract.deid import _PSEUDONYM_FIX, identifier_kind, pseudonym_kind
from precision_pain.data.contract.errors import _KEEP_ROWS, _SHOW, Problem
from precision_pain.data.contract.schema import _DOC, ColumnSpec, _range_text

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
    values = (_first_distinct(raw.iloc[positions[:1000]], spec)
              if show_values and spec.kind != "id" else [])
    return Problem(spec.name, message, fix, (positions[:_KEEP_ROWS] + 1).tolist(),
                   int(len(positions)), values, allowed)


def _first_distinct(cells: pd.Series, spec: ColumnSpec) -> list[str]:
    shown = dict.fromkeys(_show(v, spec) for v in cells)
    return list(islice(shown, _SHOW))


# Longest cell echoed per kind: a plausible value of the column is never longer.
_SHOW_LENGTH = {"int": 12, "float": 16, "bool": 12, "category": 40, "diplotype": 24,
                "genotype": 12, "list": 80, "plan": 80}
_PERSON_NAME = re.compile(r"[A-Z][a-z'-]+,?(\s+[A-Z]\.?)*\s+[A-Z][a-z'-]+")


def _show(value: object, spec: ColumnSpec) -> str:
    """A cell as echoed in an error: only when it is a plausible value of the column.

    Cells that look like direct identifiers (e-mail, URL, phone, SSN, date, long digit
    string, a person's name) or are longer than any value of the column are not shown.
    """
    text = "" if pd.isna(value) else str(value).strip()
    if not text:
        return "(empty)"
    kind = identifier_kind(text)
    if kind is None and _PERSON_NAME.fullmatch(text):
        kind = "a person's name"
    if kind is not None:
        return f"(not shown: looks like {kind})"
    if len(text) > _SHOW_LENGTH.get(spec.kind, 0):
        return "(not shown: longer than any valid value)"
    return repr(text)


def _missing_problem(spec: ColumnSpec, missing: np.ndarray, raw: pd.Series) -> list[Problem]:
    if spec.nullable or not missing.any():
        return []
    fix = ("give every row its pseudonymous patient_id" if spec.kind == "id"
           else f"fill in {spec.name} for these rows, or remove the rows")
    return [_problem(spec, missing, raw, "missing a value", fix)]


def _check_id(spec: ColumnSpec, s: pd.Series) -> _Checked:
    cells = _cells(s)
    missing = cells.take([t.lower() in _MISSING for t in cells.texts], True, bool)
    kinds = [None if t.lower() in _MISSING else pseudonym_kind(t) for t in cells.texts]
    problems = _missing_problem(spec, missing, s)
    found = sorted({k for k in kinds if k is not None})
    if found:
        problems.append(_problem(
            spec, cells.take([k is not None for k in kinds], False, bool), s,
            f"with values that look like direct identifiers, not pseudonyms "
            f"({'; '.join(found)}; values not shown)", _PSEUDONYM_FIX, show_values=False))
    return cells.take(cells.texts, ""), problems


def _check_number(spec: ColumnSpec, s: pd.Series) -> _Checked:
    values, missing, text = _parse_numbers(s)
    text |= ~missing & ~text & ~np.isfinite(values)
    problems = _missing_problem(spec, missing, s)
    if text.any():
        comma = any("," in str(v) for v in s[text].iloc[:1000])
        fix = "use '.' as the decimal separator" if comma else "write a plain number"
        problems.append(_problem(spec, text, s, "not a number", fix, _range_text(spec)))
    ok = ~missing & ~text
    if spec.kind == "int":
        fraction = ok & (values != np.floor(values))
        if fraction.any():
            problems.append(_problem(spec, fraction, s, "not a whole number",
                                     "write whole numbers", _range_text(spec)))
    problems += _range_problems(spec, values, ok, s)
    if spec.kind == "int" and not (spec.nullable and missing.any()):
        return np.where(ok, values, 0).astype("int64"), problems
    # A nullable whole-number column with empty cells is float64 with NaN, as pandas reads it.
    return np.where(ok, values, np.nan).astype("float64"), problems


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


def _list_items(text: str) -> list[str]:
    return [_category_key(v) for v in re.split(r"[;,]", text) if v.strip()]


def _check_list(spec: ColumnSpec, s: pd.Series) -> _Checked:
    """';'-separated values of ``spec.allowed`` (any case); written back ';'-joined in the
    order of ``allowed``; an empty cell means none."""
    lookup = {_category_key(v): v for v in spec.allowed}
    cells = _cells(s)
    items = [[] if t.lower() in _MISSING else _list_items(t) for t in cells.texts]
    invalid = cells.take([any(i not in lookup for i in row) for row in items], False, bool)
    problems = []
    if invalid.any():
        problems.append(_problem(spec, invalid, s, "with an unknown value",
                                 f"use ';'-separated values from the allowed list, or leave "
                                 f"the cell empty ({_DOC})", ", ".join(spec.allowed)))
    order = {v: i for i, v in enumerate(spec.allowed)}
    canonical = [";".join(sorted({lookup[i] for i in row if i in lookup}, key=order.get))
                 for row in items]
    return cells.take(canonical, ""), problems


def _plan_parts(text: str) -> list[str]:
    return [_category_key(v) for v in text.split("+") if v.strip()]


def _check_plan(spec: ColumnSpec, s: pd.Series) -> _Checked:
    """'+'-joined registry names (any case, any order); written back in the canonical form
    (registry order, :func:`precision_pain.plans.plan_name`); an empty cell stays empty."""
    from precision_pain.plans import plan_name

    lookup = {_category_key(v): v for v in spec.allowed}
    cells = _cells(s)
    parts = [[] if t.lower() in _MISSING else _plan_parts(t) for t in cells.texts]
    unknown = cells.take([any(p not in lookup for p in row) for row in parts], False, bool)
    repeated = cells.take([len(set(row)) < len(row) for row in parts], False, bool)
    problems = []
    if unknown.any():
        problems.append(_problem(spec, unknown, s, "with an unknown treatment",
                                 f"join registry treatment names with '+' ({_DOC})",
                                 ", ".join(spec.allowed)))
    if repeated.any():
        problems.append(_problem(spec, repeated, s, "naming a component twice",
                                 "name each component of the plan once"))
    canonical = [plan_name(lookup[p] for p in row)
                 if all(p in lookup for p in row) and len(set(row)) == len(row) else ""
                 for row in parts]
    return cells.take(canonical, ""), problems


_CHECKERS: dict[str, Callable[[ColumnSpec, pd.Series], _Checked]] = {
    "id": _check_id, "int": _check_number, "float": _check_number, "bool": _check_bool,
    "category": _check_category, "diplotype": _check_genotype, "genotype": _check_genotype,
    "list": _check_list, "plan": _check_plan,
}
