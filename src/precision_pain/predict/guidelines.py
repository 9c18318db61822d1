"""Guideline checks: CPIC pharmacogenomic actions and clinical contraindications, as data.

Every rule is one row of :data:`RULES`, keyed by a registry treatment name, with
the test it makes on the prepared patient columns, the action, the wording, and
the guideline, its version, the strength of the recommendation and the source.
Rules that share a ``check`` (e.g. tramadol's "CYP2D6") form one decision table:
the first matching rule of a check applies, like a row of a CPIC table. Across
checks the most severe action wins (:data:`ACTIONS`, most severe first).

Only ``avoid`` changes a ranking: :mod:`precision_pain.predict.recommend` moves an avoided
treatment below every allowed one. Every other action keeps the model's place
and adds its note. The model never overrides a guideline.

Sources (numbers and full references: docs/domain.md, section 3):

* CPIC 2021 opioids: Crews et al., Clin Pharmacol Ther 2021;110:888-896 (CYP2D6,
  OPRM1, COMT), codeine/tramadol recommendations by CYP2D6 phenotype.
* CPIC 2016 tricyclic antidepressants: Hicks et al., Clin Pharmacol Ther
  2017;102:37-44 (CYP2D6 and CYP2C19; amitriptyline as a tertiary amine).
* CPIC 2020 NSAIDs: Theken et al., Clin Pharmacol Ther 2020;108:191-200 (CYP2C9).
* KDIGO 2012 CKD guideline, chapter 4.4, cautionary notes on NSAIDs.
* ACG 2009: Lanza, Chan, Quigley, Am J Gastroenterol 2009;104:728-738, Table 1
  (GI-risk categories for NSAID users: high risk = prior complicated ulcer or more
  than two risk factors; moderate = age > 65, high dose, prior uncomplicated ulcer,
  aspirin/corticosteroid/anticoagulant use).
* CDC 2022 opioid guideline (replaces the 2016 one): Dowell et al., MMWR Recomm Rep
  2022;71(No. RR-3). Recommendation 2 (category A, evidence type 2): nonopioid
  therapies are preferred for subacute and chronic pain (the ranking's
  ``non_opioid_first``, :mod:`precision_pain.predict.recommend`); recommendation 4
  (A, 3): lowest effective dosage, caution at any dosage, avoid increases when possible
  (many patients gain nothing above 50 MME/day while risk keeps rising); recommendation
  8 (A, 4): offer naloxone when overdose risk is raised (history of overdose or
  substance use disorder, >= 50 MME/day, concurrent benzodiazepine); recommendation 11
  (B, 3): use particular caution with concurrent benzodiazepines. Dose-response: Dunn
  et al., Ann Intern Med 2010;152:85-92 (overdose HR 3.7 at 50-99 and 8.9 at >= 100
  MME/day). MME per day from the guideline's conversion table (tramadol 0.2,
  oxycodone 1.5): :data:`OPIOID_DOSES`.
* EULAR 2016 fibromyalgia recommendations: Macfarlane et al., Ann Rheum Dis
  2017;76:318-328: strong opioids "strong against" (tramadol: "weak for").
* Opioid Risk Tool: Webster & Webster, Pain Med 2005;6:432-442 (0-3 low, 4-7
  moderate, >= 8 high risk of misuse). A risk score, not a graded guideline.
* US prescribing information: pregabalin (Lyrica, renal dose adjustment by
  creatinine clearance) and duloxetine (Cymbalta, avoid at CrCl < 30). The cohort
  records eGFR, which stands in for creatinine clearance here; the notes say so.

CYP2D6 checks use the phenoconverted phenotype (``cyp2d6_effective_phenotype``)
and say when a CYP2D6 inhibitor, not the genotype, produced it. A phenotype that
is ``indeterminate`` says which check could not be made.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from precision_pain.data.contract.schema import measurement_columns
from precision_pain.data.features import PHENOTYPE_WORDS
from precision_pain.data.pgx import CPIC_TABLE_VERSION
from precision_pain.registry import TREATMENTS

# Most severe first. ``not_checked``: no action fired, but a check could not be made.
ACTIONS: tuple[str, ...] = ("avoid", "consider_alternative", "adjust_dose", "caution",
                            "monitor", "not_checked", "none")
SEVERITY: Mapping[str, int] = MappingProxyType(
    {action: len(ACTIONS) - 1 - i for i, action in enumerate(ACTIONS)})

_OPS: Mapping[str, Callable[[Any, Any], Any]] = MappingProxyType({
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq,
})

CPIC_OPIOIDS = ("CPIC guideline for CYP2D6, OPRM1 and COMT and opioid therapy "
                "(Crews et al., Clin Pharmacol Ther 2021;110:888), codeine/tramadol table")
CPIC_TCA = ("CPIC guideline for CYP2D6 and CYP2C19 and tricyclic antidepressants "
            "(Hicks et al., Clin Pharmacol Ther 2017;102:37), 2016 update, tables 2-3")
CPIC_NSAID = ("CPIC guideline for CYP2C9 and NSAIDs (Theken et al., Clin Pharmacol Ther "
              "2020;108:191), celecoxib/flurbiprofen/ibuprofen/lornoxicam table")
KDIGO = "KDIGO 2012 clinical practice guideline for CKD, chapter 4.4 (NSAIDs)"
ACG = ("ACG 2009 guideline for prevention of NSAID-related ulcer complications "
       "(Lanza et al., Am J Gastroenterol 2009;104:728), Table 1")
CDC = ("CDC clinical practice guideline for prescribing opioids for pain (Dowell et al., "
       "MMWR Recomm Rep 2022;71(No. RR-3)), recommendation 4; Dunn et al., Ann Intern Med "
       "2010;152:85")
CDC_NALOXONE = ("CDC 2022 opioid guideline (Dowell et al., MMWR Recomm Rep 2022;71(No. RR-3)), "
                "recommendation 8")
CDC_BENZO = ("CDC 2022 opioid guideline (Dowell et al., MMWR Recomm Rep 2022;71(No. RR-3)), "
             "recommendation 11")
EULAR = ("EULAR revised recommendations for the management of fibromyalgia (Macfarlane et "
         "al., Ann Rheum Dis 2017;76:318), strong opioids")
CPIC_NSAID_DOSE = ("CPIC NSAID guideline (Theken et al., Clin Pharmacol Ther 2020;108:191), "
                   "dosing recommendations by CYP2C9 phenotype")
ORT = "Opioid Risk Tool (Webster & Webster, Pain Med 2005;6:432)"
LYRICA = "pregabalin (Lyrica) US prescribing information, dosage in renal impairment"
CYMBALTA = "duloxetine (Cymbalta) US prescribing information, renal impairment"

TCA_LOW_DOSE = ("CPIC: applies to antidepressant starting doses; evidence is weaker at low "
                "analgesic doses")


@dataclass(frozen=True)
class Test:
    """One test on a prepared patient column: ``column op value``; missing values fail."""

    column: str
    op: str  # "in" (value: tuple of categories), "missing" (value unused) or one of _OPS
    value: Any

    def evaluate(self, patients: pd.DataFrame) -> np.ndarray:
        """Boolean mask, one entry per patient (an absent optional column: its default)."""
        if self.column not in patients.columns and self.column in OPTIONAL_DEFAULTS:
            one = pd.DataFrame({self.column: [OPTIONAL_DEFAULTS[self.column]]})
            return np.repeat(self.evaluate(one), len(patients))
        values = patients[self.column]
        if self.op == "missing":
            return values.isna().to_numpy()
        if self.op == "in":
            return values.astype(str).isin(self.value).to_numpy()
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            return np.asarray(_OPS[self.op](numbers, float(self.value)), dtype=bool)


@dataclass(frozen=True)
class Rule:
    """One guideline recommendation for one treatment, as data."""

    treatment: str
    check: str
    when: tuple[Test, ...]
    action: str
    finding: str
    advice: str
    guideline: str = ""
    strength: str = ""
    source: str = ""
    version: str = ""
    caveat: str = ""
    phenoconversion: bool = False  # say when a CYP2D6 inhibitor produced the phenotype
    dose: str = ""  # what to do with the dose, the guideline's wording summarised

    def note(self, converted_from: str | None = None) -> str:
        """The sentence a report shows, e.g. 'CYP2D6 ultrarapid metabolizer: tramadol, ...'.

        ``converted_from`` is '<genotype phenotype>|<inhibitor strength>' when a CYP2D6
        inhibitor, not the genotype, produced the phenotype.
        """
        finding = self.finding
        if converted_from is not None:
            genotype, _, strength = converted_from.partition("|")
            finding += (f" by phenoconversion (genotype: {PHENOTYPE_WORDS[genotype]}; "
                        f"{strength or 'strong'} CYP2D6 inhibitor; the CPIC action follows "
                        "the effective phenotype)")
        text = f"{finding}: {self.advice}"
        if self.guideline:
            text += f"; {self.guideline}, {self.strength}"
        return text + (f" ({self.caveat})" if self.caveat else "")

    def matches(self, patients: pd.DataFrame, cache: dict[Test, np.ndarray] | None = None
                ) -> np.ndarray:
        """Boolean mask of the patients this rule applies to (``cache`` shares test results)."""
        cache = {} if cache is None else cache
        mask = np.ones(len(patients), dtype=bool)
        for test in self.when:
            if test not in cache:
                cache[test] = test.evaluate(patients)
            mask &= cache[test]
        return mask


# ------------------------------------------------------------------------------ the rules

_D6 = "cyp2d6_effective_phenotype"
_D6_GENOTYPE = "cyp2d6_phenotype"
_C19 = "cyp2c19_phenotype"
_C9 = "cyp2c9_phenotype"
_V_OPIOID = "CPIC 2021 opioids; " + CPIC_TABLE_VERSION
_V_TCA = "CPIC 2016 TCAs; " + CPIC_TABLE_VERSION
_V_NSAID = "CPIC 2020 NSAIDs; " + CPIC_TABLE_VERSION


def _not_checked(treatment: str, gene: str, column: str) -> Rule:
    return Rule(treatment, gene, (Test(column, "in", ("indeterminate",)),), "not_checked",
                f"{gene} phenotype indeterminate", f"{treatment} check not made")


def _tramadol_cyp2d6() -> tuple[Rule, ...]:
    common = {"guideline": "CPIC", "source": CPIC_OPIOIDS, "version": _V_OPIOID,
              "phenoconversion": True}
    rows = (
        ("UM", "avoid", "ultrarapid", "tramadol, risk of toxicity", "strong"),
        ("PM", "avoid", "poor", "tramadol, little analgesia expected", "strong"),
        ("IM", "monitor", "intermediate",
         "tramadol at label dose; switch to a non-tramadol opioid if no response", "optional"),
    )
    rules = tuple(Rule("tramadol", "CYP2D6", (Test(_D6, "in", (ph,)),), action,
                       f"CYP2D6 {word} metabolizer", advice, strength=strength, **common)
                  for ph, action, word, advice, strength in rows)
    return rules + (_not_checked("tramadol", "CYP2D6", _D6),)


_TDM = "with therapeutic drug monitoring"


def _amitriptyline() -> tuple[Rule, ...]:
    common = {"guideline": "CPIC", "source": CPIC_TCA, "version": _V_TCA,
              "caveat": TCA_LOW_DOSE}
    d6 = (
        ("UM", "avoid", "ultrarapid", "amitriptyline, likely lack of efficacy; avoid, or "
         "titrate to a higher dose with drug monitoring if a TCA is warranted", "optional",
         f"if a TCA is warranted: titrate to a higher target dose {_TDM} (CPIC TCA 2016)"),
        ("PM", "avoid", "poor", "amitriptyline, risk of side effects; avoid, or start at "
         "50% of the usual dose if a TCA is warranted", "optional",
         f"if a TCA is warranted: 50% of the recommended starting dose, {_TDM} (CPIC TCA "
         "2016)"),
        ("IM", "adjust_dose", "intermediate",
         "amitriptyline, consider a 25% lower starting dose", "moderate",
         f"consider a 25% reduction of the recommended starting dose, {_TDM} (CPIC TCA "
         "2016)"),
    )
    c19 = (
        ("PM", "avoid", "poor", "amitriptyline, risk of side effects; avoid, or start at "
         "50% of the usual dose if warranted", "moderate",
         f"if a TCA is warranted: 50% of the recommended starting dose, {_TDM} (CPIC TCA "
         "2016)"),
        ("UM", "consider_alternative", "ultrarapid", "amitriptyline, possible sub-optimal "
         "response; consider a drug not metabolized by CYP2C19", "optional",
         f"if a TCA is warranted: adjust the dose {_TDM} (CPIC TCA 2016)"),
        ("RM", "consider_alternative", "rapid", "amitriptyline, possible sub-optimal "
         "response; consider a drug not metabolized by CYP2C19", "optional",
         f"if a TCA is warranted: adjust the dose {_TDM} (CPIC TCA 2016)"),
    )
    rules_d6 = tuple(Rule("amitriptyline", "CYP2D6", (Test(_D6, "in", (ph,)),), action,
                          f"CYP2D6 {word} metabolizer", advice, strength=strength,
                          phenoconversion=True, dose=dose, **common)
                     for ph, action, word, advice, strength, dose in d6)
    rules_c19 = tuple(Rule("amitriptyline", "CYP2C19", (Test(_C19, "in", (ph,)),), action,
                           f"CYP2C19 {word} metabolizer", advice, strength=strength, dose=dose,
                           **common)
                      for ph, action, word, advice, strength, dose in c19)
    return (rules_d6 + (_not_checked("amitriptyline", "CYP2D6", _D6),)
            + rules_c19 + (_not_checked("amitriptyline", "CYP2C19", _C19),))


# CPIC 2020 NSAID dosing by CYP2C9 activity score (Theken et al., Table 2), for the drugs the
# registry's "NSAID" stands for; the long half-life oxicams differ from the others.
NSAID_DOSE_PM = ("celecoxib, flurbiprofen, ibuprofen, lornoxicam: start at 25-50% of the "
                 "lowest recommended starting dose and titrate to effect or 25-50% of the "
                 "maximum dose, with caution; meloxicam, piroxicam, tenoxicam: choose an "
                 "alternative not metabolized by CYP2C9 (e.g. naproxen) (CPIC NSAID 2020)")
NSAID_DOSE_IM1 = ("celecoxib, flurbiprofen, ibuprofen, lornoxicam: start at the lowest "
                  "recommended starting dose and titrate to effect or the maximum dose, with "
                  "caution; meloxicam: start at 50% of the lowest starting dose, at most 50% "
                  "of the maximum dose; piroxicam, tenoxicam: choose an alternative not "
                  "metabolized by CYP2C9 (CPIC NSAID 2020)")


def _nsaid_rules(name: str) -> tuple[Rule, ...]:
    cpic = {"guideline": "CPIC", "source": CPIC_NSAID, "version": _V_NSAID}
    kdigo = {"guideline": "KDIGO 2012", "strength": "ungraded cautionary note",
             "source": KDIGO, "version": "KDIGO 2012"}
    acg = {"guideline": "ACG 2009", "source": ACG, "version": "ACG 2009"}
    score = "cyp2c9_activity_score"
    return (
        Rule(name, "CYP2C9", (Test(score, "<=", 0.5),), "adjust_dose",
             "CYP2C9 poor metabolizer (activity score 0-0.5)",
             "NSAID, start at 25-50% of the lowest dose and titrate, or choose one not "
             "metabolized by CYP2C9 (e.g. naproxen); avoid meloxicam and piroxicam",
             strength="moderate", dose=NSAID_DOSE_PM, **cpic),
        Rule(name, "CYP2C9", (Test(score, "==", 1.0),), "adjust_dose",
             "CYP2C9 intermediate metabolizer (activity score 1)",
             "NSAID, start at the lowest dose and titrate (meloxicam: 50%; piroxicam: "
             "alternative)", strength="moderate", dose=NSAID_DOSE_IM1, **cpic),
        _not_checked(name, "CYP2C9", _C9),
        Rule(name, "kidney", (Test("egfr", "<", 30),), "avoid",
             "eGFR below 30", "NSAID, risk of kidney injury", **kdigo),
        Rule(name, "kidney", (Test("egfr", "<", 60),), "caution",
             "eGFR 30-59", "NSAID, no prolonged use", **kdigo),
        Rule(name, "GI bleeding", (Test("prior_gi_ulcer", "==", 1),
                                   Test("anticoagulant", "==", 1)), "avoid",
             "high GI-bleed risk (prior ulcer and anticoagulant)",
             "NSAID, risk of ulcer bleeding", strength="high-risk category", **acg),
        Rule(name, "GI bleeding", (Test("prior_gi_ulcer", "==", 1),), "caution",
             "prior GI ulcer (moderate GI risk; high if the ulcer was complicated)",
             "NSAID only with a proton-pump inhibitor", strength="moderate-risk category",
             **acg),
        Rule(name, "GI bleeding", (Test("anticoagulant", "==", 1),), "caution",
             "anticoagulant use (moderate GI risk)", "NSAID only with a proton-pump "
             "inhibitor; bleeding risk", strength="moderate-risk category", **acg),
        Rule(name, "GI bleeding", (Test("age", ">", 65),), "caution",
             "age over 65 (moderate GI risk)", "NSAID only with a proton-pump inhibitor",
             strength="moderate-risk category", **acg),
    )


@dataclass(frozen=True)
class OpioidDose:
    """The dose an opioid treatment stands for, and its morphine milligram equivalents."""

    daily_mg: float
    mme_factor: float  # CDC 2022 conversion table
    regimen: str
    source: str

    @property
    def mme(self) -> float:
        """MME per day of the typical dose."""
        return self.daily_mg * self.mme_factor


# The contract records no dose, so each opioid treatment is taken at a documented typical
# starting dose (for flags only; never a prescription). MME factors: CDC 2022 guideline, Table
# (Dowell et al. 2022; tramadol 0.2, oxycodone 1.5).
OPIOID_DOSES: Mapping[str, OpioidDose] = MappingProxyType({
    "tramadol": OpioidDose(200.0, 0.2, "50 mg four times a day",
                           "tramadol (Ultram) US label: 50-100 mg every 4-6 hours when a "
                           "rapid onset is needed (its lowest, 50 mg every 6 hours); the slow "
                           "start (25 mg/day) titrates to the same 200 mg/day"),
    "oxycodone": OpioidDose(20.0, 1.5, "5 mg every 6 hours",
                            "oxycodone IR (Roxicodone) US label: 5-15 mg every 4-6 hours; the "
                            "lowest, 5 mg every 6 hours, as for an opioid-naive adult"),
})


def _opioid_rules(name: str) -> tuple[Rule, ...]:
    cdc = {"guideline": "CDC 2022", "strength": "recommendation 4, category A",
           "source": CDC, "version": "CDC 2022"}
    ort = {"guideline": "ORT (Webster 2005)", "strength": "risk score, not a graded guideline",
           "source": ORT, "version": "ORT 2005"}
    dose = OPIOID_DOSES[name]
    return (
        Rule(name, "opioid dose", (Test("baseline_mme", ">=", 90),), "avoid",
             "current opioid dose 90 MME/day or more",
             f"{name}, avoid increasing the dose; overdose risk (Dunn 2010: HR 8.9 at 100+ "
             "MME/day)", **cdc),
        Rule(name, "opioid dose", (Test("baseline_mme", ">=", 50 - dose.mme),), "caution",
             f"current opioid dose plus {name} at {dose.regimen} ({dose.mme:g} MME/day) "
             "reaches 50 MME/day or more",
             f"{name}, reassess benefit and overdose risk (Dunn 2010: HR 3.7 at 50-99); "
             "offer naloxone", **cdc),
        Rule(name, "opioid misuse", (Test("ort_score", ">=", 8),), "avoid",
             "high Opioid Risk Tool score (8 or more)", f"{name}, high risk of misuse", **ort),
        Rule(name, "opioid misuse", (Test("ort_score", ">=", 4),), "caution",
             "moderate Opioid Risk Tool score (4-7)",
             f"{name}, moderate risk of misuse; monitor", **ort),
        Rule(name, "benzodiazepine", (Test("benzodiazepine", "==", 1),), "caution",
             "takes a benzodiazepine", f"{name}, particular caution with concurrent "
             "benzodiazepines (respiratory depression); offer naloxone",
             guideline="CDC 2022", strength="recommendation 11, category B", source=CDC_BENZO,
             version="CDC 2022"),
    )


def _strong_opioid_fibromyalgia(name: str) -> tuple[Rule, ...]:
    return (Rule(name, "condition", (Test("condition", "in", ("fibromyalgia",)),), "avoid",
                 "fibromyalgia", f"{name}, strong opioids are not recommended",
                 guideline="EULAR 2016", strength="strong against", source=EULAR,
                 version="EULAR 2016 (Macfarlane 2017)"),)


def _renal_dosing() -> tuple[Rule, ...]:
    label = {"guideline": "US label", "strength": "prescribing information"}
    return (
        Rule("pregabalin", "kidney", (Test("egfr", "<", 30),), "adjust_dose",
             "eGFR below 30 (as creatinine clearance)",
             "pregabalin, a quarter of the usual daily dose or less", source=LYRICA,
             version="Lyrica label",
             dose="CrCl 15-29: 25-150 mg/day in 1-2 doses; below 15: 25-75 mg/day once "
                  "(Lyrica label)", **label),
        Rule("pregabalin", "kidney", (Test("egfr", "<", 60),), "adjust_dose",
             "eGFR 30-59 (as creatinine clearance)", "pregabalin, half the usual daily dose",
             source=LYRICA, version="Lyrica label",
             dose="CrCl 30-60: 75-300 mg/day in 2-3 doses, half the usual daily dose "
                  "(Lyrica label)", **label),
        Rule("duloxetine", "kidney", (Test("egfr", "<", 30),), "avoid",
             "eGFR below 30 (as creatinine clearance)", "duloxetine, avoid in severe renal "
             "impairment", source=CYMBALTA, version="Cymbalta label", **label),
    )


def _build_rules() -> tuple[Rule, ...]:
    nsaids = [t.name for t in TREATMENTS.values() if t.nsaid]
    opioids = [t.name for t in TREATMENTS.values() if t.opioid]
    strong = [t.name for t in TREATMENTS.values() if t.drug_class == "strong_opioid"]
    return (_tramadol_cyp2d6() + _amitriptyline()
            + tuple(r for name in nsaids for r in _nsaid_rules(name))
            + tuple(r for name in opioids for r in _opioid_rules(name))
            + tuple(r for name in strong for r in _strong_opioid_fibromyalgia(name))
            + _renal_dosing())


# A measurement the contract lets an extract leave empty (not recorded): what a check that
# needs it says instead of passing silently, as "<label> not recorded: <treatment> <check>
# check not made; <advice>". A rule testing another such column fails at import.
UNRECORDED: Mapping[str, tuple[str, str]] = MappingProxyType({
    "egfr": ("eGFR", "measure kidney function before prescribing"),
    "ort_score": ("Opioid Risk Tool score", "screen for opioid misuse risk before "
                  "prescribing"),
})


def _unrecorded_rules(rules: Sequence[Rule]) -> tuple[Rule, ...]:
    """One ``not_checked`` rule per (treatment, check, measurement that may be empty).

    Appended after every other rule, so within its check it fires only when no rule on the
    recorded values did (a comparison with a missing value is false).
    """
    measured = set(measurement_columns())
    seen: dict[tuple[str, str, str], Rule] = {}
    for rule in rules:
        for test in rule.when:
            if test.column in measured:
                seen.setdefault((rule.treatment, rule.check, test.column), rule)
    unknown = sorted({c for _, _, c in seen} - set(UNRECORDED))
    if unknown:
        raise ValueError(f"guideline rules test {', '.join(unknown)}, which the contract lets "
                         "an extract leave empty: add it to UNRECORDED")
    return tuple(
        Rule(treatment, check, (Test(col, "missing", None),), "not_checked",
             f"{UNRECORDED[col][0]} not recorded",
             f"{treatment} {check} check not made; {UNRECORDED[col][1]}",
             source=first.source, version=first.version)
        for (treatment, check, col), first in seen.items())


_CHECKED_RULES = _build_rules()
RULES: tuple[Rule, ...] = _CHECKED_RULES + _unrecorded_rules(_CHECKED_RULES)
# Optional contract columns a rule may test, and the value an absent column stands for.
OPTIONAL_DEFAULTS: Mapping[str, object] = MappingProxyType({
    "benzodiazepine": False, "overdose_history": False, "substance_use_disorder": False})
REQUIRED_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(
    [t.column for r in RULES for t in r.when if t.column not in OPTIONAL_DEFAULTS]
    + [_D6_GENOTYPE]))


def rules_for(treatment: str, rules: Sequence[Rule] = RULES) -> tuple[Rule, ...]:
    """The rules keyed by one registry treatment name, in priority order."""
    return tuple(r for r in rules if r.treatment == treatment)


# ------------------------------------------------------------------------------ evaluation

@dataclass(frozen=True)
class GuidelineResult:
    """Per patient (rows) and treatment (columns): action, note, and the avoid flag."""

    treatments: tuple[str, ...]
    action: np.ndarray  # (n, T) object: one of ACTIONS
    note: np.ndarray  # (n, T) object: notes joined with " | ", "" when none
    dose: np.ndarray | None = None  # (n, T) object: dose guidance of the fired rules, or ""

    @property
    def avoid(self) -> np.ndarray:
        """(n, T) bool: a guideline says avoid."""
        return self.action == "avoid"


def check_guidelines(patients: pd.DataFrame, treatments: Sequence[str],
                     rules: Sequence[Rule] = RULES) -> GuidelineResult:
    """Evaluate every rule for every patient and treatment (vectorized over patients)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in patients.columns]
    if missing:
        raise KeyError(f"guideline checks need prepared columns {', '.join(missing)}; "
                       "run the cohort through prepare_cohort first")
    masks: dict[Test, np.ndarray] = {}
    converted = _phenoconverted_from(patients)
    columns: list[tuple[np.ndarray, ...]] = []
    for treatment in treatments:
        chosen = _chosen_rules(patients, rules_for(treatment, rules), masks)
        columns.append(_combine(chosen, converted, len(patients)))
    shape = (len(patients), len(treatments))
    action, note, dose = (np.column_stack([c[i] for c in columns]) if columns
                          else np.empty(shape, object) for i in range(3))
    return GuidelineResult(tuple(treatments), action, note, dose)





