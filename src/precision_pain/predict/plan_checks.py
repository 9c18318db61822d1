"""Guideline checks for treatment plans: component rules, interactions and in-plan phenoconversion.

A plan's action is the most severe of (a) the guideline action of each component
(:func:`precision_pain.predict.guidelines.check_guidelines`) and (b) the interaction rules
that fire on the plan (:data:`precision_pain.plans.PLAN_RULES`); its note joins theirs.

Phenoconversion inside a plan: a plan that contains a CYP2D6 inhibitor (duloxetine, moderate
on the FDA table) changes the effective CYP2D6 phenotype of the patient for the plan's
CYP2D6 substrates (tramadol, amitriptyline). The patient is re-annotated as if taking that
inhibitor (:func:`precision_pain.data.pgx.with_inhibitor_drugs`, the project's one
phenoconversion code: activity x0.5, the strongest inhibitor wins), and the CPIC rules of
the components are evaluated on that effective phenotype, so the action follows it: a
genotypic normal metabolizer (activity 2.0) on duloxetine + tramadol is an effective
intermediate metabolizer (1.0), and tramadol's CPIC note says so.
No model overrides these checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from precision_pain.data.pgx import CYP2D6_INHIBITORS, with_inhibitor_drugs
from precision_pain.plans import (
    Plan,
    fired_rules,
    parse_plan,
    plan_eligibility,
    plan_name,
    valid_plans,
)
from precision_pain.predict.guidelines import SEVERITY, GuidelineResult, check_guidelines

_D6 = "cyp2d6_effective_phenotype"


@dataclass(frozen=True)
class PlanChecks:
    """Per patient (rows) and plan (columns): action, note, dose guidance, effective CYP2D6."""

    plans: tuple[str, ...]
    action: np.ndarray  # (n, P) object: one of guidelines.ACTIONS
    note: np.ndarray  # (n, P) object: component and interaction notes, " | "-joined
    dose: np.ndarray  # (n, P) object: dose guidance of the components, " | "-joined
    cyp2d6_effective_phenotype: np.ndarray  # (n, P) object: after in-plan phenoconversion
    rules: tuple[tuple[str, ...], ...]  # per plan: the interaction rules that fire

    @property
    def avoid(self) -> np.ndarray:
        """(n, P) bool: a guideline says avoid a component, or an interaction does."""
        return self.action == "avoid"


def plan_inhibitors(plan: Plan) -> tuple[str, ...]:
    """The plan's components that are CYP2D6 inhibitors on the FDA table."""
    return tuple(t for t in plan if t in CYP2D6_INHIBITORS)


def check_plans(patients: pd.DataFrame, plans: Sequence[str]) -> PlanChecks:
    """Check every plan (a '+'-joined name) for every prepared patient."""
    parsed = [parse_plan(p) for p in plans]
    contexts = {plan_inhibitors(p) for p in parsed}
    results = {inh: _component_checks(patients, inh, parsed) for inh in sorted(contexts)}
    columns = [_plan_column(results[plan_inhibitors(p)], p) for p in parsed]
    n = len(patients)
    stack = [np.column_stack([c[i] for c in columns]) if columns else np.empty((n, 0), object)
             for i in range(4)]
    return PlanChecks(tuple(plan_name(p) for p in parsed), *stack,
                      rules=tuple(tuple(r.name for r in fired_rules(p)) for p in parsed))


_BY_SEVERITY = np.array(sorted(SEVERITY, key=SEVERITY.__getitem__), dtype=object)


@dataclass(frozen=True)
class _Context:
    """One inhibitor context's component checks, coded once for every plan that shares it:
    each component's action as a severity, its note and dose as factorized codes."""

    treatments: tuple[str, ...]
    severity: np.ndarray  # (n, T) int64
    notes: tuple[tuple[np.ndarray, np.ndarray], ...]  # per component: (codes, uniques)
    doses: tuple[tuple[np.ndarray, np.ndarray], ...]
    phenotype: np.ndarray  # (n,) object: the context's effective CYP2D6 phenotype


