"""How far to trust each P(response): a calibration interval and an out-of-range flag.

Two things are learned at train time (:func:`precision_pain.models.profile.training_profile`,
stored in the bundle manifest's metadata) and used at predict time:

1. **Interval for P(response): inductive Venn-Abers** (Vovk & Petej 2014, "Venn-Abers
   predictors", UAI; Vovk et al. 2015, "Large-scale probabilistic predictors with
   and without guarantees of validity", NeurIPS). For each treatment, held-out response
   scores of the patients who received it are the calibration set: those of the
   validation patients by models that never saw them, or, for the default learner
   (refitted on train + validation), the out-of-fold scores of every train and validation
   patient, pooled over the folds as in cross-Venn-Abers (Vovk et al. 2015).
   For a new score ``s`` the predictor fits isotonic regression twice, once
   with ``(s, 0)`` and once with ``(s, 1)`` added, and reports the two fitted
   values at ``s`` as ``[p_response_low, p_response_high]``. One of the two is a
   perfectly calibrated probability under exchangeability, so the interval says
   both how well the model is calibrated near ``s`` and how much validation data
   there is near it (wide = sparse). The result depends only on where ``s`` falls
   among the calibration scores, so every position is computed once at train time
   and prediction is a binary search. Scores are put on a 0.001 grid first (a
   valid scoring function in its own right) so that the table stays small.
   A bundle of the change in pain (``prepare.outcome: nrs_change``) has a split-conformal
   table instead: a prediction interval for the patient's own change in pain,
   ``expected_nrs_change`` +/- the half-width at ``nrs_interval_level`` (Lei et al. 2018,
   JASA 113:1094-1111), clipped to what the NRS allows (follow-up pain in 0-10). The
   half-width is that of the patient's band of baseline pain (mild, moderate, severe): a
   table per band (Mondrian conformal prediction), since the change is bounded by the
   baseline and spreads with it.
2. **Training ranges**: per treatment, the minimum and maximum of every model
   feature over the patients the treatment's models were trained on, and whether
   the feature was ever missing. A patient beyond a range, with a category or
   flag value the treatment's patients never had, or missing where training never
   was, is flagged ``low_confidence`` with the reason.

Predict-time flags may also come from a propensity model (``bundle.propensity``,
when present): an eligible treatment that patients like this one rarely received
in the training cohort (propensity below ``min_propensity``) is flagged, because
the model learned little about them under that treatment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from precision_pain.data.features import FEATURES, describe
from precision_pain.models.profile import severity_band

if TYPE_CHECKING:
    from precision_pain.models.bundle import ModelBundle

_FLAG_NAMES = frozenset({"female", "smoker", "prior_spine_surgery", "prior_gi_ulcer",
                         "anticoagulant", "cyp2d6_inhibitor"})


@dataclass(frozen=True)
class ConfidenceSettings:
    """Thresholds for the ``low_confidence`` flag (values: params.yaml ``predict.*``)."""

    min_propensity: float
    max_interval_width: float
    calibration_tolerance: float
    min_plan_episodes: int = 20
    # Coverage of the change-in-pain prediction interval (a bundle of prepare.outcome:
    # nrs_change): at least this share of new patients' changes fall inside it.
    nrs_interval_level: float = 0.9


# --------------------------------------------------------------------------- predict time

def response_interval(table: Mapping[str, Any] | None, p: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Venn-Abers (low, high) for each P(response); NaN without a calibration table."""
    p = np.asarray(p, dtype=float)
    if not table:
        return np.full(p.shape, np.nan), np.full(p.shape, np.nan)
    cells = np.asarray(table["cells"], dtype=np.int64)
    k = np.rint(p / float(table["grid"])).astype(np.int64)
    j = np.searchsorted(cells, k, side="left")
    tie = (j < len(cells)) & (cells[np.minimum(j, len(cells) - 1)] == k)
    jt = np.minimum(j, len(cells) - 1)
    low = np.where(tie, np.asarray(table["tie_low"])[jt], np.asarray(table["gap_low"])[j])
    high = np.where(tie, np.asarray(table["tie_high"])[jt], np.asarray(table["gap_high"])[j])
    return low, high


def conformal_halfwidth(table: Mapping[str, Any] | None, level: float) -> float:
    """The half-width at the smallest tabulated level >= ``level`` (inf when the table has
    too few calibration patients for it; NaN without a table)."""
    if not table:
        return float("nan")
    levels = np.asarray(table["levels"], dtype=float)
    j = int(np.searchsorted(levels, level - 1e-9))
    if j >= len(levels):
        raise ValueError(f"nrs_interval_level {level:g} is above the bundle's highest "
                         f"tabulated level {levels[-1]:g}")
    width = table["halfwidth"][j]
    return float("inf") if width is None else float(width)


