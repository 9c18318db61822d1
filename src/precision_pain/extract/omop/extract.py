"""Build the contract cohort from an OMOP CDM v5.4 database, by SQL in the database.

The method, as an OHDSI cohort definition (Book of OHDSI, ch. 10 "Defining Cohorts"):

- **Concept sets.** Every concept of the study (studies/*.yaml) is looked up by vocabulary
  and code in CONCEPT, and its descendants added through CONCEPT_ANCESTOR (OMOP CDM v5.4
  vocabulary tables). Drugs are recorded at clinical-drug level and reach their RxNorm
  ingredient that way.
- **Entry event.** The first DRUG_EXPOSURE or PROCEDURE_OCCURRENCE of any study treatment:
  the index date, and the episode's treatment. New users only: continuous observation
  (OBSERVATION_PERIOD) for the washout before it, with no study treatment in it (the
  first exposure ever recorded has none before it).
- **Inclusion rules**, each counted in the attrition table: one treatment on the index
  date; aged 18 or over; a qualifying pain condition that started at least
  ``min_pain_days`` before; sex recorded; baseline pain above 0; every baseline measurement
  present; a follow-up pain score in the follow-up window.
- **Covariates** from windows relative to the index date; the **outcomes** are the pain
  score closest to 12 weeks and any adverse-event condition within the window.

Dates never leave the database: the query returns ages, durations and values relative to
the index date; ages over 89 are top-coded to 90 (HIPAA Safe Harbor); person ids are
replaced by study ids (``S0000001``...). The map from person id to study id is returned
separately, for the data custodian only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from precision_pain.extract.omop.database import Database
from precision_pain.extract.omop.study import MmeConcept, Study
from precision_pain.extract.pharmcat.calls import combine, parse_measurement_calls
from precision_pain.data.simulate import COHORT_COLUMNS

log = logging.getLogger(__name__)

# CDM v5.4 tables and the columns the extract reads (OHDSI/CommonDataModel,
# inst/csv/OMOP_CDMv5.4_Field_Level.csv).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "person": ("person_id", "gender_concept_id", "year_of_birth", "race_concept_id",
               "ethnicity_concept_id"),
    "observation_period": ("person_id", "observation_period_start_date",
                           "observation_period_end_date"),
    "condition_occurrence": ("person_id", "condition_concept_id", "condition_start_date"),
    "drug_exposure": ("person_id", "drug_concept_id", "drug_exposure_start_date",
                      "drug_exposure_end_date", "days_supply", "quantity"),
    "procedure_occurrence": ("person_id", "procedure_concept_id", "procedure_date"),
    "measurement": ("measurement_id", "person_id", "measurement_concept_id", "measurement_date",
                    "value_as_number", "value_source_value"),
    "observation": ("person_id", "observation_concept_id", "observation_date"),
    "concept": ("concept_id", "concept_name", "vocabulary_id", "concept_code", "invalid_reason"),
    "concept_ancestor": ("ancestor_concept_id", "descendant_concept_id"),
    "drug_strength": ("drug_concept_id", "ingredient_concept_id", "amount_value",
                      "amount_unit_concept_id"),
}
MILLIGRAM = 8576  # UCUM "mg" in the OMOP vocabulary: DRUG_STRENGTH.amount_unit_concept_id
MONTH_DAYS = 30.4375
_FIX_SCHEMA = ("load the table as the OMOP CDM v5.4 DDL defines it (OHDSI/CommonDataModel), "
               "or set cdm_schema / vocabulary_schema to the schema that holds it")


class ExtractError(ValueError):
    """Problems with the database or the study, every one at once."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem"
                         f"{'s' if len(problems) != 1 else ''} with the OMOP extract:\n{lines}")


@dataclass(frozen=True)
class Extract:
    """The cohort (contract columns), the attrition table and the person -> study id key."""

    cohort: pd.DataFrame
    attrition: pd.DataFrame
    key: pd.DataFrame


