"""Treatment registry: the treatments the project models, as data.

Every stage loops over this registry; no module holds per-treatment code.
Eligibility by condition reflects usual indications (e.g. NSAIDs are not used
for neuropathic pain or fibromyalgia; epidural steroids target radicular pain;
spinal cord stimulation is indicated after failed back surgery, for refractory
radicular/neuropathic pain and painful diabetic neuropathy). Guideline actions
(CPIC) live in :mod:`precision_pain.predict.guidelines`, keyed by ``Treatment.name``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

CONDITIONS: tuple[str, ...] = (
    "chronic_low_back_pain",
    "lumbar_radiculopathy",
    "failed_back_surgery",
    "fibromyalgia",
    "diabetic_neuropathy",
    "knee_osteoarthritis",
)

# What the models predict for each treatment: one binary model per outcome.
OUTCOMES: tuple[str, ...] = ("response", "adverse_event")
_BACK = ("chronic_low_back_pain", "lumbar_radiculopathy", "failed_back_surgery")


@dataclass(frozen=True)
class Treatment:
    """One treatment option and the facts the pipeline needs about it."""

    name: str
    label: str
    drug_class: str
    kind: str  # "drug", "procedure" or "behavioural"
    genes: tuple[str, ...]
    eligible_conditions: tuple[str, ...]
    opioid: bool = False
    nsaid: bool = False

    def eligible(self, condition: str) -> bool:
        """Whether the treatment is a usual option for ``condition``."""
        return condition in self.eligible_conditions


_TREATMENTS: tuple[Treatment, ...] = (
    Treatment("nsaid", "NSAID (e.g. ibuprofen, celecoxib)", "nsaid", "drug",
              ("CYP2C9",), _BACK + ("knee_osteoarthritis",), nsaid=True),
    Treatment("tramadol", "tramadol", "weak_opioid", "drug",
              ("CYP2D6", "OPRM1_rs1799971", "COMT_rs4680"), CONDITIONS, opioid=True),
    Treatment("oxycodone", "oxycodone", "strong_opioid", "drug",
              ("OPRM1_rs1799971", "COMT_rs4680"),
              tuple(c for c in CONDITIONS if c != "fibromyalgia"), opioid=True),
    Treatment("duloxetine", "duloxetine", "snri", "drug", (), CONDITIONS),
    Treatment("amitriptyline", "amitriptyline", "tca", "drug", ("CYP2D6", "CYP2C19"),
              tuple(c for c in CONDITIONS if c != "knee_osteoarthritis")),
    Treatment("pregabalin", "pregabalin", "gabapentinoid", "drug", (),
              ("lumbar_radiculopathy", "failed_back_surgery", "fibromyalgia",
               "diabetic_neuropathy")),
    Treatment("physical_therapy", "physical therapy / exercise", "exercise", "behavioural",
              (), CONDITIONS),
    Treatment("cbt", "cognitive behavioural therapy", "psychological", "behavioural",
              (), CONDITIONS),
    Treatment("spinal_cord_stimulation", "spinal cord stimulation", "neuromodulation",
              "procedure", (), _BACK + ("diabetic_neuropathy",)),
    Treatment("epidural_steroid", "epidural steroid injection", "interventional", "procedure",
              (), _BACK),
    # EEG neurofeedback: used in fibromyalgia (small RCTs, e.g. Kayiran 2010; evidence of low
    # to very low quality, Patel 2020: docs/domain.md). The synthetic cohort includes it
    # only when simulate.optional_treatments names it.
    Treatment("neurofeedback", "EEG neurofeedback", "neurofeedback", "behavioural", (),
              ("fibromyalgia",)),
)

TREATMENTS: Mapping[str, Treatment] = MappingProxyType({t.name: t for t in _TREATMENTS})
TREATMENT_NAMES: tuple[str, ...] = tuple(TREATMENTS)


def _modalities() -> Mapping[str, tuple[str, ...]]:
    """Every name a patient may exclude -> the treatments it covers: a kind ("drug",
    "procedure", "behavioural"), "opioid", a drug class, or a treatment name."""
    groups: dict[str, list[str]] = {}
    for t in _TREATMENTS:
        for key in (t.kind, *(("opioid",) if t.opioid else ()), t.drug_class, t.name):
            groups.setdefault(key, []).append(t.name)
    return MappingProxyType({k: tuple(dict.fromkeys(v)) for k, v in groups.items()})


MODALITIES: Mapping[str, tuple[str, ...]] = _modalities()


def excluded_treatments(modalities: str, treatments: Sequence[str]) -> np.ndarray:
    """(T,) bool: each treatment falls under one of the ';'-separated ``modalities``."""
    names = [m.strip().lower() for m in str(modalities).split(";") if m.strip()]
    unknown = [m for m in names if m not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modality {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(MODALITIES)}")
    covered = {t for m in names for t in MODALITIES[m]}
    return np.array([t in covered for t in treatments], dtype=bool)


class UnknownTreatmentError(ValueError):
    """A treatment name that is not in the registry."""


def get_treatment(name: str) -> Treatment:
    """Look a treatment up by name; unknown names list the valid ones."""
    try:
        return TREATMENTS[name]
    except KeyError:
        raise UnknownTreatmentError(
            f"unknown treatment {name!r}; valid treatments: {', '.join(TREATMENT_NAMES)}"
        ) from None


def select_treatments(names: Iterable[str] | None) -> tuple[Treatment, ...]:
    """Registry entries for ``names`` (all when ``None``), in registry order."""
    if names is None:
        return tuple(TREATMENTS.values())
    wanted = [get_treatment(n).name for n in names]
    return tuple(t for t in TREATMENTS.values() if t.name in wanted)


def eligibility(conditions: Iterable[str], treatments: Sequence[str]) -> np.ndarray:
    """(n, T) bool: each treatment is a usual option for each row's condition.

    Unknown treatment names are an error listing the valid ones; a condition outside
    :data:`CONDITIONS` makes no treatment eligible.
    """
    chosen = [get_treatment(str(t)) for t in treatments]
    uniques, codes = np.unique(np.asarray(list(conditions), dtype=str), return_inverse=True)
    table = np.array([[t.eligible(c) for t in chosen] for c in uniques],
                     dtype=bool).reshape(len(uniques), len(chosen))
    return table[codes.reshape(-1)]
