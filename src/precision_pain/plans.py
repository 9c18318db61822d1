"""Treatment plans: sets of compatible registry treatments, and the rules that combine them.

A plan is a set of components, each a registry treatment (:mod:`precision_pain.registry`),
written as their names joined by ``+`` in registry order (``duloxetine+physical_therapy``);
a single treatment is a one-component plan. Which sets are plans is decided by data:

* **Slots** (:data:`SLOTS`), by the registry's ``kind``: up to two drugs, one behavioural
  (active or psychological) therapy and one procedure, at most :data:`MAX_COMPONENTS` (3)
  components in all. Two drug slots, not one, because the interactions the field worries
  about are drug-drug ones (an SNRI or TCA with tramadol; a gabapentinoid with an opioid;
  duloxetine with pregabalin is a studied combination, COMBO-DN: Tesfaye et al., Pain
  2013;154:2616), and because a one-drug plan could never hold the CYP2D6 inhibitor and the
  substrate that phenoconversion inside a plan is about.
* **Compatibility and interaction rules** (:data:`PLAN_RULES`), each with its source. A rule
  whose action is ``exclude`` makes a set no plan (two opioids; two drugs of one class); any
  other action (``caution``, ``monitor``) keeps the plan and flags it with the rule's note,
  as the guideline rules of :mod:`precision_pain.predict.guidelines` flag single treatments.

The pharmacogenomic consequence of an in-plan CYP2D6 inhibitor (duloxetine, moderate on the
FDA table) is computed by :mod:`precision_pain.predict.plan_checks` with the project's one
phenoconversion code (:func:`precision_pain.data.pgx.annotate_pgx`); the rule here only
names the pair and the source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from types import MappingProxyType

import numpy as np
import pandas as pd

from precision_pain.data.pgx import CYP2D6_INHIBITORS
from precision_pain.registry import (
    CONDITIONS,
    TREATMENT_NAMES,
    TREATMENTS,
    Treatment,
    get_treatment,
)

SEPARATOR = "+"
# Components a plan may hold per registry ``kind``, and in all (issue 14: up to 3).
SLOTS: Mapping[str, int] = MappingProxyType({"drug": 2, "behavioural": 1, "procedure": 1})
MAX_COMPONENTS = 3
# A plan rule's action: ``exclude`` = not a plan; any other is a guideline action
# (precision_pain.predict.guidelines.ACTIONS) that keeps the plan, flagged.
EXCLUDE = "exclude"

Plan = tuple[str, ...]


@dataclass(frozen=True)
class PlanRule:
    """One compatibility or interaction rule, as data.

    With ``partners`` empty the rule fires when a plan holds more than ``limit`` of
    ``members``; otherwise when it holds at least one member and at least one partner.
    """

    name: str
    members: tuple[str, ...]
    action: str
    finding: str
    advice: str
    source: str
    partners: tuple[str, ...] = ()
    limit: int = 1

    def fires(self, plan: Iterable[str]) -> bool:
        """Whether the rule applies to the plan's components."""
        parts = set(plan)
        if self.partners:
            return bool(parts & set(self.members)) and bool(parts & set(self.partners))
        return len(parts & set(self.members)) > self.limit

    def note(self) -> str:
        """The sentence a report shows: '<finding>: <advice> (<source>)'."""
        return f"{self.finding}: {self.advice} ({self.source})"


TRAMADOL_LABEL = ("tramadol (Ultram) US prescribing information, warnings: serotonin syndrome "
                  "risk and risk of seizure with SSRIs, SNRIs and TCAs")
ULTRAM_CNS = ("tramadol (Ultram) US prescribing information, boxed warning: concomitant use "
              "with other CNS depressants, other opioids included; CDC 2022 opioid guideline "
              "(Dowell et al., MMWR Recomm Rep 2022;71(No. RR-3)), recommendation 4")
CYMBALTA_TCA = ("duloxetine (Cymbalta) US prescribing information, drug interactions: TCAs "
                "(CYP2D6 substrates; monitor TCA levels, the TCA dose may need reducing) and "
                "serotonin syndrome")