def _component_checks(patients: pd.DataFrame, inhibitors: tuple[str, ...],
                      parsed: Sequence[Plan]) -> _Context:
    """Guideline results of every component in one inhibitor context, and its CYP2D6 phenotype."""
    context = with_inhibitor_drugs(patients, inhibitors) if inhibitors else patients
    components = tuple(dict.fromkeys(t for p in parsed for t in p))
    result: GuidelineResult = check_guidelines(context, components)
    codes, uniques = pd.factorize(result.action.ravel())
    severity = np.array([SEVERITY[a] for a in uniques], dtype=np.int64)[codes]
    return _Context(result.treatments, severity.reshape(result.action.shape),
                    tuple(pd.factorize(c) for c in result.note.T),
                    tuple(pd.factorize(c) for c in result.dose.T),
                    context[_D6].astype(str).to_numpy(dtype=object))


def _plan_column(checked: _Context, plan: Plan
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Action, note, dose and effective phenotype of one plan for every patient."""
    idx = [checked.treatments.index(t) for t in plan]
    rules = fired_rules(plan)
    worst = max((SEVERITY[r.action] for r in rules), default=0)
    action = _BY_SEVERITY[np.maximum(checked.severity[:, idx].max(axis=1), worst)]
    return (action, _joined([checked.notes[i] for i in idx], tuple(r.note() for r in rules)),
            _joined([checked.doses[i] for i in idx], ()), checked.phenotype)


def _joined(columns: Sequence[tuple[np.ndarray, np.ndarray]], extra: tuple[str, ...]
            ) -> np.ndarray:
    """Row-wise ' | '-join of the non-empty cells of ``columns`` (each factorized: codes and
    uniques) and the ``extra`` texts, built once per distinct row (mixed-radix codes, as
    guidelines._combine does)."""
    n = len(columns[0][0]) if columns else 0
    key = np.zeros(n, dtype=np.int64)
    for codes, uniques in columns:
        key = key * max(len(uniques), 1) + codes
    inverse, distinct = pd.factorize(key)
    texts = []
    for packed in distinct:
        cells = []
        for _, uniques in reversed(columns):
            packed, digit = divmod(int(packed), max(len(uniques), 1))
            cells.append(str(uniques[digit]))
        texts.append(" | ".join([*(c for c in reversed(cells) if c), *extra]))
    return np.array(texts, dtype=object)[inverse]


def enumerate_plans(patients: pd.DataFrame, treatments: Sequence[str] | None = None
                    ) -> pd.DataFrame:
    """Every valid plan of each patient's condition, with the checks that fire (long table).

    One row per (patient, plan): ``row`` (position in ``patients``), ``patient_id`` when
    present, ``plan``, ``n_components``, ``action``, ``rules`` (interaction rules, ';'),
    ``note``, ``dose`` and ``cyp2d6_effective_phenotype`` (after in-plan phenoconversion).
    """
    plans = valid_plans(None, treatments)
    checks = check_plans(patients, [plan_name(p) for p in plans])
    rows, cols = np.nonzero(plan_eligibility(patients["condition"], plans))
    out = pd.DataFrame({"row": rows})
    if "patient_id" in patients.columns:
        out["patient_id"] = patients["patient_id"].to_numpy()[rows]
    return out.assign(
        plan=np.array(checks.plans, dtype=object)[cols],
        n_components=np.array([len(p) for p in plans], dtype=np.int64)[cols],
        action=checks.action[rows, cols], rules=np.array(
            [";".join(r) for r in checks.rules], dtype=object)[cols],
        note=checks.note[rows, cols], dose=checks.dose[rows, cols],
        cyp2d6_effective_phenotype=checks.cyp2d6_effective_phenotype[rows, cols])

