"""The study definition (studies/*.yaml): concept sets, windows and mappings, validated.

Concepts are named by vocabulary and code (OMOP CDM v5.4 CONCEPT.vocabulary_id,
CONCEPT.concept_code) and resolved to concept ids in the database being read, so a study
never carries ids that only one vocabulary release knows. The file is read once, at the
CLI, into frozen sections; an unknown treatment or condition name lists the valid ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from precision_pain.config import read_yaml
from precision_pain.data.contract.schema import measurement_columns
from precision_pain.data.simulate import ANCESTRIES
from precision_pain.registry import CONDITIONS, TREATMENT_NAMES


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Concept(_Frozen):
    """One concept by vocabulary and code; with its descendants unless told otherwise.

    Without a code, ``concept_id`` names the concept (it must exist in that vocabulary);
    with one, ``concept_id`` is a cross-check the database's id must equal.
    """

    vocabulary: str
    code: str | None = None
    name: str
    descendants: bool = True
    concept_id: int | None = None

    @model_validator(mode="after")
    def _named(self) -> Concept:
        if self.code is None and self.concept_id is None:
            raise ValueError(f"{self.name}: give its code (or, failing that, its concept_id)")
        return self


class MmeConcept(Concept):
    """An opioid ingredient and its morphine milligram equivalent conversion factor."""

    factor: float = Field(gt=0)


class Windows(_Frozen):
    """Days relative to the index date (day 0)."""

    washout_days: int = Field(ge=0)
    lookback_days: int = Field(ge=0)
    baseline_pain_days: int = Field(ge=0)
    followup_target_days: int = Field(gt=0)
    followup_min_days: int = Field(gt=0)
    followup_max_days: int = Field(gt=0)
    adverse_event_days: int = Field(gt=0)
    medication_day: int = Field(le=0)
    min_pain_days: int = Field(ge=0)

    @model_validator(mode="after")
    def _followup_order(self) -> Windows:
        if not self.followup_min_days <= self.followup_target_days <= self.followup_max_days:
            raise ValueError("need followup_min_days <= followup_target_days <= "
                             "followup_max_days")
        return self


class Demographics(_Frozen):
    """PERSON concepts mapped to the contract's sex and ancestry values."""

    sex: dict[str, list[Concept]]
    ethnicity: dict[str, list[Concept]]
    race: dict[str, list[Concept]]

    @model_validator(mode="after")
    def _known_values(self) -> Demographics:
        _check_names("demographics.sex", self.sex, ("F", "M"))
        _check_names("demographics.ethnicity", self.ethnicity, ANCESTRIES)
        _check_names("demographics.race", self.race, ANCESTRIES)
        return self


MEASUREMENTS = ("pain_nrs", "bmi", "phq9", "gad7", "egfr", "pcs", "ort_score",
                "activity_minutes")
# The contract column a measurement fills where the name differs.
CONTRACT_COLUMN = {"pain_nrs": "pain_baseline", "activity_minutes": "activity_level"}
# Measurements whose contract column may be empty (not recorded): optional_measurements.
OPTIONAL = tuple(m for m in MEASUREMENTS
                 if CONTRACT_COLUMN.get(m, m) in measurement_columns())
FLAGS = ("smoker", "prior_gi_ulcer", "prior_spine_surgery", "anticoagulant",
         "cyp2d6_inhibitor")


class Study(_Frozen):
    """A whole study definition."""

    version: Literal[1]
    name: str
    windows: Windows
    treatments: dict[str, list[Concept]]
    conditions: dict[str, list[Concept]]
    measurements: dict[str, list[Concept]]
    activity_cutoffs: dict[str, float]
    flags: dict[str, list[Concept]]
    adverse_events: list[Concept]
    opioid_mme: list[MmeConcept]
    demographics: Demographics
    genotype_measurements: list[Concept] = []
    # Baseline measurements whose absence does not exclude a person: kept with the contract
    # cell empty (not recorded). Only the contract's measurements that may be empty.
    optional_measurements: list[str] = []

    @model_validator(mode="after")
    def _complete(self) -> Study:
        _check_names("treatments", self.treatments, TREATMENT_NAMES, every=True)
        _check_names("conditions", self.conditions, CONDITIONS, every=True)
        _check_names("measurements", self.measurements, MEASUREMENTS, every=True)
        _check_names("flags", self.flags, FLAGS, every=True)
        _check_names("activity_cutoffs", self.activity_cutoffs, ("moderate", "high"),
                     every=True)
        _check_names("optional_measurements", dict.fromkeys(self.optional_measurements),
                     OPTIONAL)
        return self

    def concept_sets(self) -> dict[str, list[Concept]]:
        """Every concept set by a flat name such as ``treatment:nsaid``."""
        sets: dict[str, list[Concept]] = {}
        for prefix, table in (("treatment", self.treatments), ("condition", self.conditions),
                              ("measurement", self.measurements), ("flag", self.flags)):
            sets |= {f"{prefix}:{name}": list(concepts) for name, concepts in table.items()}
        sets["adverse_event"] = list(self.adverse_events)
        sets["opioid"] = list(self.opioid_mme)
        for part in ("sex", "ethnicity", "race"):
            table = getattr(self.demographics, part)
            sets |= {f"{part}:{value}": list(concepts) for value, concepts in table.items()}
        if self.genotype_measurements:
            sets["genotype"] = list(self.genotype_measurements)
        return sets


def _check_names(key: str, table: dict, valid: tuple[str, ...], every: bool = False) -> None:
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise ValueError(f"{key}: unknown name {', '.join(unknown)}; valid: {', '.join(valid)}")
    missing = [v for v in valid if v not in table]
    if every and missing:
        raise ValueError(f"{key}: no entry for {', '.join(missing)}; every one needs concepts")
    empty = [name for name, concepts in table.items() if isinstance(concepts, list)
             and not concepts]
    if empty:
        raise ValueError(f"{key}: empty concept set {', '.join(empty)}; list at least one "
                         "concept")


class StudyError(ValueError):
    """A study definition that cannot be read or is invalid."""


def load_study(path: str | Path) -> Study:
    """Read and validate a study definition file."""
    path = Path(path)
    raw = read_yaml(path, StudyError, "the study definition is missing; see docs/real-data.md")
    try:
        return Study.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
                             for e in exc.errors())
        raise StudyError(f"{path}: {problems}") from None