CYMBALTA_BLEEDING = ("duloxetine (Cymbalta) US prescribing information, warnings: abnormal "
                     "bleeding, raised with NSAIDs, aspirin or warfarin")
FDA_GABAPENTINOIDS = ("FDA Drug Safety Communication, 19 Dec 2019: serious breathing "
                      "difficulties with gabapentinoids taken with opioids; Gomes et al., PLoS "
                      "Med 2017;14:e1002396 (opioid-related death OR 1.49 with gabapentin)")
FDA_CYP2D6 = ("FDA Drug Development and Drug Interactions table, CYP2D6 clinical index "
              "inhibitors (duloxetine: moderate); activity x0.5 (Cicali et al., Clin Pharmacol "
              "Ther 2021;110:677); the CPIC action follows the effective phenotype (Crews 2021)")
DUPLICATE_CLASS = ("project rule, no primary source: a plan combines mechanisms; a second drug "
                   "of one class adds exposure, not a mechanism (therapeutic duplication)")


def _names(predicate: Callable[[Treatment], bool]) -> tuple[str, ...]:
    """Registry treatment names for which ``predicate`` holds, in registry order."""
    return tuple(t.name for t in TREATMENTS.values() if predicate(t))


def _class_rules() -> tuple[PlanRule, ...]:
    classes = dict.fromkeys(t.drug_class for t in TREATMENTS.values() if t.kind == "drug")
    return tuple(PlanRule(f"duplicate_class_{c}", _names(lambda t, c=c: t.drug_class == c),
                          EXCLUDE, f"two {c} drugs", "one drug per class in a plan",
                          DUPLICATE_CLASS) for c in classes)


def _build_rules() -> tuple[PlanRule, ...]:
    opioids = _names(lambda t: t.opioid)
    inhibitors = _names(lambda t: t.name in CYP2D6_INHIBITORS)
    substrates = _names(lambda t: "CYP2D6" in t.genes)
    return (
        PlanRule("two_opioids", opioids, EXCLUDE, "two opioids",
                 "one opioid per plan (additive respiratory depression and MME)", ULTRAM_CNS),
        *_class_rules(),
        PlanRule("serotonergic_tramadol_snri", ("tramadol",), "caution",
                 "tramadol with duloxetine (serotonergic)",
                 "serotonin syndrome and seizure risk; if combined, observe closely at the "
                 "start and at dose changes, stop if serotonin syndrome is suspected",
                 TRAMADOL_LABEL, partners=("duloxetine",)),
        PlanRule("serotonergic_tramadol_tca", ("tramadol",), "caution",
                 "tramadol with amitriptyline (serotonergic)",
                 "serotonin syndrome and seizure risk; if combined, observe closely at the "
                 "start and at dose changes, stop if serotonin syndrome is suspected",
                 TRAMADOL_LABEL, partners=("amitriptyline",)),
        PlanRule("snri_tca", ("duloxetine",), "caution",
                 "duloxetine with amitriptyline (serotonergic; CYP2D6 substrate)",
                 "monitor amitriptyline levels, its dose may need reducing; serotonin "
                 "syndrome risk", CYMBALTA_TCA, partners=("amitriptyline",)),
        PlanRule("gabapentinoid_opioid", _names(lambda t: t.drug_class == "gabapentinoid"),
                 "caution", "gabapentinoid with an opioid",
                 "respiratory depression risk; start low, monitor, offer naloxone",
                 FDA_GABAPENTINOIDS, partners=opioids),
        PlanRule("snri_nsaid_bleeding", ("duloxetine",), "caution",
                 "duloxetine with an NSAID", "bleeding risk; consider a proton-pump inhibitor",
                 CYMBALTA_BLEEDING, partners=_names(lambda t: t.nsaid)),
        PlanRule("cyp2d6_inhibitor_in_plan", inhibitors, "monitor",
                 "CYP2D6 inhibitor and CYP2D6 substrate in one plan (phenoconversion)",
                 "the substrate's CPIC action follows the effective CYP2D6 phenotype",
                 FDA_CYP2D6, partners=substrates),
    )


