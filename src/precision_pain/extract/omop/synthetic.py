"""A synthetic OMOP world: the simulator's patients written as OMOP CDM v5.4 tables.

Each simulated patient becomes a PERSON with the records the study definition reads back:
the qualifying condition (started ``pain_duration_months`` before the index date), the
treatment at the index date (a DRUG_EXPOSURE of a clinical drug under the treatment's
ingredient, or a PROCEDURE_OCCURRENCE), baseline MEASUREMENT rows (pain, BMI, PHQ-9, GAD-7,
eGFR, PCS, ORT, activity minutes), the follow-up pain score at 12 weeks, an adverse-event
condition, baseline medication (an opioid with its DRUG_STRENGTH, an anticoagulant, a CYP2D6
inhibitor), smoking (OBSERVATION) and prior surgery and ulcer. A few decoy persons break one
inclusion rule each, so the attrition table has something to count.

The vocabulary subset (CONCEPT, CONCEPT_ANCESTOR, DRUG_STRENGTH) holds the study's concepts
with the ids the study file gives (checked against Athena) and, for the rest and for the
synthetic clinical drugs, ids from OMOP's range for local concepts (>= 2,000,000,000), so
no synthetic id can pass for a standard one. Dates are drawn; nothing here is real.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from precision_pain.extract.omop.extract import MILLIGRAM, MONTH_DAYS, concept_definitions
from precision_pain.extract.omop.study import Study
from precision_pain.data.pgx import GENOTYPE_COLUMNS
from precision_pain.extract.pharmcat.synthetic import in_measurement, pharmcat_files
from precision_pain.registry import TREATMENTS

LOCAL_CONCEPT_BASE = 2_000_000_000  # OMOP: concept ids above 2 billion are local
_EPOCH = np.datetime64("2016-01-01")
_STRENGTH_MG = 10.0  # every synthetic clinical drug: a 10 mg oral tablet
_ACTIVITY_MINUTES = {"low": 30.0, "moderate": 90.0, "high": 200.0}


@dataclass(frozen=True)
class Vocabulary:
    """The vocabulary subset and the concept id of each (kind, item) the world writes."""

    concept: pd.DataFrame
    concept_ancestor: pd.DataFrame
    drug_strength: pd.DataFrame
    ids: dict[tuple[str, str], int]  # first concept of each set
    clinical_drug: dict[str, int]  # ingredient code -> synthetic clinical drug


def build_vocabulary(study: Study) -> Vocabulary:
    """CONCEPT, CONCEPT_ANCESTOR and DRUG_STRENGTH rows for the study's concepts."""
    defs = concept_definitions(study)
    # a concept named by id only gets a code of its own here
    defs["concept_code"] = defs["concept_code"].where(defs["concept_code"] != "",
                                                      "ID" + defs["expected_id"].astype(str))
    defs = defs.drop_duplicates(["vocabulary_id", "concept_code", "kind", "item"])
    codes = defs.drop_duplicates(["vocabulary_id", "concept_code"]).reset_index(drop=True)
    local = LOCAL_CONCEPT_BASE + np.arange(1, len(codes) + 1)
    codes["concept_id"] = np.where(codes["expected_id"] >= 0, codes["expected_id"], local)
    by_code = dict(zip(zip(codes["vocabulary_id"], codes["concept_code"]), codes["concept_id"]))
    ids = {}
    for row in defs.itertuples(index=False):
        ids.setdefault((row.kind, row.item), int(by_code[(row.vocabulary_id, row.concept_code)]))
    ingredients = codes[codes["vocabulary_id"] == "RxNorm"]
    drug_ids = LOCAL_CONCEPT_BASE + 100_000 + np.arange(len(ingredients))
    clinical = dict(zip(ingredients["concept_code"], drug_ids.tolist()))
    concept = pd.concat([
        pd.DataFrame({"concept_id": codes["concept_id"], "concept_name": codes["name"],
                      "vocabulary_id": codes["vocabulary_id"],
                      "concept_code": codes["concept_code"]}),
        pd.DataFrame({"concept_id": drug_ids,
                      "concept_name": [f"{n} 10 MG Oral Tablet (synthetic)"
                                       for n in ingredients["name"]],
                      "vocabulary_id": "RxNorm Extension",
                      "concept_code": [f"SYN{c}" for c in ingredients["concept_code"]]}),
    ], ignore_index=True)
    concept["invalid_reason"] = None
    all_ids = concept["concept_id"].to_numpy()
    ancestor = pd.concat([
        pd.DataFrame({"ancestor_concept_id": all_ids, "descendant_concept_id": all_ids}),
        pd.DataFrame({"ancestor_concept_id": ingredients["concept_id"].to_numpy(),
                      "descendant_concept_id": drug_ids}),
    ], ignore_index=True).astype("int64")
    strength = pd.DataFrame({"drug_concept_id": drug_ids,
                             "ingredient_concept_id": ingredients["concept_id"].to_numpy(),
                             "amount_value": _STRENGTH_MG,
                             "amount_unit_concept_id": MILLIGRAM}).astype(
        {"drug_concept_id": "int64", "ingredient_concept_id": "int64"})
    return Vocabulary(concept.astype({"concept_id": "int64"}), ancestor, strength, ids,
                      clinical)