# ------------------------------------------------------------------------------- checks
def check_schema(db: Database) -> list[str]:
    """Every missing CDM table or column, named with the fix."""
    problems = []
    for table, needed in REQUIRED_COLUMNS.items():
        have = db.columns(table)
        if have is None:
            problems.append(f"table {db.table(table)}: missing. Fix: {_FIX_SCHEMA}")
            continue
        missing = [c for c in needed if c not in have]
        if missing:
            problems.append(f"table {db.table(table)}: column{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(missing)} missing. Fix: {_FIX_SCHEMA}")
    return problems


def concept_definitions(study: Study) -> pd.DataFrame:
    """One row per study concept: kind, item, rank (study order), vocabulary, code."""
    rows = []
    for set_name, concepts in study.concept_sets().items():
        kind, _, item = set_name.partition(":")
        rank = _rank(study, kind, item)
        for c in concepts:
            rows.append({"kind": kind, "item": item or kind, "rank": rank,
                         "vocabulary_id": c.vocabulary, "concept_code": c.code or "",
                         "by_id": int(c.code is None),
                         "name": c.name, "descendants": int(c.descendants),
                         "expected_id": c.concept_id if c.concept_id is not None else -1,
                         "factor": c.factor if isinstance(c, MmeConcept) else 0.0})
    return pd.DataFrame(rows).astype({"rank": "int64", "descendants": "int64", "by_id": "int64",
                                      "expected_id": "int64", "factor": "float64"})


def _rank(study: Study, kind: str, item: str) -> int:
    return list(study.conditions).index(item) if kind == "condition" else 0


def resolve_concepts(db: Database, definitions: pd.DataFrame) -> list[str]:
    """Look the study's codes up in CONCEPT (temp table pp_root); every problem found."""
    db.load_temp("pp_concept_def", definitions)
    db.execute(f"""
        CREATE TEMP TABLE pp_root AS
        SELECT d.*, c.concept_id, c.concept_name
        FROM pp_concept_def d
        LEFT JOIN {db.table('concept')} c
          ON c.vocabulary_id = d.vocabulary_id AND c.concept_code = d.concept_code
         AND c.invalid_reason IS NULL
        WHERE d.by_id = 0
        UNION ALL
        SELECT d.*, c.concept_id, c.concept_name
        FROM pp_concept_def d
        LEFT JOIN {db.table('concept')} c
          ON c.vocabulary_id = d.vocabulary_id AND c.concept_id = d.expected_id
         AND c.invalid_reason IS NULL
        WHERE d.by_id = 1""")
    roots = db.query("SELECT kind, item, vocabulary_id, concept_code, name, expected_id, "
                     "concept_id FROM pp_root")
    vocabularies = set(db.query(f"SELECT DISTINCT vocabulary_id FROM {db.table('concept')}")
                       ["vocabulary_id"])
    return _concept_problems(roots, vocabularies, db.table("concept"))


def _concept_problems(roots: pd.DataFrame, vocabularies: set[str], concept: str) -> list[str]:
    problems = []
    for row in roots.itertuples(index=False):
        code = row.concept_code or f"concept_id {row.expected_id}"
        where = f"concept set {row.kind}:{row.item}: {row.vocabulary_id} {code} ({row.name})"
        if row.vocabulary_id not in vocabularies:
            problems.append(f"{where}: vocabulary {row.vocabulary_id!r} is not in {concept} "
                            f"(vocabularies there: {', '.join(sorted(vocabularies)) or 'none'}). "
                            "Fix: load it from OHDSI Athena, or name a vocabulary that is")
        elif pd.isna(row.concept_id):
            problems.append(f"{where}: matches no valid concept in {concept}. Fix: correct the "
                            "code in the study file, or load the vocabulary that has it")
        elif row.expected_id >= 0 and int(row.concept_id) != row.expected_id:
            problems.append(f"{where}: is concept_id {int(row.concept_id)} in this database, "
                            f"the study says {row.expected_id}. Fix: check both in Athena and "
                            "correct the study file")
    return problems