def _phenoconverted_from(patients: pd.DataFrame) -> np.ndarray:
    """'<genotype phenotype>|<strength>' where an inhibitor changed the CYP2D6 phenotype, else ''.

    Strength: effective activity 0 = strong (x0), anything else = moderate (x0.5).
    """
    genotype = patients[_D6_GENOTYPE].astype(str).to_numpy()
    effective = patients[_D6].astype(str).to_numpy()
    if "cyp2d6_effective_activity" in patients.columns:
        activity = patients["cyp2d6_effective_activity"].to_numpy(dtype=float, na_value=np.nan)
        strength = np.where(activity == 0.0, "|strong", "|moderate")
    else:
        strength = np.full(len(patients), "|strong")
    return np.where(genotype != effective, np.char.add(genotype.astype(str), strength),
                    "").astype(object)


def _chosen_rules(patients: pd.DataFrame, rules: Sequence[Rule],
                  masks: dict[Test, np.ndarray]) -> list[tuple[list[Rule], np.ndarray]]:
    """Per check: its rules and, per patient, the index of the first matching rule (-1: none)."""
    checks: dict[str, list[Rule]] = {}
    for rule in rules:
        checks.setdefault(rule.check, []).append(rule)
    chosen = []
    for group in checks.values():
        conditions = [r.matches(patients, masks) for r in group]
        chosen.append((group, np.select(conditions, list(range(len(group))), default=-1)))
    return chosen


