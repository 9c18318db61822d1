"""The outcome: the responder flag derived from baseline and follow-up pain, and the relative
reduction in pain it thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd

_TIE = 1e-9  # a reduction of exactly ``threshold`` counts, despite float rounding


def relative_reduction(pain_baseline: pd.Series | np.ndarray,
                       pain_followup: pd.Series | np.ndarray) -> np.ndarray:
    """(baseline - followup) / baseline: the share of pain relieved (negative: worse)."""
    base = np.asarray(pain_baseline, dtype="float64")
    follow = np.asarray(pain_followup, dtype="float64")
    if (base <= 0).any():
        raise ValueError("pain_baseline must be > 0 to define response (validate_cohort "
                         "refuses rows with pain_baseline = 0)")
    return (base - follow) / base


def derive_response(pain_baseline: pd.Series | np.ndarray, pain_followup: pd.Series | np.ndarray,
                    threshold: float) -> pd.Series:
    """Responder flag: (baseline - followup) / baseline >= threshold (IMMPACT; Dworkin 2008)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    index = pain_baseline.index if isinstance(pain_baseline, pd.Series) else None
    return pd.Series(relative_reduction(pain_baseline, pain_followup) >= threshold - _TIE,
                     index=index, name="response")