# ----------------------------------------------------------------------------- SQL steps
def _expand_sets(db: Database) -> None:
    db.execute(f"""
        CREATE TEMP TABLE pp_set AS
        SELECT DISTINCT r.kind, r.item, r.rank, a.descendant_concept_id AS concept_id
        FROM pp_root r JOIN {db.table('concept_ancestor')} a
          ON a.ancestor_concept_id = r.concept_id
        WHERE r.descendants = 1 AND r.concept_id IS NOT NULL
        UNION
        SELECT DISTINCT kind, item, rank, concept_id FROM pp_root
        WHERE concept_id IS NOT NULL""")


def _entry_events(db: Database) -> None:
    t = db.table
    db.execute(f"""
        CREATE TEMP TABLE pp_exposure AS
        SELECT d.person_id, s.item AS treatment, d.drug_exposure_start_date AS start_date
        FROM {t('drug_exposure')} d JOIN pp_set s
          ON s.concept_id = d.drug_concept_id AND s.kind = 'treatment'
        UNION
        SELECT p.person_id, s.item, p.procedure_date
        FROM {t('procedure_occurrence')} p JOIN pp_set s
          ON s.concept_id = p.procedure_concept_id AND s.kind = 'treatment'""")
    db.execute("""
        CREATE TEMP TABLE pp_entry AS
        SELECT e.person_id, e.start_date AS index_date, MIN(e.treatment) AS treatment,
               COUNT(DISTINCT e.treatment) AS n_treatments
        FROM pp_exposure e
        JOIN (SELECT person_id, MIN(start_date) AS first_date FROM pp_exposure
              GROUP BY person_id) f
          ON f.person_id = e.person_id AND f.first_date = e.start_date
        GROUP BY e.person_id, e.start_date""")


# The contract column each measurement fills: its range (contract.SCHEMA) bounds the values
# used; a value outside it is skipped (counted in the log), as if not recorded.
_MEASURED_COLUMN = {"pain_nrs": "pain_baseline", "bmi": "bmi", "phq9": "phq9", "gad7": "gad7",
                    "egfr": "egfr", "pcs": "pcs", "ort_score": "ort_score"}
_MINUTES_PER_WEEK = 7 * 24 * 60


def measurement_ranges() -> pd.DataFrame:
    """Plausible range of each measurement: the contract's range of the column it fills."""
    from precision_pain.data.contract import column

    rows = [(item, float(column(name).min), float(column(name).max))
            for item, name in _MEASURED_COLUMN.items()]
    rows.append(("activity_minutes", 0.0, float(_MINUTES_PER_WEEK)))
    return pd.DataFrame(rows, columns=["item", "lo", "hi"])


def _out_of_range(db: Database) -> pd.DataFrame:
    """Measurement values outside their range for the entered persons, by item."""
    return db.query(f"""
        SELECT s.item, COUNT(*) AS n FROM pp_entry e
        JOIN {db.table('measurement')} m ON m.person_id = e.person_id
        JOIN pp_set s ON s.concept_id = m.measurement_concept_id AND s.kind = 'measurement'
        JOIN pp_range r ON r.item = s.item
        WHERE m.value_as_number < r.lo OR m.value_as_number > r.hi
        GROUP BY s.item ORDER BY s.item""")


