"""Tests for the cohort data contract: schema, docs, ingest and validation."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from precision_pain.data import contract
from precision_pain.data.contract import (
    SCHEMA,
    ContractError,
    Problem,
    column,
    derive_response,
    feature_columns,
    find_identifier_columns,
    genotype_columns,
    outcome_columns,
    read_table,
    render_contract_markdown,
    validate_cohort,
)
from precision_pain.registry import CONDITIONS, TREATMENT_NAMES

REPO = Path(__file__).resolve().parents[1]
SHARED_PAGE = Path(__file__).resolve().parents[2] / "shared" / "data-contract.md"


def valid_cohort_frame(n: int = 6, seed: int = 0) -> pd.DataFrame:
    """``n`` contract-valid episodes (with outcomes), typed as a researcher's Parquet would be."""
    rng = np.random.default_rng(seed)
    pick = lambda values: rng.choice(np.asarray(values, dtype=object), n)  # noqa: E731
    flag = lambda p: rng.random(n) < p  # noqa: E731
    baseline = rng.integers(1, 11, n).astype(float)
    return pd.DataFrame({
        "patient_id": [f"P{i // 2:06d}" for i in range(n)],
        "age": rng.integers(18, 90, n),
        "sex": pick(["F", "M"]),
        "ancestry": pick(column("ancestry").allowed),
        "bmi": rng.uniform(18, 40, n).round(1),
        "condition": pick(CONDITIONS),
        "pain_duration_months": rng.uniform(3, 240, n).round(0),
        "pain_baseline": baseline,
        "pcs": rng.integers(0, 53, n),
        "phq9": rng.integers(0, 28, n),
        "gad7": rng.integers(0, 22, n),
        "smoker": flag(0.2),
        "activity_level": pick(["low", "moderate", "high"]),
        "prior_spine_surgery": flag(0.1),
        "baseline_mme": rng.choice([0.0, 0.0, 15.0, 30.0, 90.0], n),
        "ort_score": rng.integers(0, 27, n),
        "egfr": rng.uniform(20, 120, n).round(0),
        "prior_gi_ulcer": flag(0.05),
        "anticoagulant": flag(0.1),
        "cyp2d6_inhibitor": flag(0.1),
        "CYP2D6": pick(["*1/*1", "*1/*4", "*1/*1x2", "*10/*41", "*5/*5", ""]),
        "CYP2C9": pick(["*1/*1", "*1/*3", "*2/*3", "unknown"]),
        "CYP2C19": pick(["*1/*17", "*2/*2", "*1/*1"]),
        "OPRM1_rs1799971": pick(["A/A", "A/G", "G/G", ""]),
        "COMT_rs4680": pick(["G/G", "G/A", "A/A"]),
        "treatment": pick(TREATMENT_NAMES),
        "pain_followup": np.clip(baseline - rng.integers(0, 6, n), 0, 10),
        "adverse_event": flag(0.05),
    })


