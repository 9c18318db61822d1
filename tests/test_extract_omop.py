"""OMOP extract: round trip through a synthetic CDM, attrition, windows, bad data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from omop_world import STUDY, make_world

from precision_pain.extract.omop.database import DatabaseError, DuckDatabase, open_database
from precision_pain.extract.omop.extract import ExtractError, extract_cohort, link_truth
from precision_pain.extract.omop.study import StudyError, load_study
from precision_pain.extract.pharmcat.calls import read_genotypes
from precision_pain.data.simulate import COHORT_COLUMNS


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("omop") / "world")


@pytest.fixture(scope="module")
def study():
    return load_study(STUDY)


@pytest.fixture(scope="module")
def extracted(world, study):
    db = open_database("duckdb", world.folder / "cdm.duckdb", None, None, None)
    try:
        return extract_cohort(db, study, read_genotypes(world.folder / "pharmcat"))
    finally:
        db.close()


def _by_person(extracted, world):
    """The extracted cohort re-keyed by the simulator's patient ids (person k = patient k)."""
    ids = dict(zip(range(1, len(world.cohort) + 1), world.cohort["patient_id"]))
    key = extracted.key.assign(sim_id=extracted.key["person_id"].map(ids))
    return extracted.cohort.assign(patient_id=key["sim_id"].to_numpy()).set_index("patient_id")


def test_round_trip_gives_back_the_simulated_cohort(world, extracted):
    got = _by_person(extracted, world)
    want = world.cohort.set_index("patient_id")
    assert list(extracted.cohort.columns) == list(COHORT_COLUMNS)
    assert set(got.index) == set(want.index)
    got = got.loc[want.index]
    for column in want.columns:
        if want[column].dtype.kind == "f":
            np.testing.assert_allclose(got[column], want[column], atol=1e-6, err_msg=column)
        else:
            assert (got[column].to_numpy() == want[column].to_numpy()).all(), column


def test_ground_truth_links_by_study_id(world, extracted):
    by_person = world.truth.assign(person_id=world.truth["patient_id"].str[1:].astype(int)
                                   ).drop(columns="patient_id")
    linked = link_truth(by_person, extracted.key)
    assert set(linked["patient_id"]) == set(extracted.cohort["patient_id"])
    first = extracted.cohort.iloc[0]
    row = linked[(linked["patient_id"] == first["patient_id"])
                 & (linked["treatment"] == first["treatment"])]
    assert len(row) == 1


def test_no_dates_or_person_ids_leave_the_database(extracted):
    cohort = extracted.cohort
    assert not [c for c in cohort.columns if "date" in c or c == "person_id"]
    assert cohort["patient_id"].str.fullmatch(r"S\d{7}").all()
    assert cohort["age"].between(18, 90).all()


def test_attrition_counts_every_decoy(extracted, world):
    table = extracted.attrition
    assert table["persons"].iloc[0] == len(world.tables["person"])
    assert table["persons"].iloc[-1] == len(extracted.cohort) == len(world.cohort)
    assert (table["removed"] >= 0).all()
    assert table["removed"].sum() == table["persons"].iloc[0] - table["persons"].iloc[-1]
    removed = dict(zip(table["rule"], table["removed"]))
    assert removed["one study treatment on the index date"] > 0
    assert removed["observed 365 days before the index date (new user)"] > 0


def test_folder_of_parquet_tables_reads_like_the_duckdb_file(world, study, extracted,
                                                             tmp_path):
    for name, frame in world.tables.items():
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    db = open_database("duckdb", tmp_path, None, None, None)
    try:
        again = extract_cohort(db, study, read_genotypes(world.folder / "pharmcat"))
    finally:
        db.close()
    pd.testing.assert_frame_equal(again.cohort, extracted.cohort)