def _latest_measurements(db: Database, w: dict[str, int]) -> str:
    return f"""
        SELECT person_id, item, value FROM (
          SELECT e.person_id, s.item, m.value_as_number AS value,
                 ROW_NUMBER() OVER (PARTITION BY e.person_id, s.item
                                    ORDER BY m.measurement_date DESC, m.measurement_id DESC) AS rn
          FROM pp_entry e
          JOIN {db.table('measurement')} m ON m.person_id = e.person_id
          JOIN pp_set s ON s.concept_id = m.measurement_concept_id AND s.kind = 'measurement'
          JOIN pp_range r ON r.item = s.item AND m.value_as_number BETWEEN r.lo AND r.hi
          WHERE m.measurement_date <= e.index_date
            AND m.measurement_date >= e.index_date - CASE WHEN s.item = 'pain_nrs'
                THEN {w['baseline_pain_days']} ELSE {w['lookback_days']} END
        ) x WHERE rn = 1"""


def _followup_pain(db: Database, w: dict[str, int]) -> str:
    return f"""
        SELECT person_id, value FROM (
          SELECT e.person_id, m.value_as_number AS value,
                 ROW_NUMBER() OVER (PARTITION BY e.person_id ORDER BY
                   ABS((m.measurement_date - e.index_date) - {w['followup_target_days']}),
                   m.measurement_date, m.measurement_id) AS rn
          FROM pp_entry e
          JOIN {db.table('measurement')} m ON m.person_id = e.person_id
          JOIN pp_set s ON s.concept_id = m.measurement_concept_id
           AND s.kind = 'measurement' AND s.item = 'pain_nrs'
          JOIN pp_range r ON r.item = s.item AND m.value_as_number BETWEEN r.lo AND r.hi
          WHERE m.measurement_date BETWEEN e.index_date + {w['followup_min_days']}
                                       AND e.index_date + {w['followup_max_days']}
        ) x WHERE rn = 1"""


def _qualifying_condition(db: Database, w: dict[str, int]) -> str:
    return f"""
        SELECT person_id, item, first_date FROM (
          SELECT person_id, item, first_date,
                 ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY rank) AS rn
          FROM (SELECT e.person_id, s.item, s.rank, MIN(co.condition_start_date) AS first_date
                FROM pp_entry e
                JOIN {db.table('condition_occurrence')} co ON co.person_id = e.person_id
                JOIN pp_set s ON s.concept_id = co.condition_concept_id
                 AND s.kind = 'condition'
                WHERE co.condition_start_date <= e.index_date - {w['min_pain_days']}
                GROUP BY e.person_id, s.item, s.rank) c
        ) x WHERE rn = 1"""


def _active_drug(db: Database, item: str, w: dict[str, int]) -> str:
    return f"""EXISTS (SELECT 1 FROM {db.table('drug_exposure')} d
        JOIN pp_set s ON s.concept_id = d.drug_concept_id AND s.kind = 'flag' AND s.item = '{item}'
        WHERE d.person_id = e.person_id
          AND e.index_date + {w['medication_day']} BETWEEN d.drug_exposure_start_date
                                                      AND d.drug_exposure_end_date)"""


def _baseline_mme(db: Database, w: dict[str, int]) -> str:
    t = db.table
    return f"""
        SELECT e.person_id,
               SUM(ds.amount_value * d.quantity / d.days_supply * r.factor) AS mme
        FROM pp_entry e
        JOIN {t('drug_exposure')} d ON d.person_id = e.person_id
         AND e.index_date + {w['medication_day']} BETWEEN d.drug_exposure_start_date
                                                     AND d.drug_exposure_end_date
        JOIN {t('drug_strength')} ds ON ds.drug_concept_id = d.drug_concept_id
         AND ds.amount_unit_concept_id = {MILLIGRAM}
        JOIN pp_root r ON r.kind = 'opioid' AND r.concept_id = ds.ingredient_concept_id
        WHERE d.days_supply > 0 AND d.quantity > 0
        GROUP BY e.person_id"""


def _measure(item: str) -> str:
    return f"MAX(CASE WHEN mm.item = '{item}' THEN mm.value END)"