def _days(base: np.ndarray, offset: np.ndarray | int) -> np.ndarray:
    return (base + np.asarray(offset).astype("timedelta64[D]")).astype("datetime64[D]")


def omop_tables(cohort: pd.DataFrame, study: Study, seed: int = 0, decoys: int | None = None,
                history: int = 0) -> dict[str, pd.DataFrame]:
    """CDM tables (PERSON ... MEASUREMENT) and the vocabulary subset for a simulated cohort.

    ``history`` adds that many older pain scores per person, monthly before the look-back
    window (a realistic record length for benchmarks; the extract must skip them).
    """
    vocab = build_vocabulary(study)
    rng = np.random.default_rng(seed)
    n = len(cohort)
    person_id = np.arange(1, n + 1, dtype="int64")
    index = _days(np.full(n, _EPOCH), rng.integers(0, 2500, n))
    w = study.windows
    b = _Builder(vocab, study, person_id, index)
    b.person(cohort)
    duration_days = np.rint(cohort["pain_duration_months"].to_numpy() * MONTH_DAYS)
    b.condition(cohort["condition"].to_numpy(), -duration_days)
    b.observation_period(-np.maximum(duration_days, w.washout_days + 30) - 30, 200)
    b.treatment(cohort["treatment"].to_numpy())
    b.baseline(cohort)
    b.flags(cohort)
    b.outcomes(cohort)
    for j in range(history):
        b.measure("pain_nrs", cohort["pain_baseline"].to_numpy(),
                  -(w.lookback_days + 30 * (j + 1)))
    if study.genotype_measurements:
        b.genotypes(cohort, np.array([in_measurement(k) for k in range(n)], dtype=bool))
    b.decoys(rng, max(3, n // 50) if decoys is None else decoys)
    return b.tables() | {"concept": vocab.concept, "concept_ancestor": vocab.concept_ancestor,
                         "drug_strength": vocab.drug_strength}


class _Builder:
    """Collects CDM rows for persons with given index dates."""

    def __init__(self, vocab: Vocabulary, study: Study, person_id: np.ndarray,
                 index: np.ndarray) -> None:
        self.vocab, self.study, self.pid, self.index = vocab, study, person_id, index
        self.rows: dict[str, list[pd.DataFrame]] = {
            t: [] for t in ("person", "observation_period", "condition_occurrence",
                            "drug_exposure", "procedure_occurrence", "measurement",
                            "observation")}

    def _id(self, kind: str, item: str) -> int:
        return self.vocab.ids[(kind, item)]

    def person(self, cohort: pd.DataFrame, pid: np.ndarray | None = None,
               index: np.ndarray | None = None) -> None:
        pid = self.pid if pid is None else pid
        index = self.index if index is None else index
        years = index.astype("datetime64[Y]").astype(int) + 1970
        ancestry = cohort["ancestry"].to_numpy()
        race = {a: self._id("race", a) for a in self.study.demographics.race}
        latino = self._id("ethnicity", "latino")
        self.rows["person"].append(pd.DataFrame({
            "person_id": pid,
            "gender_concept_id": np.where(cohort["sex"].to_numpy() == "F",
                                          self._id("sex", "F"), self._id("sex", "M")),
            "year_of_birth": years - cohort["age"].to_numpy(),
            "race_concept_id": [race.get(a, 0) for a in ancestry],
            "ethnicity_concept_id": np.where(ancestry == "latino", latino, 0),
            "person_source_value": None,
        }))

    def observation_period(self, start: np.ndarray, end: int, pid: np.ndarray | None = None,
                           index: np.ndarray | None = None) -> None:
        pid = self.pid if pid is None else pid
        index = self.index if index is None else index
        self.rows["observation_period"].append(pd.DataFrame({
            "person_id": pid, "observation_period_start_date": _days(index, start),
            "observation_period_end_date": _days(index, end)}))

    def _add(self, table: str, pid: np.ndarray, concept: np.ndarray | int, date: np.ndarray,
             **extra: object) -> None:
        names = {"condition_occurrence": ("condition_concept_id", "condition_start_date"),
                 "procedure_occurrence": ("procedure_concept_id", "procedure_date"),
                 "measurement": ("measurement_concept_id", "measurement_date"),
                 "observation": ("observation_concept_id", "observation_date"),
                 "drug_exposure": ("drug_concept_id", "drug_exposure_start_date")}[table]
        frame = pd.DataFrame({"person_id": pid, names[0]: concept, names[1]: date} | extra)
        self.rows[table].append(frame)

    def condition(self, conditions: np.ndarray, offset: np.ndarray,
                  pid: np.ndarray | None = None, index: np.ndarray | None = None) -> None:
        pid = self.pid if pid is None else pid
        index = self.index if index is None else index
        ids = np.array([self._id("condition", c) for c in conditions], dtype="int64")
        self._add("condition_occurrence", pid, ids, _days(index, offset))

    def drug(self, mask: np.ndarray, ingredient_code: str, start: int, days: int,
             quantity: np.ndarray | float, pid: np.ndarray | None = None,
             index: np.ndarray | None = None) -> None:
        pid = (self.pid if pid is None else pid)[mask]
        index = (self.index if index is None else index)[mask]
        quantity = np.broadcast_to(np.asarray(quantity, dtype=float), mask.shape)[mask]
        self._add("drug_exposure", pid, self.vocab.clinical_drug[ingredient_code],
                  _days(index, start), drug_exposure_end_date=_days(index, start + days - 1),
                  days_supply=days, quantity=quantity)

    def treatment(self, treatments: np.ndarray, pid: np.ndarray | None = None,
                  index: np.ndarray | None = None) -> None:
        pid = self.pid if pid is None else pid
        index = self.index if index is None else index
        for name, concepts in self.study.treatments.items():
            mask = treatments == name
            if not mask.any():
                continue
            if TREATMENTS[name].kind == "drug":
                self.drug(mask, concepts[0].code, 0, 84, 84.0, pid, index)
            else:
                self._add("procedure_occurrence", pid[mask], self._id("treatment", name),
                          index[mask])

    def measure(self, item: str, values: np.ndarray, offset: int,
                 mask: np.ndarray | None = None) -> None:
        """One MEASUREMENT row per person with a value (none where it was not recorded)."""
        mask = np.ones(len(self.pid), bool) if mask is None else mask
        mask = mask & ~np.isnan(np.asarray(values, dtype=float))
        self._add("measurement", self.pid[mask], self._id("measurement", item),
                  _days(self.index[mask], offset), value_as_number=values[mask].astype(float),
                  value_source_value=None)

    def baseline(self, c: pd.DataFrame) -> None:
        self.measure("pain_nrs", c["pain_baseline"].to_numpy(), -7)
        for item, column in (("bmi", "bmi"), ("phq9", "phq9"), ("gad7", "gad7"),
                             ("egfr", "egfr"), ("pcs", "pcs"), ("ort_score", "ort_score")):
            self.measure(item, c[column].to_numpy(), -14)
        minutes = c["activity_level"].map(_ACTIVITY_MINUTES).to_numpy()
        self.measure("activity_minutes", minutes, -14)

    def flags(self, c: pd.DataFrame) -> None:
        f = self.study.flags
        smoker = c["smoker"].to_numpy(bool)
        self._add("observation", self.pid[smoker], self._id("flag", "smoker"),
                  _days(self.index[smoker], -14))
        ulcer = c["prior_gi_ulcer"].to_numpy(bool)
        self._add("condition_occurrence", self.pid[ulcer], self._id("flag", "prior_gi_ulcer"),
                  _days(self.index[ulcer], -400))
        surgery = c["prior_spine_surgery"].to_numpy(bool)
        self._add("procedure_occurrence", self.pid[surgery],
                  self._id("flag", "prior_spine_surgery"), _days(self.index[surgery], -700))
        self.drug(c["anticoagulant"].to_numpy(bool), f["anticoagulant"][0].code, -100, 200, 200.0)
        self.drug(c["cyp2d6_inhibitor"].to_numpy(bool), f["cyp2d6_inhibitor"][0].code, -100,
                  200, 200.0)
        mme = c["baseline_mme"].to_numpy(float)
        morphine = next(o for o in self.study.opioid_mme if o.factor == 1.0)
        # daily dose = 10 mg x quantity / 60 days x factor 1 = mme
        self.drug(mme > 0, morphine.code, -30, 60, mme * 60 / _STRENGTH_MG / morphine.factor)

    def outcomes(self, c: pd.DataFrame) -> None:
        self.measure("pain_nrs", c["pain_followup"].to_numpy(), self.study.windows
                      .followup_target_days)
        ae = c["adverse_event"].to_numpy(bool)
        self._add("condition_occurrence", self.pid[ae], self._id("adverse_event",
                                                                 "adverse_event"),
                  _days(self.index[ae], 30))

    def genotypes(self, c: pd.DataFrame, mask: np.ndarray) -> None:
        """Genotype calls as MEASUREMENT rows ("<gene> <call>") for the masked patients."""
        rows = genotype_measurements(self.pid[mask], c.loc[mask, list(GENOTYPE_COLUMNS)],
                                     self._id("genotype", "genotype"))
        index = pd.Series(self.index, index=self.pid).loc[rows["person_id"]].to_numpy()
        self._add("measurement", rows["person_id"].to_numpy(),
                  rows["measurement_concept_id"].to_numpy(), _days(index, -30),
                  value_as_number=np.nan, value_source_value=rows["value_source_value"])

    def decoys(self, rng: np.random.Generator, k: int) -> None:
        """Persons that break one rule each: no condition, two treatments, short observation."""
        pid = self.pid.max(initial=0) + 1 + np.arange(k, dtype="int64")
        index = _days(np.full(k, _EPOCH), rng.integers(0, 2500, k))
        fake = pd.DataFrame({"sex": ["F"] * k, "age": 50, "ancestry": "other"})
        self.person(fake, pid, index)
        kind = np.arange(k) % 3
        start = np.where(kind == 2, -30, -800)  # kind 2: observed 30 days only
        self.observation_period(start, 200, pid, index)
        has_condition = kind != 0
        self.condition(np.array(["fibromyalgia"] * int(has_condition.sum())), -400,
                       pid[has_condition], index[has_condition])
        self.treatment(np.array(["cbt"] * k), pid, index)
        two = kind == 1
        self.treatment(np.array(["physical_therapy"] * int(two.sum())), pid[two], index[two])

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {}
        for table, parts in self.rows.items():
            frame = pd.concat(parts, ignore_index=True)
            out[table] = frame
        defaults = {"drug_exposure": {"drug_exposure_end_date": None, "days_supply": 0,
                                      "quantity": 0.0},
                    "measurement": {"value_as_number": np.nan, "value_source_value": None}}
        for table, columns in defaults.items():
            for column, value in columns.items():
                if column not in out[table]:
                    out[table][column] = value
        m = out["measurement"]
        out["measurement"] = m.assign(measurement_id=np.arange(1, len(m) + 1, dtype="int64"))
        return out


def genotype_measurements(person_id: np.ndarray, genotypes: pd.DataFrame, concept_id: int
                          ) -> pd.DataFrame:
    """MEASUREMENT rows holding genotype calls ("<gene> <call>" in value_source_value)."""
    rows = []
    for column in genotypes.columns:
        values = genotypes[column].astype(str).replace({"unknown": "*1/*2 OR *2/*2"}).to_numpy()
        keep = (values != "") & (values != "nan")  # unknown: an ambiguous call
        rows.append(pd.DataFrame({"person_id": person_id[keep],
                                  "measurement_concept_id": concept_id,
                                  "value_source_value": np.char.add(f"{column} ",
                                                                    values[keep].astype(str))}))
    return pd.concat(rows, ignore_index=True)


def save_duckdb(tables: dict[str, pd.DataFrame], path: str) -> None:
    """Write CDM tables into a new DuckDB file (date columns as DATE)."""
    import duckdb

    con = duckdb.connect(str(path))
    try:
        for name, frame in tables.items():
            dates = [c for c in frame.columns if c.endswith("_date")]
            replace = f" REPLACE ({', '.join(f'CAST({c} AS DATE) AS {c}' for c in dates)})" \
                if dates else ""
            con.register("_frame", frame)
            con.execute(f"CREATE TABLE {name} AS SELECT *{replace} FROM _frame")
            con.unregister("_frame")
    finally:
        con.close()


@dataclass(frozen=True)
class World:
    """A synthetic OMOP world: CDM tables, PharmCAT files and the ground truth by person."""

    tables: dict[str, pd.DataFrame]
    pharmcat: dict[str, str]
    truth: pd.DataFrame


def synthetic_world(cohort: pd.DataFrame, truth: pd.DataFrame, study: Study, seed: int = 0
                    ) -> World:
    """The simulator's patients as an OMOP CDM, PharmCAT outputs and person-keyed truth."""
    person_id = np.arange(1, len(cohort) + 1, dtype="int64")
    by_patient = dict(zip(cohort["patient_id"], person_id))
    truth_by_person = truth.assign(person_id=truth["patient_id"].map(by_patient)).drop(
        columns="patient_id")
    return World(tables=omop_tables(cohort, study, seed),
                 pharmcat=pharmcat_files(cohort, person_id),
                 truth=truth_by_person[["person_id", *truth.columns.drop("patient_id")]])


def save_world(world: World, direct_cohort: pd.DataFrame, out: str | Path) -> None:
    """Write a world as one folder, swapped in whole: cdm.duckdb, pharmcat/, truth, cohort.

    ``cohort_direct.parquet`` is the cohort the simulator wrote directly, for the round trip.
    """
    from precision_pain.io import atomic_dir

    with atomic_dir(out) as tmp:
        save_duckdb(world.tables, str(tmp / "cdm.duckdb"))
        (tmp / "pharmcat").mkdir()
        for name, text in world.pharmcat.items():
            (tmp / "pharmcat" / name).write_text(text, encoding="utf-8")
        world.truth.to_parquet(tmp / "ground_truth_by_person.parquet", index=False)
        direct_cohort.to_parquet(tmp / "cohort_direct.parquet", index=False)