def _write_tables(tables: dict[str, pd.DataFrame], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def test_missing_table_and_column_are_all_named(world, study, tmp_path):
    tables = dict(world.tables)
    del tables["observation"]
    tables["measurement"] = tables["measurement"].drop(columns="value_as_number")
    db = open_database("duckdb", _write_tables(tables, tmp_path / "cdm"), None, None, None)
    with pytest.raises(ExtractError) as err:
        extract_cohort(db, study)
    text = str(err.value)
    assert "observation: missing" in text
    assert "measurement: column value_as_number missing" in text
    assert "Fix:" in text


def test_codes_the_vocabulary_lacks_are_all_named(world, study, tmp_path):
    tables = dict(world.tables)
    concept = tables["concept"]
    tables["concept"] = concept[(concept["concept_code"] != "10689")
                                & (concept["vocabulary_id"] != "CPT4")
                                & (concept["concept_id"] != 38003579)]
    db = open_database("duckdb", _write_tables(tables, tmp_path / "cdm"), None, None, None)
    with pytest.raises(ExtractError) as err:
        extract_cohort(db, study)
    text = str(err.value)
    assert "treatment:tramadol: RxNorm 10689 (tramadol): matches no valid concept" in text
    assert "vocabulary 'CPT4' is not in" in text
    assert text.count("vocabulary 'CPT4'") == 9  # every CPT4 code (neurofeedback 90901 too)
    assert "race:east_asian: Race concept_id 38003579 (Chinese): matches no valid" in text


def test_concept_id_cross_check(world, study, tmp_path):
    tables = dict(world.tables)
    tables["concept"] = tables["concept"].assign(concept_id=lambda c: c["concept_id"].where(
        c["concept_code"] != "7804", 99))
    db = open_database("duckdb", _write_tables(tables, tmp_path / "cdm"), None, None, None)
    with pytest.raises(ExtractError, match="is concept_id 99 in this database, the study says "
                                           "1124957"):
        extract_cohort(db, study)


def test_study_errors_name_the_key(tmp_path):
    raw = yaml.safe_load(STUDY.read_text())
    raw["treatments"]["tramadool"] = raw["treatments"].pop("tramadol")
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(StudyError, match="unknown name tramadool; valid: nsaid"):
        load_study(path)
    raw = yaml.safe_load(STUDY.read_text()) | {"optional_measurements": ["egfr", "pain_nrs"]}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(StudyError, match=r"optional_measurements: unknown name pain_nrs; "
                                         r"valid: bmi, phq9, gad7, egfr, pcs, ort_score, "
                                         r"activity_minutes"):
        load_study(path)


def test_missing_database_is_named(tmp_path):
    with pytest.raises(DatabaseError, match="no such DuckDB file"):
        DuckDatabase(tmp_path / "nope.duckdb")
    with pytest.raises(DatabaseError, match="PRECISION_PAIN_TEST_UNSET is not set"):
        open_database("postgresql", None, "PRECISION_PAIN_TEST_UNSET", None, None)


def test_windows_decide_follow_up(world, study, tmp_path):
    narrow = study.model_copy(update={"windows": study.windows.model_copy(
        update={"followup_min_days": 90, "followup_target_days": 95,
                "followup_max_days": 100})})
    db = open_database("duckdb", world.folder / "cdm.duckdb", None, None, None)
    try:
        result = extract_cohort(db, narrow)
    finally:
        db.close()
    assert len(result.cohort) == 0  # follow-up scores sit at day 84
    assert result.attrition["removed"].iloc[-1] == len(world.cohort)


def test_cli_extract_writes_cohort_attrition_and_truth(world, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from precision_pain.cli import main

    shutil.copytree(world.folder, tmp_path / "world")
    params = yaml.safe_load((Path(STUDY).parents[1] / "params.yaml").read_text())
    params["extract"] |= {"study": str(STUDY), "out_dir": str(tmp_path / "omop"), "sources": {
        "w": {"database": str(tmp_path / "world/cdm.duckdb"),
              "pharmcat_dir": str(tmp_path / "world/pharmcat"),
              "truth": str(tmp_path / "world/ground_truth_by_person.parquet"),
              "inputs": str(tmp_path / "world")}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(main, ["extract", "--params", str(tmp_path / "params.yaml"),
                                       "--source", "w"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "omop" / "w"
    cohort = pd.read_parquet(out / "cohort.parquet")
    truth = pd.read_parquet(out / "ground_truth.parquet")
    assert len(cohort) == len(world.cohort) and len(truth) == 10 * len(cohort)
    assert pd.read_csv(out / "attrition.csv")["persons"].iloc[-1] == len(cohort)
    bad = CliRunner().invoke(main, ["extract", "--params", str(tmp_path / "params.yaml"),
                                    "--source", "nope"])
    assert bad.exit_code != 0 and "has: w" in bad.output


def test_out_of_range_values_are_skipped_and_counted(world, study, tmp_path, caplog):
    tables = dict(world.tables)
    m = tables["measurement"].copy()
    bmi_id = int(tables["concept"].set_index("concept_code").loc["39156-5", "concept_id"])
    first = m.index[m["measurement_concept_id"] == bmi_id][:5]
    m.loc[first, "value_as_number"] = 999.0  # five persons' only BMI is implausible
    tables["measurement"] = m
    cdm = _write_tables(tables, tmp_path / "cdm")
    complete = study.model_copy(update={"optional_measurements": []})
    with caplog.at_level("WARNING"):
        result = _extract(cdm, complete)
    assert "bmi: 5 values outside bmi's contract range skipped" in caplog.text
    removed = dict(zip(result.attrition["rule"], result.attrition["removed"]))
    assert removed["baseline bmi in the 365 days before"] == 5
    assert result.cohort["bmi"].between(12, 70).all()
    # the shipped study keeps them, with BMI not recorded
    kept = _extract(cdm, study)
    assert "baseline bmi in the 365 days before" not in set(kept.attrition["rule"])
    assert len(kept.cohort) == len(result.cohort) + 5
    assert kept.cohort["bmi"].isna().sum() == 5


def test_optional_measurements_keep_persons_without_them(world, study, tmp_path, caplog):
    """Persons lacking an optional measurement are kept with the cell empty; the cohort
    passes the contract, and a study that requires the measurement removes them."""
    from precision_pain.data.contract import validate_cohort

    assert set(study.optional_measurements) == {"bmi", "pcs", "phq9", "gad7", "ort_score",
                                                "egfr", "activity_minutes"}
    tables = dict(world.tables)
    m = tables["measurement"]
    concept = tables["concept"].set_index("concept_code")["concept_id"]
    persons = sorted(m["person_id"].unique())
    no_egfr, no_pcs, no_activity = persons[:7], persons[7:11], persons[11:14]
    drop = ((m["measurement_concept_id"] == int(concept.loc["62238-1"]))
            & m["person_id"].isin(no_egfr))
    drop |= ((m["measurement_concept_id"] == int(concept.loc[_local_code(study, "pcs")]))
             & m["person_id"].isin(no_pcs))
    activity = int(concept.loc[_local_code(study, "activity_minutes")])
    drop |= (m["measurement_concept_id"] == activity) & m["person_id"].isin(no_activity)
    tables["measurement"] = m[~drop]
    cdm = _write_tables(tables, tmp_path / "cdm")
    with caplog.at_level("INFO"):
        kept = _extract(cdm, study)
    complete = _extract(cdm, study.model_copy(update={"optional_measurements": []}))
    assert len(kept.cohort) == len(world.cohort)
    assert kept.cohort["egfr"].isna().sum() == 7 and kept.cohort["pcs"].isna().sum() == 4
    assert kept.cohort["activity_level"].isna().sum() == 3
    assert kept.cohort["pcs"].dtype == np.float64 and kept.cohort["phq9"].dtype == np.int64
    assert f"egfr not recorded for 7 of {len(world.cohort)} persons kept" in caplog.text
    removed = dict(zip(complete.attrition["rule"], complete.attrition["removed"]))
    assert removed["baseline pcs in the 365 days before"] == 4
    assert removed["baseline egfr in the 365 days before"] == 7
    assert removed["baseline activity_minutes in the 365 days before"] == 3
    assert len(complete.cohort) == len(world.cohort) - 14
    checked = validate_cohort(kept.cohort, "extract", require_outcomes=True)
    assert checked["egfr"].isna().sum() == 7 and checked["pcs"].isna().sum() == 4
    assert (checked["activity_level"] == "").sum() == 3


def test_a_cohort_with_gaps_round_trips_through_the_cdm(study, tmp_path):
    """A simulated cohort with measurements not recorded becomes a CDM without those rows,
    and the extract gives back the same gaps."""
    from precision_pain.config import load_params
    from precision_pain.data.simulate import simulate_cohort
    from precision_pain.extract.omop.synthetic import synthetic_world

    params = load_params(Path(STUDY).parents[1] / "params.yaml")
    rates = {"egfr": 0.2, "pcs": 0.3, "activity_level": 0.1}
    sim = simulate_cohort(params.simulate.model_copy(update={"missing_measurement_rate": rates}),
                          0.3, n_patients=300, seed=5)
    world = synthetic_world(sim.cohort, sim.truth, study, 5)
    m = world.tables["measurement"]
    assert m.loc[m["value_source_value"].isna(), "value_as_number"].notna().all()  # genotypes
    # are text calls; every numeric measurement row holds a value
    got = _extract(_write_tables(world.tables, tmp_path / "cdm"), study).cohort
    assert len(got) == len(sim.cohort)
    for column in rates:
        assert 0 < got[column].isna().sum() == sim.cohort[column].isna().sum(), column


def _extract(cdm: Path, study):
    db = open_database("duckdb", cdm, None, None, None)
    try:
        return extract_cohort(db, study)
    finally:
        db.close()


def _local_code(study, name: str) -> str:
    return study.measurements[name][0].code