def _features_sql(db: Database, study: Study) -> str:
    t, w = db.table, study.windows.model_dump()
    lookback = f"e.index_date - {w['lookback_days']}"
    return f"""
        CREATE TEMP TABLE pp_features AS
        SELECT e.person_id, e.treatment, e.n_treatments,
          EXTRACT(YEAR FROM e.index_date) - p.year_of_birth AS age,
          (SELECT MIN(s.item) FROM pp_set s WHERE s.kind = 'sex'
            AND s.concept_id = p.gender_concept_id) AS sex,
          COALESCE((SELECT MIN(s.item) FROM pp_set s WHERE s.kind = 'ethnicity'
                     AND s.concept_id = p.ethnicity_concept_id),
                   (SELECT MIN(s.item) FROM pp_set s WHERE s.kind = 'race'
                     AND s.concept_id = p.race_concept_id), 'other') AS ancestry,
          EXISTS (SELECT 1 FROM {t('observation_period')} op WHERE op.person_id = e.person_id
            AND op.observation_period_start_date <= e.index_date - {w['washout_days']}
            AND op.observation_period_end_date >= e.index_date) AS observed,
          qc.item AS condition, e.index_date - qc.first_date AS pain_days,
          mv.pain_nrs, mv.bmi, mv.phq9, mv.gad7, mv.egfr, mv.pcs, mv.ort_score,
          mv.activity_minutes, fp.value AS pain_followup,
          COALESCE(mme.mme, 0) AS baseline_mme,
          EXISTS (SELECT 1 FROM {t('observation')} o JOIN pp_set s
            ON s.concept_id = o.observation_concept_id AND s.kind = 'flag' AND s.item = 'smoker'
            WHERE o.person_id = e.person_id
              AND o.observation_date BETWEEN {lookback} AND e.index_date) AS smoker,
          EXISTS (SELECT 1 FROM {t('condition_occurrence')} co JOIN pp_set s
            ON s.concept_id = co.condition_concept_id AND s.kind = 'flag'
           AND s.item = 'prior_gi_ulcer'
            WHERE co.person_id = e.person_id AND co.condition_start_date < e.index_date
          ) AS prior_gi_ulcer,
          EXISTS (SELECT 1 FROM {t('procedure_occurrence')} po JOIN pp_set s
            ON s.concept_id = po.procedure_concept_id AND s.kind = 'flag'
           AND s.item = 'prior_spine_surgery'
            WHERE po.person_id = e.person_id AND po.procedure_date < e.index_date
          ) AS prior_spine_surgery,
          {_active_drug(db, 'anticoagulant', w)} AS anticoagulant,
          {_active_drug(db, 'cyp2d6_inhibitor', w)} AS cyp2d6_inhibitor,
          EXISTS (SELECT 1 FROM {t('condition_occurrence')} co JOIN pp_set s
            ON s.concept_id = co.condition_concept_id AND s.kind = 'adverse_event'
            WHERE co.person_id = e.person_id AND co.condition_start_date
              BETWEEN e.index_date + 1 AND e.index_date + {w['adverse_event_days']}
          ) AS adverse_event
        FROM pp_entry e
        JOIN {t('person')} p ON p.person_id = e.person_id
        LEFT JOIN ({_qualifying_condition(db, w)}) qc ON qc.person_id = e.person_id
        LEFT JOIN (SELECT mm.person_id, {_measure('pain_nrs')} AS pain_nrs,
                     {_measure('bmi')} AS bmi, {_measure('phq9')} AS phq9,
                     {_measure('gad7')} AS gad7, {_measure('egfr')} AS egfr,
                     {_measure('pcs')} AS pcs, {_measure('ort_score')} AS ort_score,
                     {_measure('activity_minutes')} AS activity_minutes
                   FROM ({_latest_measurements(db, w)}) mm GROUP BY mm.person_id) mv
          ON mv.person_id = e.person_id
        LEFT JOIN ({_followup_pain(db, w)}) fp ON fp.person_id = e.person_id
        LEFT JOIN ({_baseline_mme(db, w)}) mme ON mme.person_id = e.person_id"""