PLAN_RULES: tuple[PlanRule, ...] = _build_rules()


# ------------------------------------------------------------------------------ plan names

def plan_name(components: Iterable[str]) -> str:
    """The canonical name: components in registry order joined by '+'."""
    order = {name: i for i, name in enumerate(TREATMENT_NAMES)}
    return SEPARATOR.join(sorted(set(components), key=order.__getitem__))


def parse_plan(text: str) -> Plan:
    """Components of a plan name (any order, spaces allowed); unknown names list valid ones."""
    parts = [p.strip() for p in str(text).split(SEPARATOR) if p.strip()]
    if not parts:
        raise ValueError(f"empty plan {text!r}; write registry names joined by '+'")
    repeated = sorted({p for p in parts if parts.count(p) > 1})
    if repeated:
        raise ValueError(f"plan {text!r} repeats {', '.join(repeated)}")
    return tuple(get_treatment(p).name for p in _registry_order(parts))


def _registry_order(parts: Sequence[str]) -> list[str]:
    """Names in registry order (unknown ones last, so get_treatment names them)."""
    order = {name: i for i, name in enumerate(TREATMENT_NAMES)}
    return sorted(parts, key=lambda p: order.get(p, len(order)))


# ------------------------------------------------------------------------------ validity

def slot_problems(plan: Plan) -> list[str]:
    """Why the components do not fit the slots ([] when they do)."""
    problems = []
    if len(plan) > MAX_COMPONENTS:
        problems.append(f"{len(plan)} components (at most {MAX_COMPONENTS})")
    for kind, room in SLOTS.items():
        n = sum(TREATMENTS[t].kind == kind for t in plan)
        if n > room:
            problems.append(f"{n} {kind} components (at most {room})")
    return problems


def fired_rules(plan: Plan, rules: Sequence[PlanRule] = PLAN_RULES) -> tuple[PlanRule, ...]:
    """The rules that apply to a plan, in :data:`PLAN_RULES` order."""
    return tuple(r for r in rules if r.fires(plan))


def is_valid_plan(plan: Plan, condition: str | None = None,
                  rules: Sequence[PlanRule] = PLAN_RULES) -> bool:
    """Non-empty, fits the slots, no ``exclude`` rule fires, and (given a condition) every
    component is a usual option for it."""
    return (len(plan) > 0 and not slot_problems(plan)
            and not any(r.action == EXCLUDE for r in fired_rules(plan, rules))
            and (condition is None or all(TREATMENTS[t].eligible(condition) for t in plan)))


def valid_plans(condition: str | None = None, treatments: Sequence[str] | None = None,
                rules: Sequence[PlanRule] = PLAN_RULES) -> tuple[Plan, ...]:
    """Every valid plan over ``treatments`` (default: the registry), for ``condition`` if given.

    Ordered by number of components, then registry order: one-component plans first.
    """
    names = TREATMENT_NAMES if treatments is None else tuple(
        get_treatment(t).name for t in _registry_order(list(dict.fromkeys(treatments))))
    return tuple(plan for size in range(1, MAX_COMPONENTS + 1)
                 for plan in combinations(names, size) if is_valid_plan(plan, condition, rules))



def plan_eligibility(conditions: Iterable[str], plans: Sequence[Plan]) -> np.ndarray:
    """(n, P) bool: each plan is valid for each row's condition (see :func:`is_valid_plan`).

    A condition outside the registry's makes no plan eligible.
    """
    table = np.array([[is_valid_plan(p, c) for p in plans] for c in CONDITIONS],
                     dtype=bool).reshape(len(CONDITIONS), len(plans))
    codes = np.asarray(pd.Categorical(list(conditions), categories=CONDITIONS).codes)
    return np.where(codes[:, None] >= 0, table[codes], False)