def _as_text(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell as a string, as read_table returns a CSV."""
    return df.astype(str).replace({"nan": ""})


def _write_csv(path: Path, df: pd.DataFrame) -> Path:
    df.to_csv(path, index=False)
    return path


def _load(path: Path, require_outcomes: bool = True) -> pd.DataFrame:
    return validate_cohort(read_table(path), str(path), require_outcomes=require_outcomes)


@pytest.fixture
def cohort() -> pd.DataFrame:
    return valid_cohort_frame(8)


# --------------------------------------------------------------------------- schema


def test_schema_names_unique_and_kinds_valid() -> None:
    names = [s.name for s in SCHEMA]
    assert len(names) == len(set(names))
    assert {s.kind for s in SCHEMA} <= {"id", "int", "float", "bool", "category", "diplotype",
                                        "genotype"}
    assert {s.role for s in SCHEMA} == {"identity", "feature", "genotype", "outcome"}
    assert contract.CONTRACT_VERSION == 2  # v2: treatment plans (test_contract_plans.py)


def test_accessors() -> None:
    assert outcome_columns() == ("treatment", "pain_followup", "adverse_event")
    assert feature_columns()[0] == "age" and "patient_id" not in feature_columns()
    assert genotype_columns() == ("CYP2D6", "CYP2C9", "CYP2C19", "OPRM1_rs1799971", "COMT_rs4680")
    assert column("treatment").allowed == TREATMENT_NAMES
    assert column("condition").allowed == CONDITIONS
    assert (column("age").min, column("age").max) == (18, 90)
    with pytest.raises(KeyError, match="patient_id"):
        column("nonsense")


def test_docs_page_is_generated_from_schema() -> None:
    page = REPO / "docs" / "data-contract.md"
    assert page.read_text(encoding="utf-8") == render_contract_markdown(), (
        "docs/data-contract.md is stale; regenerate it with "
        "`python -m precision_pain.data.contract > docs/data-contract.md`")


_PAGE_KIND = {"string": "id", "int": "int", "float": "float", "bool": "bool",
              "category": "category", "diplotype": "diplotype", "genotype": "genotype"}
_PAGE_ROLE = {"Identity": "identity", "Patient features": "feature", "Genotypes": "genotype",
              "Treatment and outcome": "outcome"}


def _shared_columns(text: str) -> list[tuple[str, list[str]]]:
    """(section heading, cells) for every row of every column table on the shared page."""
    rows, section = [], ""
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:]
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows.append((section, cells))
    return rows


def test_shared_contract_page_matches_schema() -> None:
    if not SHARED_PAGE.exists():
        pytest.skip(f"shared contract page not found at {SHARED_PAGE} (../shared beside the repo)")
    text = SHARED_PAGE.read_text(encoding="utf-8")
    rows = _shared_columns(text)
    assert len(rows) >= 25, "could not parse the column tables of the shared page"
    for section, (name_cell, type_cell, rule, *rest) in rows:
        spec = column(name_cell.strip("`"))
        role = next(r for heading, r in _PAGE_ROLE.items() if section.startswith(heading))
        assert (spec.kind, spec.role) == (_PAGE_KIND[type_cell], role), spec.name
        ticked = re.findall(r"`([^`]+)`", rule)
        if spec.kind == "category" and ticked:
            assert spec.allowed == tuple(ticked), spec.name
        if spec.kind in ("int", "float"):
            bounds = re.search(r"(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)", rule)
            expected = (float(bounds[1]), float(bounds[2])) if bounds else (0.0, None)
            assert (spec.min, spec.max) == expected, spec.name
        if spec.kind in ("diplotype", "genotype"):
            _assert_genotypes_accepted(spec.name, ticked + re.findall(r"`([^`]+)`", rest[0]))
    registry = re.search(r"Default treatment registry:(.*?)\n\n", text, re.S)[1]
    shared = tuple(re.findall(r"`([^`]+)`", registry))
    assert TREATMENT_NAMES[:len(shared)] == shared  # extensions are additive (neurofeedback)
    assert {name.strip("`") for _, (name, *_) in rows} == {s.name for s in SCHEMA}


def _assert_genotypes_accepted(name: str, values: list[str]) -> None:
    df = valid_cohort_frame(len(values))
    df[name] = values
    out = validate_cohort(df, "shared-page examples", require_outcomes=True)
    expected = ["" if v == "unknown" else v for v in values]
    assert out[name].tolist() == expected


# --------------------------------------------------------------------------- valid input


def test_valid_frame_types_and_order(cohort: pd.DataFrame) -> None:
    out = validate_cohort(cohort, "frame", require_outcomes=True)
    assert list(out.columns) == [s.name for s in SCHEMA]
    kinds = {s.name: s.kind for s in SCHEMA}
    expected = {"int": "int64", "float": "float64", "bool": "bool"}
    for name, dtype in out.dtypes.items():
        assert str(dtype) == expected.get(kinds[name], "object"), name
    assert out["CYP2C9"].isin(["*1/*1", "*1/*3", "*2/*3", ""]).all()


def test_csv_round_trip_equals_frame(tmp_path: Path, cohort: pd.DataFrame) -> None:
    direct = validate_cohort(cohort, "frame", require_outcomes=True)
    via_csv = _load(_write_csv(tmp_path / "cohort.csv", cohort))
    pd.testing.assert_frame_equal(via_csv, direct)


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_round_trip(tmp_path: Path, cohort: pd.DataFrame, suffix: str) -> None:
    path = tmp_path / f"cohort{suffix}"
    cohort.to_parquet(path, index=False)
    pd.testing.assert_frame_equal(_load(path), validate_cohort(cohort, "f", True))


@pytest.mark.parametrize("as_text", [True, False], ids=["text cells", "typed cells"])
def test_validate_does_not_mutate_input(cohort: pd.DataFrame, as_text: bool) -> None:
    df = (_as_text(cohort) if as_text else cohort).assign(age=95, sex="f", extra="x")
    before = df.copy()
    out = validate_cohort(df, "frame", require_outcomes=True)
    pd.testing.assert_frame_equal(df, before)
    assert (out["age"] == 90).all() and (out["sex"] == "F").all()
    out.loc[:, ["bmi", "egfr"]] = -1.0  # the output shares no memory with the input
    pd.testing.assert_frame_equal(df, before)


def test_prediction_ignores_outcomes(cohort: pd.DataFrame) -> None:
    without = cohort.drop(columns=list(outcome_columns()))
    out = validate_cohort(without, "frame", require_outcomes=False)
    assert list(out.columns) == [s.name for s in SCHEMA if s.role != "outcome"]
    bad_outcomes = cohort.assign(treatment="magic", pain_baseline=0.0)
    assert validate_cohort(bad_outcomes, "frame", require_outcomes=False).shape == out.shape


def test_ages_over_89_are_top_coded(cohort: pd.DataFrame, caplog: pytest.LogCaptureFixture
                                    ) -> None:
    df = cohort.assign(age=[95, 90, 89, 120, 40, 18, 91, 30])
    with caplog.at_level(logging.INFO, logger="precision_pain.data.contract"):
        out = validate_cohort(df, "frame", require_outcomes=True)
    assert out["age"].tolist() == [90, 90, 89, 90, 40, 18, 90, 30]
    assert "top-coded 3 age" in caplog.text


def test_extra_columns_dropped_with_warning(cohort: pd.DataFrame,
                                            caplog: pytest.LogCaptureFixture) -> None:
    df = cohort.assign(site="A", response=True)
    with caplog.at_level(logging.WARNING, logger="precision_pain.data.contract"):
        out = validate_cohort(df, "frame", require_outcomes=True)
    assert "site" not in out and "response" not in out
    assert "site, response" in caplog.text


def test_canonical_spellings(cohort: pd.DataFrame) -> None:
    df = _as_text(cohort).assign(
        sex=["f", "M", " F ", "m", "F", "F", "M", "M"],
        ancestry="African American", smoker=["TRUE", "no", "1", "0", "t", "F", "Yes", "false"],
        CYP2D6=["*1/*99", "unknown", "UNKNOWN", "", "*1/*4", "*2/*2", "*1/*1x2", "*41/*41"],
        OPRM1_rs1799971=["a/g", "A/G", "", "g/g", "A/A", "unknown", "G/A", "a/a"],
    )
    out = validate_cohort(df, "frame", require_outcomes=True)
    assert out["sex"].tolist() == ["F", "M", "F", "M", "F", "F", "M", "M"]
    assert (out["ancestry"] == "african_american").all()
    assert out["smoker"].tolist() == [True, False, True, False, True, False, True, False]
    assert out["CYP2D6"].tolist() == ["*1/*99", "", "", "", "*1/*4", "*2/*2", "*1/*1x2", "*41/*41"]
    assert out["OPRM1_rs1799971"].tolist() == ["A/G", "A/G", "", "G/G", "A/A", "", "G/A", "A/A"]


def test_bom_and_mixed_line_endings_are_accepted(tmp_path: Path, cohort: pd.DataFrame) -> None:
    lines = _as_text(cohort).to_csv(index=False).splitlines()
    endings = ["\r\n", "\n", "\r"]
    body = "".join(line + endings[i % 3] for i, line in enumerate(lines))
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    out = _load(path)
    assert out.columns[0] == "patient_id" and len(out) == len(cohort)
    pd.testing.assert_frame_equal(out, validate_cohort(cohort, "frame", True))


# --------------------------------------------------------------------------- bad input


def _edit(**cells: dict[int, str]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Set cells by 0-based position: _edit(bmi={2: 'abc'}) puts 'abc' in data row 3."""
    def apply(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        for name, edits in cells.items():
            for row, value in edits.items():
                df.loc[row, name] = value
        return df
    return apply


def _csv_of(edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], bytes]:
    return lambda _: edit(_as_text(valid_cohort_frame(8))).to_csv(index=False).encode()


def _header_only(_: Path) -> bytes:
    return (",".join(s.name for s in SCHEMA) + "\n").encode()


def _semicolons(_: Path) -> bytes:
    return _as_text(valid_cohort_frame(3)).to_csv(index=False, sep=";").encode()


def _tabs(_: Path) -> bytes:
    return _as_text(valid_cohort_frame(3)).to_csv(index=False, sep="\t").encode()


def _duplicate_age(_: Path) -> bytes:
    df = _as_text(valid_cohort_frame(3))
    header = ",".join([*df.columns, "age"])
    rows = [",".join([*row, "50"]) for row in df.itertuples(index=False)]
    return "\n".join([header, *rows, ""]).encode()


def _extra_field(_: Path) -> bytes:
    text = _as_text(valid_cohort_frame(3)).to_csv(index=False).splitlines()
    text[2] += ",surplus"
    return "\n".join(text).encode()


BAD_FILES = {
    "empty file": ("cohort.csv", lambda _: b"", ["cohort.csv", "the file is empty"]),
    "blank lines only": ("cohort.csv", lambda _: b"\n\r\n \n", ["the file is empty"]),
    "header only": ("cohort.csv", _header_only, ["no data rows"]),
    "semicolon delimited": ("cohort.csv", _semicolons, ["';'-delimited", "comma-separated"]),
    "tab delimited": ("cohort.csv", _tabs, ["tab-delimited", "comma-separated"]),
    "duplicate column": ("cohort.csv", _duplicate_age, ["age: appears 2 times",
                                                        "(columns 2, 29)", "rename"]),
    "extra field in a row": ("cohort.csv", _extra_field, ["file line 3 has 29 fields",
                                                          "header has 28"]),
    "not utf-8": ("cohort.csv", lambda _: "patient_id,age\nPé,50\n".encode("latin-1"),
                  ["not UTF-8", "CSV UTF-8"]),
    "unsupported suffix": ("cohort.xlsx", lambda _: b"x", ["unsupported file type '.xlsx'",
                                                            "Parquet"]),
    "corrupt parquet": ("cohort.parquet", lambda _: b"not parquet",
                        ["not a readable Parquet file"]),
    "text in numeric column": ("c.csv", _csv_of(_edit(bmi={2: "abc", 5: "23,5"})),
                               ["bmi: 2 rows not a number (rows 3, 6)", "'abc'", "'23,5'",
                                "decimal separator"]),
    "out of range": ("c.csv", _csv_of(_edit(egfr={0: "200"}, pcs={1: "-1"}, age={3: "12"})),
                     ["egfr: 1 row above the maximum 150 (row 1); values: '200'; allowed: 5-150",
                      "pcs: 1 row below the minimum 0 (row 2)", "age: 1 row below the minimum 18",
                      "correct these values"]),
    "implausible age": ("c.csv", _csv_of(_edit(age={4: "999"})),
                        ["age: 1 row above the maximum 120 (row 5)"]),
    "not a whole number": ("c.csv", _csv_of(_edit(phq9={0: "3.5"})),
                           ["phq9: 1 row not a whole number (row 1)"]),
    "missing patient_id": ("c.csv", _csv_of(_edit(patient_id={1: "", 6: "NA"})),
                           ["patient_id: 2 rows missing a value (rows 2, 7)",
                            "pseudonymous patient_id"]),
    "unknown category": ("c.csv", _csv_of(_edit(sex={7: "X"})),
                         ["sex: 1 row with an unknown value (row 8); values: 'X'; allowed: F, M"]),
    "unknown treatment": ("c.csv", _csv_of(_edit(treatment={0: "aspirin"})),
                          ["treatment: 1 row with an unknown value", "'aspirin'",
                           ", ".join(TREATMENT_NAMES)]),
    "bad bool": ("c.csv", _csv_of(_edit(smoker={0: "sometimes"})),
                 ["smoker: 1 row not true/false (row 1)", "'sometimes'"]),
    "bad genotype": ("c.csv", _csv_of(_edit(COMT_rs4680={0: "C/T"}, CYP2D6={1: "*1*4"})),
                     ["COMT_rs4680: 1 row not a genotype (row 1)", "'C/T'",
                      "CYP2D6: 1 row not a genotype (row 2)", "'unknown'"]),
    "missing columns": ("c.csv", _csv_of(lambda df: df.drop(columns=["bmi", "egfr"])
                                         .rename(columns={"sex": "Sex"})),
                        ["missing required columns: sex, bmi, egfr", "rename 'Sex' to 'sex'"]),
    "zero baseline": ("c.csv", _csv_of(_edit(pain_baseline={3: "0"})),
                      ["pain_baseline: 1 row with pain_baseline = 0", "(row 4)",
                       "cannot be defined"]),
    "missing feature value": ("c.csv", _csv_of(_edit(pain_duration_months={0: ""})),
                              ["pain_duration_months: 1 row missing a value (row 1)",
                               "fill in pain_duration_months"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_files_are_refused_with_a_clear_report(tmp_path: Path, case: str) -> None:
    filename, content, expected = BAD_FILES[case]
    path = tmp_path / filename
    path.write_bytes(content(path))
    with pytest.raises(ContractError) as info:
        _load(path)
    report = str(info.value)
    assert report.startswith(str(path)), report
    for fragment in expected:
        assert fragment in report, f"{fragment!r} not in:\n{report}"
    assert all(p.fix for p in info.value.problems)


def test_unrecorded_measurements_are_read_as_missing(tmp_path: Path) -> None:
    """An empty eGFR, BMI or questionnaire score is 'not recorded', not an error."""
    assert contract.measurement_columns() == ("bmi", "pcs", "phq9", "gad7", "activity_level",
                                              "ort_score", "egfr")
    df = _edit(egfr={0: "", 3: "NA"}, pcs={1: ""}, bmi={2: "null"}, ort_score={1: " "},
               activity_level={4: ""})(_as_text(valid_cohort_frame(8)))
    out = _load(_write_csv(tmp_path / "gaps.csv", df))
    assert out["activity_level"].tolist()[4] == "" and (out["activity_level"] != "").sum() == 7
    assert out["egfr"].isna().tolist() == [True, False, False, True, *[False] * 4]
    assert out["pcs"].dtype == np.float64 and out["pcs"].isna().sum() == 1
    assert out["ort_score"].isna().sum() == 1 and out["bmi"].isna().sum() == 1
    recorded = out["pcs"].notna()
    assert (out.loc[recorded, "pcs"] == df.loc[recorded, "pcs"].astype(int)).all()
    # complete whole-number columns keep their integer type
    assert out["phq9"].dtype == np.int64 and out["gad7"].dtype == np.int64
    # range checks still apply to the recorded cells, alongside the empty ones
    with pytest.raises(ContractError, match=r"egfr: 1 row above the maximum 150 \(row 2\)"):
        _load(_write_csv(tmp_path / "bad.csv", _edit(egfr={1: "400"})(df)))


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"(?s)nowhere\.csv: .*not found. Fix: check the path"):
        read_table(tmp_path / "nowhere.csv")


def test_report_conventions(cohort: pd.DataFrame) -> None:
    df = _as_text(cohort).assign(bmi="oops")
    df.loc[:, "patient_id"] = "SECRET-ID"
    with pytest.raises(ContractError) as info:
        validate_cohort(df, "cohort.csv", require_outcomes=True)
    (problem,) = info.value.problems
    assert isinstance(problem, Problem)
    assert (problem.column, problem.rows, problem.count) == ("bmi", list(range(1, 9)), 8)
    report = str(info.value)
    assert "header excluded" in report and "rows 1, 2, 3, 4, 5 and 3 more" in report
    assert "values: 'oops'" in report and "SECRET-ID" not in report


def test_all_problems_reported_together(tmp_path: Path) -> None:
    df = _as_text(valid_cohort_frame(6)).drop(columns=["egfr"])
    df.loc[0, "age"], df.loc[1, "bmi"], df.loc[2, "sex"] = "12", "heavy", "Q"
    df["email"] = "someone@example.org"
    path = _write_csv(tmp_path / "many.csv", df)
    with pytest.raises(ContractError) as info:
        _load(path)
    columns = [p.column for p in info.value.problems]
    assert columns[0] == "email"  # the de-identification guard runs first
    assert {"email", "age", "bmi", "sex", None} <= set(columns)
    assert "missing required columns: egfr" in str(info.value)


@pytest.mark.parametrize("name, values", [
    ("name", ["Ada Lovelace", "Alan Turing"]),
    ("SSN", ["123-45-6789", "987-65-4321"]),
    ("e-mail", ["a@b.org", "c@d.com"]),
    ("DateOfBirth", ["1950-01-02", "1961-03-04"]),
    ("zip_code", ["02139", "94110"]),
    ("Phone Number", ["(617) 555-0100", "617-555-0101"]),
    ("contact", ["a@b.org", "c@d.com"]),
    ("notes", ["123-45-6789", "987-65-4321"]),
    ("seen", ["2024-01-02", "03/04/2023"]),
    ("area", ["02139", "94110"]),
    ("callback", ["(617) 555-0100", "617.555.0101"]),
])
def test_identifier_columns_are_refused_without_echoing_values(
        tmp_path: Path, name: str, values: list[str]) -> None:
    df = _as_text(valid_cohort_frame(2)).assign(**{name: values})
    path = _write_csv(tmp_path / "ids.csv", df)
    with pytest.raises(ContractError) as info:
        _load(path)
    report = str(info.value)
    assert f"{name}: looks like a direct identifier" in report
    assert "remove the column; keep only the pseudonymous patient_id" in report
    assert not any(v in report for v in values)


def test_identifier_values_ignore_contract_columns_and_row_counters() -> None:
    df = valid_cohort_frame(100).assign(**{"Unnamed: 0": range(10_000, 10_100), "score": 3.5})
    assert find_identifier_columns(df.columns, df) == []
    df["home"] = "12345"
    assert find_identifier_columns(df.columns, df) == ["home"]


_ID_BASES = [("date", "of", "birth"), ("birth", "date"), ("social", "security", "number"),
             ("e", "mail"), ("zip", "code"), ("postal", "code"), ("phone", "number"),
             ("first", "name"), ("last", "name"), ("medical", "record", "number"),
             ("street", "address"), ("admission", "date"), ("visit", "date")]
_SEPARATORS = st.sampled_from(["_", "-", " ", ".", ""])


def _random_case(text: str, flips: list[bool]) -> str:
    return "".join(c.upper() if f else c.lower() for c, f in zip(text, flips + [False] * len(text)))


@given(base=st.sampled_from(_ID_BASES), seps=st.lists(_SEPARATORS, min_size=3, max_size=3),
       flips=st.lists(st.booleans(), max_size=40), prefix=st.booleans())
def test_identifier_names_caught_in_any_spelling(base: tuple[str, ...], seps: list[str],
                                                 flips: list[bool], prefix: bool) -> None:
    words = ("patient", *base) if prefix else base
    name = words[0] + "".join(sep + w for sep, w in zip(seps * 2, words[1:]))
    name = _random_case(name, flips)
    assert find_identifier_columns([name]) == [name]


@given(spec=st.sampled_from(SCHEMA), flips=st.lists(st.booleans(), max_size=30))
def test_contract_names_are_never_identifiers(spec: contract.ColumnSpec, flips: list[bool]
                                              ) -> None:
    assert find_identifier_columns([spec.name, _random_case(spec.name, flips)]) == []


_BOOL_SPELLINGS = {"true": True, "false": False, "1": True, "0": False, "yes": True,
                   "no": False, "t": True, "f": False}


@settings(max_examples=60, deadline=None)
@given(cells=st.lists(st.tuples(st.sampled_from(list(_BOOL_SPELLINGS)),
                                st.lists(st.booleans(), max_size=5), st.booleans()),
                      min_size=1, max_size=8))
def test_bool_spellings_parse(cells: list[tuple[str, list[bool], bool]]) -> None:
    texts = [_random_case(word, flips) + (" " if pad else "") for word, flips, pad in cells]
    df = _as_text(valid_cohort_frame(len(texts))).assign(smoker=texts)
    out = validate_cohort(df, "frame", require_outcomes=False)
    assert out["smoker"].tolist() == [_BOOL_SPELLINGS[word] for word, _, _ in cells]


@settings(max_examples=60, deadline=None)
@given(text=st.text(min_size=1, max_size=8).filter(
    lambda t: t.strip().lower() not in {*_BOOL_SPELLINGS, "1.0", "0.0", "", "na", "n/a", "nan",
                                        "null", "none"}))
def test_other_bool_text_is_refused(text: str) -> None:
    df = _as_text(valid_cohort_frame(2)).assign(smoker=[text, "true"])
    with pytest.raises(ContractError) as info:
        validate_cohort(df, "frame", require_outcomes=False)
    (problem,) = info.value.problems
    assert (problem.column, problem.rows) == ("smoker", [1])


def test_real_bools_and_numeric_flags(cohort: pd.DataFrame) -> None:
    df = cohort.assign(smoker=np.array([1, 0] * 4), anticoagulant=[1.0, 0.0] * 4)
    out = validate_cohort(df, "frame", require_outcomes=True)
    assert out["smoker"].tolist() == [True, False] * 4
    assert out["anticoagulant"].tolist() == [True, False] * 4
    assert out["prior_gi_ulcer"].tolist() == cohort["prior_gi_ulcer"].tolist()


# --------------------------------------------------------------------------- response


@pytest.mark.parametrize("baseline, followup, threshold, expected", [
    (10, 7, 0.30, True),     # exactly 30 %
    (10, 7.01, 0.30, False),
    (7, 4.9, 0.30, True),    # 30 % despite float rounding
    (5, 6, 0.30, False),     # worse
    (4, 2, 0.50, True),
    (4, 2.5, 0.50, False),
])
def test_derive_response(baseline: float, followup: float, threshold: float, expected: bool
                         ) -> None:
    result = derive_response(pd.Series([baseline]), pd.Series([followup]), threshold)
    assert result.dtype == bool and result.tolist() == [expected] and result.name == "response"


def test_derive_response_refuses_zero_baseline() -> None:
    with pytest.raises(ValueError, match="pain_baseline must be > 0"):
        derive_response(np.array([0.0, 5.0]), np.array([0.0, 2.0]), 0.3)