# Inclusion rules in order: (rule as written in the attrition table, SQL condition).
_BASELINE = ("bmi", "pcs", "phq9", "gad7", "egfr", "ort_score", "activity_minutes")


def inclusion_rules(study: Study) -> list[tuple[str, str]]:
    """The attrition table's rules, in order, each with its SQL condition."""
    w = study.windows
    return [
        ("one study treatment on the index date", "n_treatments = 1"),
        (f"observed {w.washout_days} days before the index date (new user)", "observed"),
        ("aged 18 or over at the index date", "age >= 18"),
        (f"qualifying pain condition starting >= {w.min_pain_days} days before",
         "condition IS NOT NULL"),
        ("sex recorded (F or M)", "sex IS NOT NULL"),
        (f"baseline pain score in the {w.baseline_pain_days} days before, above 0",
         "pain_nrs > 0"),
        *((f"baseline {m} in the {w.lookback_days} days before", f"{m} IS NOT NULL")
          for m in _BASELINE if m not in study.optional_measurements),
        (f"follow-up pain score {w.followup_min_days}-{w.followup_max_days} days after",
         "pain_followup IS NOT NULL"),
    ]


def _attrition(db: Database, rules: list[tuple[str, str]]) -> pd.DataFrame:
    sums = [f"SUM(CASE WHEN {' AND '.join(f'({c})' for _, c in rules[:k + 1])} "
            f"THEN 1 ELSE 0 END) AS r{k}" for k in range(len(rules))]
    counts = db.query(f"SELECT COUNT(*) AS entry, {', '.join(sums)} FROM pp_features").iloc[0]
    kept = [int(counts["entry"]), *(int(counts[f"r{k}"] or 0) for k in range(len(rules)))]
    names = ["first exposure to a study treatment (entry event)", *(r for r, _ in rules)]
    return pd.DataFrame({"rule": names, "persons": kept,
                         "removed": [0, *np.negative(np.diff(kept))]})


# ------------------------------------------------------------------------------- assembly
def extract_cohort(db: Database, study: Study, genotypes: pd.DataFrame | None = None
                   ) -> Extract:
    """Run the study against the database; the cohort has the contract's columns."""
    problems = check_schema(db)
    if problems:
        raise ExtractError(db.name, problems)
    problems = resolve_concepts(db, concept_definitions(study))
    if problems:
        raise ExtractError(db.name, problems)
    _expand_sets(db)
    _entry_events(db)
    db.load_temp("pp_range", measurement_ranges())
    for row in _out_of_range(db).itertuples(index=False):
        log.warning("%s: %d values outside %s's contract range skipped (as not recorded)",
                    row.item, row.n, _MEASURED_COLUMN.get(row.item, row.item))
    db.execute(_features_sql(db, study))
    rules = inclusion_rules(study)
    attrition = _attrition(db, rules)
    where = " AND ".join(f"({c})" for _, c in rules)
    rows = db.query(f"SELECT * FROM pp_features WHERE {where} ORDER BY person_id")
    if study.genotype_measurements:
        genotypes = combine(genotypes, _measured_genotypes(db))
    cohort, key = _contract_frame(rows, study, genotypes)
    log.info("extract: %d persons entered, %d kept", attrition["persons"].iloc[0], len(cohort))
    for name in study.optional_measurements:
        log.info("extract: %s not recorded for %d of %d persons kept (kept with it empty: "
                 "study optional_measurements)", name,
                 rows[name].isna().sum(), len(cohort))
    return Extract(cohort=cohort, attrition=attrition, key=key)


def _measured_genotypes(db: Database) -> pd.DataFrame:
    """Genotype calls stored in MEASUREMENT for the entered persons (latest per gene)."""
    rows = db.query(f"""
        SELECT m.person_id, m.value_source_value FROM pp_entry e
        JOIN {db.table('measurement')} m ON m.person_id = e.person_id
        JOIN pp_set s ON s.concept_id = m.measurement_concept_id AND s.kind = 'genotype'
        ORDER BY m.person_id, m.measurement_date, m.measurement_id""")
    return parse_measurement_calls(rows)


