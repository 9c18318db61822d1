"""What the response model predicts: the responder flag (the default) or the change in pain.

``prepare.outcome`` in params.yaml chooses, once for the whole pipeline:

- ``responder`` (default): the IMMPACT responder flag, a relative reduction in pain of at
  least ``prepare.response_threshold`` (Dworkin et al., J Pain 2008;9:105-21). Response
  models are classifiers; net benefit = P(response) - harm_weight * P(adverse event).
- ``nrs_change``: the change in pain on the 0-10 numeric rating scale, follow-up minus
  baseline (lower is better). Response models are regressors of the *reduction*,
  baseline - follow-up, in NRS points (higher is better, so every ranking and policy value
  keeps one direction); outputs report the change itself, ``expected_nrs_change``.
  Net benefit, in NRS points = expected reduction - harm_weight * adverse_event_nrs_points *
  P(adverse event): at harm weight 1 a serious adverse event costs
  ``adverse_event_nrs_points`` points of relief (default 2, the minimal clinically
  important difference of the NRS in chronic pain: Farrar et al., Pain 2001;94:149-58), so
  the two modes weigh harm alike when a responder gains about two points.

The adverse-event model is a classifier in both modes. A bundle records its outcome in its
metadata (:meth:`OutcomeSpec.from_metadata`), so evaluate and predict read it from the model,
never from the current params.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from precision_pain.data.contract import relative_reduction

OUTCOME_TYPES: tuple[str, ...] = ("responder", "nrs_change")
RESPONDER, NRS_CHANGE = OUTCOME_TYPES


@dataclass(frozen=True)
class OutcomeSpec:
    """The response outcome and how an adverse event is weighed against it."""

    type: str = RESPONDER
    adverse_event_nrs_points: float = 2.0

    def __post_init__(self) -> None:
        """Refuse an unknown type or a non-positive cost."""
        if self.type not in OUTCOME_TYPES:
            raise ValueError(f"outcome type {self.type!r}; valid: {', '.join(OUTCOME_TYPES)}")
        if not self.adverse_event_nrs_points > 0:
            raise ValueError("adverse_event_nrs_points must be > 0")

    @property
    def continuous(self) -> bool:
        """Whether the response model is a regressor (``nrs_change``)."""
        return self.type == NRS_CHANGE

    @property
    def harm_scale(self) -> float:
        """What one unit of harm weight times P(adverse event) costs, in the response's units:
        1 (responders) or ``adverse_event_nrs_points`` (NRS points)."""
        return self.adverse_event_nrs_points if self.continuous else 1.0

    @property
    def unit(self) -> str:
        """The response value's unit, as reports print it."""
        return "NRS points" if self.continuous else "probability"

    def values(self, frame: pd.DataFrame, outcome: str) -> np.ndarray:
        """The observed value of ``outcome`` per row: the adverse-event flag; for the response,
        the responder flag or the reduction in pain in NRS points (baseline - follow-up)."""
        if outcome == "response" and self.continuous:
            return pain_reduction_points(frame)
        return frame[outcome].to_numpy(float)

    def truth_response(self, truth: pd.DataFrame) -> pd.Series:
        """The true expected response value per truth row: ``p_response``, or the expected
        reduction in points, minus the truth's ``expected_nrs_change``."""
        if not self.continuous:
            return truth["p_response"]
        if "expected_nrs_change" not in truth.columns:
            raise ValueError(
                "the ground truth has no expected_nrs_change column, which prepare.outcome: "
                "nrs_change needs to score policies against the truth. Fix: regenerate the "
                "synthetic cohort (`dvc repro simulate`), add the column to your truth file "
                "(docs/data-contract.md), or set data.ground_truth: null")
        return -truth["expected_nrs_change"]

    def to_metadata(self) -> dict[str, Any]:
        """What a bundle stores."""
        return asdict(self)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> OutcomeSpec:
        """A bundle's outcome; bundles from before the setting existed are ``responder``."""
        stored = metadata.get("outcome")
        return cls(**stored) if isinstance(stored, Mapping) else cls()


def pain_reduction_points(frame: pd.DataFrame) -> np.ndarray:
    """baseline - follow-up on the NRS (positive = relief)."""
    relative = relative_reduction(frame["pain_baseline"], frame["pain_followup"])
    return relative * frame["pain_baseline"].to_numpy(float)


def outcome_from_params(params: Any) -> OutcomeSpec:
    """The outcome chosen in params.yaml (``prepare.outcome``,
    ``evaluate.adverse_event_nrs_points``)."""
    return OutcomeSpec(params.prepare.outcome, params.evaluate.adverse_event_nrs_points)
