"""De-identification (issue 15): no identifier value echoed, identifier ids and columns refused."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_contract import _as_text, valid_cohort_frame

from precision_pain.data.contract import (
    ContractError,
    find_identifier_columns,
    read_table,
    validate_cohort,
)
from precision_pain.data.contract.deid import identifier_kind, pseudonym_kind

PLANTED = {
    "sex": "sex.planted@example.com",
    "ancestry": "(617) 555-0100",
    "smoker": "123-45-6789",
    "activity_level": "1961-03-04",
    "condition": "https://example.org/patient/77",
    "treatment": "12345678901",
    "bmi": "4155550123",
    "CYP2D6": "02/03/1999",
    "COMT_rs4680": "Ada Lovelace",
    "egfr": "1234567.0",
    "prior_gi_ulcer": "3 March 1950",
}


def _refusal(df: pd.DataFrame) -> str:
    with pytest.raises(ContractError) as info:
        validate_cohort(df, "cohort.csv", require_outcomes=True)
    return str(info.value)


def test_identifier_like_cells_are_never_echoed() -> None:
    df = _as_text(valid_cohort_frame(6))
    for name, value in PLANTED.items():
        df.loc[2, name] = value
    report = _refusal(df)
    for name, value in PLANTED.items():
        assert f"{name}: 1 row" in report and "(row 3)" in report, name
        assert value not in report, value
    assert report.count("(not shown: looks like") == len(PLANTED)


def test_plausible_bad_values_are_still_shown() -> None:
    df = _as_text(valid_cohort_frame(4))
    df.loc[0, "sex"], df.loc[1, "bmi"], df.loc[2, "CYP2D6"] = "female", "23,5", "*1*4"
    report = _refusal(df)
    assert all(v in report for v in ("'female'", "'23,5'", "'*1*4'"))


def test_overlong_cells_are_not_shown() -> None:
    df = _as_text(valid_cohort_frame(4))
    df.loc[0, "sex"] = "x" * 60
    assert "(not shown: longer than any valid value)" in _refusal(df)


IDENTIFYING_IDS = ["jane.doe@example.org", "(617) 555-0100", "617.555.0101", "123-45-6789",
                   "MRN00123", "mrn-4471", "1234567", "12 345 678", "2024-01-02", "03/04/1985",
                   "https://ehr.example.org/p/1", "+44 20 7946 0958"]


@pytest.mark.parametrize("value", IDENTIFYING_IDS)
def test_identifier_patient_ids_are_refused(value: str) -> None:
    df = _as_text(valid_cohort_frame(6))
    df.loc[[1, 4], "patient_id"] = value
    report = _refusal(df)
    assert ("patient_id: 2 rows with values that look like direct identifiers, not pseudonyms"
            in report)
    assert "(rows 2, 5)" in report and "study pseudonyms" in report
    assert value not in report


@pytest.mark.parametrize("value", ["P0000001", "P00000001", "SITE01-000123", "12345", "abc-77",
                                   "S-2024-0001", "p1"])
def test_pseudonyms_are_accepted(value: str) -> None:
    assert pseudonym_kind(value) is None
    df = _as_text(valid_cohort_frame(2)).assign(patient_id=value)
    assert validate_cohort(df, "c.csv", require_outcomes=True)["patient_id"].eq(value).all()


EXPORT_NAMES = ["name_first", "fname", "lname", "birth_dt", "telno", "mail", "insurance_id",
                "health_plan_number", "account_number", "NameFirst", "FNAME", "pt_lname",
                "Birth-Dt", "BIRTHDT", "tel_no", "TelNo", "E_Mail", "InsuranceID",
                "insurance-no", "HealthPlanNo", "health plan id", "acct_num", "AccountNo",
                "member_id", "first_nm", "dt_of_birth", "visit_dt", "DOB", "ip_address",
                "website"]


@pytest.mark.parametrize("name", EXPORT_NAMES)
def test_identifier_columns_of_common_exports_are_refused(name: str) -> None:
    assert find_identifier_columns([name]) == [name]
    df = _as_text(valid_cohort_frame(2)).assign(**{name: ["x1", "x2"]})
    report = _refusal(df)
    assert f"{name}: looks like a direct identifier (its name marks" in report
    assert "x1" not in report


@pytest.mark.parametrize("name", ["insurance_type", "account_status_code", "hotel_notes",
                                  "birth_year", "mailbox_size"])
def test_near_miss_names_are_not_identifiers(name: str) -> None:
    assert find_identifier_columns([name]) == []


def test_long_digit_column_is_refused_by_value() -> None:
    df = valid_cohort_frame(30).assign(ref=[f"{9_000_000_000 + 17 * i}" for i in range(30)])
    df["ref"] = df["ref"].sample(frac=1, random_state=0).to_numpy()  # not a row counter
    assert find_identifier_columns(df.columns, df) == ["ref"]


@given(st.emails())
def test_every_email_is_recognised(email: str) -> None:
    assert identifier_kind(email) is not None


@given(st.from_regex(r"(\([2-9]\d{2}\) |[2-9]\d{2}[ .-])\d{3}[ .-]\d{4}", fullmatch=True))
def test_every_us_phone_number_is_recognised(phone: str) -> None:
    assert identifier_kind(phone) is not None


@given(st.floats(0, 1000, allow_nan=False))
def test_ordinary_numbers_are_not_identifiers(value: float) -> None:
    assert identifier_kind(repr(value)) is None


def test_a_missing_header_row_does_not_echo_the_first_row(tmp_path, caplog) -> None:
    df = _as_text(valid_cohort_frame(3)).assign(contact=["jane@example.org", "", ""],
                                                 seen=["2024-01-02", "", ""])
    path = tmp_path / "no_header.csv"
    path.write_text(df.to_csv(index=False, header=False) * 2)  # the first row repeats too
    with caplog.at_level("WARNING"), pytest.raises(ContractError) as info:
        validate_cohort(read_table(path), str(path), require_outcomes=True)
    text = str(info.value) + caplog.text
    assert "jane@example.org" not in text and "2024-01-02" not in text


def test_identifier_like_column_names_are_hidden_and_explained(caplog) -> None:
    df = pd.DataFrame({"P0000001": ["P0000002"], "jane@example.org": ["x@y.org"],
                       "2024-01-02": ["2024-02-03"], "617-555-0100": ["a"]})
    with caplog.at_level("WARNING"), pytest.raises(ContractError) as info:
        validate_cohort(df, "c.csv", require_outcomes=False)
    text = str(info.value) + caplog.text
    assert "is the header row missing?" in str(info.value)
    assert "(a column name that looks like an e-mail address, not shown)" in text
    for value in ("jane@example.org", "x@y.org", "2024-01-02", "617-555-0100"):
        assert value not in text, value