def conformal_halfwidths(table: Mapping[str, Any] | None, level: float,
                         baseline: np.ndarray) -> np.ndarray:
    """(n,) half-width for each patient: that of the patient's baseline severity band
    (``by_baseline``, Mondrian), or the treatment's table over every band where the band has
    too few calibration patients for ``level`` or the bundle predates the bands."""
    pooled = conformal_halfwidth(table, level)
    half = np.full(len(baseline), pooled)
    banded = (table or {}).get("by_baseline")
    if banded:
        band = severity_band(baseline, banded["edges"])
        for k, sub in enumerate(banded["tables"]):
            width = conformal_halfwidth(sub, level)
            if np.isfinite(width):
                half[band == k] = width
    return half


def nrs_change_intervals(bundle: ModelBundle, treatments: Sequence[str],
                         expected_change: np.ndarray, baseline: np.ndarray, level: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(n, T) split-conformal prediction interval of each patient's change in NRS pain
    (follow-up minus baseline) under each treatment, its width set by the patient's baseline
    severity band, clipped to [-baseline, 10 - baseline]; NaN where the bundle has no
    conformal table for the treatment."""
    tables = bundle.metadata.get("nrs_change_conformal", {})
    half = np.column_stack([conformal_halfwidths(tables.get(t), level, baseline)
                            for t in treatments]) if treatments else np.empty((len(baseline), 0))
    low, high = expected_change - half, expected_change + half
    floor, ceiling = -baseline[:, None], 10.0 - baseline[:, None]
    return np.clip(low, floor, ceiling), np.clip(high, floor, ceiling)


_OK, _BELOW, _ABOVE, _UNSEEN_LOW, _UNSEEN_HIGH, _MISSING = range(6)


def range_codes(values: np.ndarray, ranges: Mapping[str, list[Any]]) -> np.ndarray:
    """(n, F) int8: 0 inside the training range, else below / above (numeric), an unseen
    discrete value (0 where training always had 1, or 1 where it never did), unseen missing."""
    low = np.array([np.nan if v is None else v for v in ranges["min"]], dtype=float)
    high = np.array([np.nan if v is None else v for v in ranges["max"]], dtype=float)
    missing_seen = np.asarray(ranges["missing"], dtype=bool)
    discrete = np.array([f.category is not None or f.name in _FLAG_NAMES for f in FEATURES])
    one_hot = np.array([f.category is not None for f in FEATURES])
    with np.errstate(invalid="ignore"):
        below = (values < low) & ~one_hot  # an absent category is never news
        above = values > high
    codes = np.zeros(values.shape, dtype=np.int8)
    codes[below & ~discrete] = _BELOW
    codes[above & ~discrete] = _ABOVE
    codes[below & discrete] = _UNSEEN_LOW
    codes[above & discrete] = _UNSEEN_HIGH
    codes[np.isnan(values) & ~missing_seen] = _MISSING
    return codes


def range_patterns(codes: np.ndarray, ranges: Mapping[str, list[Any]], treatment: str
                   ) -> tuple[np.ndarray, list[str]]:
    """Per row, the index of its out-of-range pattern (-1 when inside every range), and the
    reason text of each pattern (written once per distinct pattern, not per row)."""
    ids = np.full(len(codes), -1, dtype=np.int64)
    flagged = np.flatnonzero(codes.any(axis=1))
    if len(flagged) == 0:
        return ids, []
    rows = np.ascontiguousarray(codes[flagged])
    ids[flagged], first = pd.factorize(rows.view(np.dtype((np.void, rows.shape[1]))).ravel())
    return ids, [_range_text(np.frombuffer(p, dtype=np.int8), ranges, treatment) for p in first]


def _range_text(codes: np.ndarray, ranges: Mapping[str, list[Any]], treatment: str) -> str:
    parts = []
    for j in np.flatnonzero(codes):
        feature = FEATURES[j]
        if codes[j] in (_BELOW, _ABOVE):
            side = "below" if codes[j] == _BELOW else "above"
            parts.append(f"{feature.label} {side} the training range "
                         f"({ranges['min'][j]:g}-{ranges['max'][j]:g})")
        elif codes[j] in (_UNSEEN_LOW, _UNSEEN_HIGH):
            value = 1.0 if codes[j] == _UNSEEN_HIGH else 0.0
            parts.append(f"{describe(feature.name, value)} not seen in training")
        else:
            parts.append(f"{feature.label} missing (never missing in training)")
    return f"outside what the {treatment} models saw: " + ", ".join(parts)


def propensity_matrix(propensity: Any, X: pd.DataFrame, treatments: tuple[str, ...]
                      ) -> np.ndarray | None:
    """(n, T) propensity of each treatment, or None when the bundle has no propensity model."""
    if propensity is None:
        return None
    columns = list(propensity.classes_)
    proba = np.asarray(propensity.predict_proba(X), dtype=float)
    out = np.zeros((len(X), len(treatments)))
    for k, name in enumerate(treatments):
        if name in columns:
            out[:, k] = proba[:, columns.index(name)]
    return out


def confidence_flags(pattern_ids: np.ndarray, pattern_texts: list[str],
                     conditions: list[tuple[np.ndarray, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(low_confidence, reason) from range patterns and (mask, reason) pairs; each distinct
    combination is written once."""
    key = pattern_ids + 1
    for mask, _ in conditions:
        key = key * 2 + mask
    inverse, distinct = pd.factorize(key)
    texts = []
    for packed in distinct:
        parts = []
        for _, reason in reversed(conditions):
            packed, bit = divmod(int(packed), 2)
            parts.append(reason if bit else "")
        parts.append(pattern_texts[packed - 1] if packed else "")
        texts.append("; ".join(filter(None, reversed(parts))))
    reason = np.array(texts, dtype=object)[inverse]
    return key != 0, reason


# --------------------------------------------------------------------------- per bundle

def response_intervals(bundle: ModelBundle, treatments: Sequence[str], p_response: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(n, T) Venn-Abers interval of every P(response) (NaN when the bundle has no calibration)."""
    tables = bundle.metadata.get("response_calibration", {})
    pairs = [response_interval(tables.get(t), p_response[:, k]) for k, t in enumerate(treatments)]
    return np.column_stack([p[0] for p in pairs]), np.column_stack([p[1] for p in pairs])


@dataclass(frozen=True)
class ConfidenceBasis:
    """What the flags of every treatment need of the patients alone: each treatment's
    out-of-range patterns (ids and texts, :func:`range_patterns`) and the propensity matrix
    (None without a propensity model). Computed once per chunk, it serves the single
    treatments' flags and the plans' (:func:`low_confidence`)."""

    treatments: tuple[str, ...]
    patterns: tuple[tuple[np.ndarray, list[str]], ...]
    propensity: np.ndarray | None


def confidence_basis(X: pd.DataFrame, bundle: ModelBundle, treatments: Sequence[str]
                     ) -> ConfidenceBasis:
    """The :class:`ConfidenceBasis` of the patients X for ``treatments``."""
    values = X.to_numpy(np.float32)
    ranges = bundle.metadata.get("feature_ranges", {})
    patterns = tuple(
        range_patterns(range_codes(values, ranges[t]), ranges[t], t) if t in ranges
        else (np.full(len(values), -1, dtype=np.int64), []) for t in treatments)
    return ConfidenceBasis(tuple(treatments), patterns,
                           propensity_matrix(bundle.propensity, bundle.model_input(X),
                                             tuple(treatments)))


def low_confidence(X: pd.DataFrame, bundle: ModelBundle, treatments: Sequence[str],
                   p_response: np.ndarray, eligible: np.ndarray,
                   interval: tuple[np.ndarray, np.ndarray], settings: ConfidenceSettings,
                   basis: ConfidenceBasis | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, T) low_confidence flags and reasons: training ranges, interval, propensity.
    ``basis``: :func:`confidence_basis` of the same patients and treatments, if computed
    already."""
    if basis is None or basis.treatments != tuple(treatments):
        basis = confidence_basis(X, bundle, treatments)
    low, high = interval
    pairs = []
    for k, (ids, texts) in enumerate(basis.patterns):
        conditions = interval_conditions(p_response[:, k], low[:, k], high[:, k], settings)
        if basis.propensity is not None:
            conditions.append((eligible[:, k]
                               & (basis.propensity[:, k] < settings.min_propensity),
                               f"rarely given to patients like this in training (propensity "
                               f"below {settings.min_propensity:g})"))
        pairs.append(confidence_flags(ids, texts, conditions))
    return np.column_stack([f for f, _ in pairs]), np.column_stack([r for _, r in pairs])


def interval_conditions(p: np.ndarray, low: np.ndarray, high: np.ndarray,
                        settings: ConfidenceSettings) -> list[tuple[np.ndarray, str]]:
    """(mask, reason) pairs from the Venn-Abers interval: too wide, or far from p_response."""
    tol = settings.calibration_tolerance
    return [(high - low > settings.max_interval_width,
             "wide response interval (few held-out patients near this prediction)"),
            ((p < low - tol) | (p > high + tol),
             f"P(response) more than {tol:g} outside its calibration interval (held-out "
             "patients who received it with similar predictions responded at another rate)")]
