"""The contract as data: one ``ColumnSpec`` per column, in file order, and its accessors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from precision_pain.data.pgx import CYP2D6_INHIBITORS
from precision_pain.registry import CONDITIONS, MODALITIES, TREATMENT_NAMES

# Version 2 adds treatment plans (the optional ``plan`` column); version 1 files stay valid
# and read unchanged: a v1 ``treatment`` is a one-component plan.
CONTRACT_VERSION = 2
CONTRACT_VERSIONS: tuple[int, ...] = (1, 2)
VERSION_COLUMN = "contract_version"
PLAN_COLUMN = "plan"

Kind = Literal["id", "int", "float", "bool", "category", "diplotype", "genotype", "list",
               "plan"]
Role = Literal["identity", "feature", "genotype", "outcome", "option"]


@dataclass(frozen=True)
class ColumnSpec:
    """One contract column: type, role, allowed values or range, and meaning.

    ``ceiling`` (age only) is the largest plausible value: values in
    (``max``, ``ceiling``] are top-coded to ``max`` instead of refused.
    ``examples`` are documentation for diplotypes, whose alleles are open-ended.
    A ``list`` cell holds ';'-separated values of ``allowed`` (empty: none); a ``plan`` cell
    holds '+'-joined registry treatment names (empty: the row's ``treatment``).
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
# Measurements an EHR extract often lacks (a lab, a vital sign, a questionnaire, the
# activity level). An empty
# cell means "not recorded": the models read it as missing (xgboost's learned default
# direction; median imputation with a missing indicator for the logistic model) and every
# guideline check that needs the value says it was not made (docs/predictions.md).
_NOT_RECORDED = " (empty: not recorded)"

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
    ColumnSpec("bmi", "float", "feature", "body-mass index, kg/m2" + _NOT_RECORDED,
               min=12, max=70, nullable=True),
    ColumnSpec("condition", "category", "feature", "the chronic-pain condition treated",
               allowed=CONDITIONS),
    ColumnSpec("pain_duration_months", "float", "feature",
               "months in pain (chronic = at least 3 months)", min=3, max=600),
    ColumnSpec("pain_baseline", "float", "feature", "NRS pain at the start of the episode",
               min=0, max=10),
    ColumnSpec("pcs", "int", "feature", "Pain Catastrophizing Scale" + _NOT_RECORDED,
               min=0, max=52, nullable=True),
    ColumnSpec("phq9", "int", "feature", "PHQ-9 depression score" + _NOT_RECORDED,
               min=0, max=27, nullable=True),
    ColumnSpec("gad7", "int", "feature", "GAD-7 anxiety score" + _NOT_RECORDED,
               min=0, max=21, nullable=True),
    ColumnSpec("smoker", "bool", "feature", "current smoker"),
    ColumnSpec("activity_level", "category", "feature", "physical activity level" + _NOT_RECORDED,
               allowed=("low", "moderate", "high"), nullable=True),
    ColumnSpec("prior_spine_surgery", "bool", "feature", "had spine surgery before"),
    ColumnSpec("baseline_mme", "float", "feature",
               "current opioid dose, morphine milligram equivalents/day", min=0),
    ColumnSpec("ort_score", "int", "feature", "Opioid Risk Tool" + _NOT_RECORDED,
               min=0, max=26, nullable=True),
    ColumnSpec("egfr", "float", "feature", "kidney function, mL/min/1.73m2" + _NOT_RECORDED,
               min=5, max=150, nullable=True),
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

# Optional columns: a file without them is valid and behaves as before; when present, every
# cell is checked like any other column (empty = "none" for lists, params' value for
# harm_weight). Stewardship inputs of the 2022 CDC opioid guideline, recommendation 8
# (naloxone), co-medication for phenoconversion, and patient preferences.
OPTIONAL_SCHEMA: tuple[ColumnSpec, ...] = (
    ColumnSpec("cyp2d6_inhibitor_drugs", "list", "option",
               "CYP2D6 inhibitors taken now, ';'-separated (FDA table: strong ones phenoconvert "
               "CYP2D6 activity x0, moderate ones x0.5); weak inhibitors need not be listed",
               allowed=tuple(CYP2D6_INHIBITORS), nullable=True),
    ColumnSpec("benzodiazepine", "bool", "option",
               "takes a benzodiazepine now (naloxone offered with an opioid; CDC 2022)"),
    ColumnSpec("overdose_history", "bool", "option",
               "history of opioid or other drug overdose (naloxone offered with an opioid)"),
    ColumnSpec("substance_use_disorder", "bool", "option",
               "history of substance use disorder (naloxone offered with an opioid)"),
    ColumnSpec("harm_weight", "float", "option",
               "this patient's aversion to harm: replaces evaluate.harm_weight in net benefit "
               "for this patient (empty: the params value)", min=0, max=10, nullable=True),
    ColumnSpec("exclude_modalities", "list", "option",
               "modalities the patient declines, ';'-separated (e.g. procedure;opioid): "
               "a kind, opioid, a drug class or a treatment name; they rank last",
               allowed=tuple(MODALITIES), nullable=True),
    ColumnSpec(PLAN_COLUMN, "plan", "outcome",
               "contract v2: the components of the episode's treatment plan, registry names "
               "joined by '+' in any order (e.g. duloxetine+physical_therapy); empty: the "
               "row's treatment alone. With this column, treatment may be left empty",
               allowed=TREATMENT_NAMES, nullable=True),
    ColumnSpec(VERSION_COLUMN, "int", "option",
               "the contract version the file follows, the same on every row (absent: 2 "
               "with a plan column, else 1)", min=1),
)

_BY_NAME = {spec.name: spec for spec in (*SCHEMA, *OPTIONAL_SCHEMA)}
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


def measurement_columns() -> tuple[str, ...]:
    """Patient-feature columns that may be left empty (not recorded), in schema order."""
    return tuple(spec.name for spec in SCHEMA if spec.role == "feature" and spec.nullable)


def optional_columns() -> tuple[str, ...]:
    """Names of the optional columns (a file may leave them out)."""
    return tuple(spec.name for spec in OPTIONAL_SCHEMA)


def outcome_columns() -> tuple[str, ...]:
    """Names of the treatment and outcome columns, in schema order."""
    return _names("outcome")


def _names(role: Role) -> tuple[str, ...]:
    return tuple(spec.name for spec in SCHEMA if spec.role == role)




def _range_text(spec: ColumnSpec) -> str:
    if spec.max is None:
        return f">= {spec.min:g}"
    text = f"{spec.min:g}-{spec.max:g}"
    if spec.ceiling is not None:
        text += f" ({spec.max + 1:g}-{spec.ceiling:g} are recorded as {spec.max:g})"
    return text