def _combine(chosen: list[tuple[list[Rule], np.ndarray]], converted: np.ndarray, n: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Most severe action, joined notes and dose guidance, once per distinct combination."""
    if not chosen:
        empty = np.full(n, "", dtype=object)  # read only: column_stack copies it
        return np.full(n, "none", dtype=object), empty, empty
    conv_codes, conv_values = pd.factorize(converted)
    columns = [index + 1 for _, index in chosen] + [conv_codes]
    bases = [len(group) + 1 for group, _ in chosen] + [len(conv_values)]
    key = np.zeros(n, dtype=np.int64)
    for column, base in zip(columns, bases):  # mixed-radix packing: one integer per row
        key = key * max(base, 1) + column
    inverse, distinct = pd.factorize(key)
    texts, acts, doses = [], [], []
    for packed in distinct:
        digits = []
        for base in reversed(bases):
            packed, digit = divmod(int(packed), max(base, 1))
            digits.append(digit)
        *rule_digits, conv = digits[::-1]
        fired = [group[d - 1] for (group, _), d in zip(chosen, rule_digits) if d > 0]
        from_ = conv_values[conv] if len(conv_values) and conv_values[conv] else None
        acts.append(max((r.action for r in fired), key=SEVERITY.__getitem__, default="none"))
        texts.append(" | ".join(r.note(from_ if r.phenoconversion else None) for r in fired))
        doses.append(" | ".join(_dose_text(r, from_) for r in fired if r.dose))
    return (np.array(acts, dtype=object)[inverse], np.array(texts, dtype=object)[inverse],
            np.array(doses, dtype=object)[inverse])


def _dose_text(rule: Rule, converted_from: str | None) -> str:
    """'<finding>: <dose>', naming phenoconversion when it produced the phenotype."""
    finding = rule.finding
    if rule.phenoconversion and converted_from is not None:
        finding += f" (by phenoconversion: {converted_from.partition('|')[2]} CYP2D6 inhibitor)"
    return f"{finding}: {rule.dose}"


# ------------------------------------------------------------------------------ stewardship

MME_CAUTION = 50.0  # CDC 2022 recommendation 4: the 50 MME/day caution
# Naloxone (CDC 2022 recommendation 8): (column, test, words); any one suffices with an opioid.
NALOXONE_CRITERIA: tuple[tuple[Test, str], ...] = (
    (Test("overdose_history", "==", 1), "history of overdose"),
    (Test("substance_use_disorder", "==", 1), "substance use disorder"),
    (Test("benzodiazepine", "==", 1), "concurrent benzodiazepine"),
)


def projected_mme(patients: pd.DataFrame, treatments: Sequence[str]) -> np.ndarray:
    """(n, T) MME/day: current dose plus the opioid's typical dose (NaN for non-opioids)."""
    current = patients["baseline_mme"].to_numpy(dtype=float, na_value=np.nan)
    extra = np.array([OPIOID_DOSES[t].mme if t in OPIOID_DOSES else np.nan
                      for t in treatments], dtype=float)
    return current[:, None] + extra[None, :]


def naloxone_codes(patients: pd.DataFrame, treatments: Sequence[str]) -> np.ndarray:
    """(n, T) bit pattern of the naloxone criteria met, for opioids only (0: none).

    Bit 0: current dose plus the typical dose >= 50 MME/day; bit i + 1: NALOXONE_CRITERIA[i].
    """
    opioid = np.array([t in OPIOID_DOSES for t in treatments], dtype=bool)
    with np.errstate(invalid="ignore"):
        codes = (projected_mme(patients, treatments) >= MME_CAUTION).astype(np.int64)
    for bit, (test, _) in enumerate(NALOXONE_CRITERIA, start=1):
        codes |= test.evaluate(patients).astype(np.int64)[:, None] << bit
    return np.where(opioid[None, :], codes, 0)


def naloxone_texts() -> np.ndarray:
    """The note for every naloxone bit pattern ('' for 0), indexed by the pattern."""
    words = ["50 MME/day or more (current dose plus the typical dose)",
             *(w for _, w in NALOXONE_CRITERIA)]
    texts = [""] + [
        "offer naloxone (" + "; ".join(w for i, w in enumerate(words) if code >> i & 1)
        + "); CDC 2022, recommendation 8" for code in range(1, 2 ** len(words))]
    return np.array(texts, dtype=object)


def naloxone(patients: pd.DataFrame, treatments: Sequence[str]
             ) -> tuple[np.ndarray, np.ndarray]:
    """(n, T) offer-naloxone flags and their reasons, for opioid treatments only."""
    codes = naloxone_codes(patients, treatments)
    return codes > 0, naloxone_texts()[codes]


def rules_table(rules: Sequence[Rule] = RULES) -> pd.DataFrame:
    """The rules as a table (one row per rule), for documentation and review."""
    return pd.DataFrame([{
        "treatment": r.treatment, "check": r.check,
        "when": " and ".join(f"{t.column} {t.op} {t.value}" for t in r.when),
        "action": r.action, "note": r.note(), "dose": r.dose, "source": r.source,
        "version": r.version,
    } for r in rules])


def non_opioid_demotion(eligible: np.ndarray, avoid: np.ndarray, excluded: np.ndarray,
                        treatments: Sequence[str]) -> np.ndarray:
    """(n, T) opioids to rank below the non-opioids: CDC 2022 recommendation 2.

    Nonopioid therapies are preferred for chronic pain, so an opioid goes below every
    non-opioid option when the patient has at least one that is eligible, not avoided by a
    guideline and not declined; otherwise (no such option) nothing moves.
    """
    opioid = np.array([TREATMENTS[t].opioid for t in treatments], dtype=bool)
    return opioid_demotion(eligible, avoid, excluded, opioid)


def opioid_demotion(eligible: np.ndarray, avoid: np.ndarray, excluded: np.ndarray,
                    opioid: np.ndarray) -> np.ndarray:
    """(n, K) options holding an opioid (``opioid``: (K,) bool) to rank below the others, for
    any options: treatments, or plans (an opioid in any component)."""
    usable = eligible & ~avoid & ~excluded & ~opioid[None, :]
    return usable.any(axis=1)[:, None] & opioid[None, :]


NON_OPIOID_NOTE = ("non-opioid options preferred (CDC 2022, recommendation 2, category A): "
                   "ranked below this patient's eligible non-opioid options")