def _contract_frame(rows: pd.DataFrame, study: Study, genotypes: pd.DataFrame | None
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contract columns from the feature rows; person ids replaced by study ids."""
    width = max(7, len(str(len(rows))))
    ids = [f"S{i:0{width}d}" for i in range(1, len(rows) + 1)]
    cut = study.activity_cutoffs
    minutes = rows["activity_minutes"].astype(float).to_numpy()
    frame = pd.DataFrame({
        "patient_id": ids,
        "age": np.minimum(rows["age"].astype("int64"), 90),  # 90 = 90 or older
        "sex": rows["sex"].astype(object), "ancestry": rows["ancestry"].astype(object),
        "bmi": rows["bmi"].astype(float), "condition": rows["condition"].astype(object),
        "pain_duration_months": np.round(rows["pain_days"].astype(float) / MONTH_DAYS, 1),
        "pain_baseline": rows["pain_nrs"].astype(float),
        "pcs": _int(rows["pcs"]), "phq9": _int(rows["phq9"]), "gad7": _int(rows["gad7"]),
        "smoker": rows["smoker"].astype(bool),
        "activity_level": np.where(np.isnan(minutes), None, np.where(
            minutes >= cut["high"], "high", np.where(minutes >= cut["moderate"], "moderate",
                                                     "low"))).astype(object),
        "prior_spine_surgery": rows["prior_spine_surgery"].astype(bool),
        "baseline_mme": np.round(rows["baseline_mme"].astype(float), 1),
        "ort_score": _int(rows["ort_score"]), "egfr": rows["egfr"].astype(float),
        "prior_gi_ulcer": rows["prior_gi_ulcer"].astype(bool),
        "anticoagulant": rows["anticoagulant"].astype(bool),
        "cyp2d6_inhibitor": rows["cyp2d6_inhibitor"].astype(bool),
    })
    frame = pd.concat([frame, _genotype_columns(rows["person_id"], genotypes)], axis=1)
    outcome = pd.DataFrame({"treatment": rows["treatment"].astype(object),
                            "pain_followup": rows["pain_followup"].astype(float),
                            "adverse_event": rows["adverse_event"].astype(bool)})
    cohort = pd.concat([frame, outcome], axis=1)[list(COHORT_COLUMNS)]
    key = pd.DataFrame({"person_id": rows["person_id"].astype("int64"), "patient_id": ids})
    return cohort, key


def _int(values: pd.Series) -> np.ndarray:
    """Whole numbers; float64 with NaN where an optional measurement was not recorded."""
    rounded = np.rint(values.astype(float).to_numpy())
    return rounded if np.isnan(rounded).any() else rounded.astype("int64")


def _genotype_columns(person_ids: pd.Series, genotypes: pd.DataFrame | None) -> pd.DataFrame:
    from precision_pain.data.pgx import GENOTYPE_COLUMNS

    columns = list(GENOTYPE_COLUMNS)
    if genotypes is None or genotypes.empty:
        return pd.DataFrame("", index=range(len(person_ids)), columns=columns, dtype=object)
    table = genotypes.set_index("person_id").reindex(columns=columns)
    out = table.reindex(person_ids.astype("int64").to_numpy()).reset_index(drop=True)
    return out.fillna("").astype(object)


def link_truth(truth_by_person: pd.DataFrame, key: pd.DataFrame) -> pd.DataFrame:
    """Ground truth keyed by person_id (synthetic worlds) relabelled to the cohort's study ids."""
    linked = truth_by_person.merge(key, on="person_id", how="inner")
    return linked[["patient_id", *truth_by_person.columns.drop("person_id")]]
