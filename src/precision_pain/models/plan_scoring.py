"""Every option of a patient scored in one pass over each tree of a pooled booster.

The plan learner (:mod:`precision_pain.models.plan_model`) is one booster over the plan
design: the patient's features, then columns that depend only on the plan and the patient's
condition (the components' one-hot and (condition, treatment) indicators, the number of
components). The single-treatment pooled learner (:mod:`precision_pain.models.pooled`) has
the same shape, with the treatment's one-hot and (condition, treatment) indicators: a
treatment is a plan of one component here. Scoring P plans (or treatments) of a patient the
usual way builds P design rows and walks every tree P times, though the patient's features
send all of them the same way at every split on a patient feature. Here each tree is walked
once per patient with the *set* of plans still on each branch, a bitset: a split on a patient
feature sends the whole set one way; a split on a plan column divides it by a mask computed
once per (condition, split) when the model is loaded; a leaf adds its value to the plans
that reach it, or to every plan at once when all of them do (a tree, or a branch, that never
looks at the plan). The sums are the boosters' margins: xgboost's float32 leaves and float32
comparisons, missing values to the default side, summed in float64 where xgboost sums in
float32 (differences of order 1e-6 on a thousand trees); tests/test_plan_scoring.py compares
them with xgboost's predictions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy.special import expit

from precision_pain.data.features import FEATURE_NAMES
from precision_pain.models.plan_model import plan_design
from precision_pain.models.treeshap import booster_trees, in_row_blocks
from precision_pain.registry import CONDITIONS

WORD = 64  # plans per bitset word


@dataclass(frozen=True)
class PlanScorer:
    """One booster's trees as arrays, and every plan split's mask per condition."""

    plans: tuple[str, ...]
    words: int
    logistic: bool                 # binary:logistic: probabilities are expit(margin)
    offset: float                  # margin = offset + sum of leaves
    node_feature: np.ndarray       # int32 (nodes,), global node numbers
    node_threshold: np.ndarray     # float32: left when value < threshold
    node_default_left: np.ndarray  # uint8
    node_left: np.ndarray          # int64: the left child (-1: a leaf)
    node_right: np.ndarray         # int64
    node_value: np.ndarray         # float32: a leaf's value
    node_mask: np.ndarray          # int64: the split's row in left_masks (-1: a patient split)
    tree_root: np.ndarray          # int64 (trees,)
    left_masks: np.ndarray         # uint64 (conditions + 1, plan splits, words)

    def margins(self, X: np.ndarray, condition: np.ndarray, eligible: np.ndarray,
                threads: int | None = 1) -> np.ndarray:
        """(n, P) margins of the eligible (patient, plan) pairs; NaN elsewhere. ``condition``
        is each row's condition code (its index in CONDITIONS; len(CONDITIONS) for none).
        ``threads``: how many threads share the rows; None follows
        :func:`.treeshap.kernel_threads` chunk by chunk (:func:`.treeshap.in_row_blocks`)."""
        from precision_pain.models.plan_kernels import score_plans

        X = np.ascontiguousarray(X, dtype=np.float32)
        eligible = np.asarray(eligible, dtype=bool)
        rows = _pack(eligible, self.words)
        out = np.zeros(eligible.shape, np.float64)
        args = (self.node_feature, self.node_threshold, self.node_default_left, self.node_left,
                self.node_right, self.node_value, self.node_mask, self.tree_root,
                self.left_masks)
        code = np.ascontiguousarray(condition, dtype=np.int64)
        in_row_blocks(lambda lo, hi: score_plans(X[lo:hi], code[lo:hi], rows[lo:hi],
                                                 out[lo:hi], *args), len(X), threads)
        return np.where(eligible, out + self.offset, np.nan)

    def predict(self, X: np.ndarray, condition: np.ndarray, eligible: np.ndarray,
                threads: int | None = 1) -> np.ndarray:
        """(n, P) predictions (probabilities for a classifier) of the eligible pairs."""
        margin = self.margins(X, condition, eligible, threads)
        return expit(margin) if self.logistic else margin


def _pack(matrix: np.ndarray, words: int) -> np.ndarray:
    """(n, P) bool -> (n, words) uint64 bitsets (bit p % 64 of word p // 64)."""
    n, p = matrix.shape
    padded = np.zeros((n, words * WORD), dtype=bool)
    padded[:, :p] = matrix
    bits = padded.reshape(n, words, WORD).astype(np.uint64)
    return (bits << np.arange(WORD, dtype=np.uint64)).sum(axis=2, dtype=np.uint64)


# A design: (patient features, one option name per row) -> (rows, features + option columns)
Design = Callable[[pd.DataFrame, np.ndarray], np.ndarray]


def build_scorer(booster: Any, plans: Sequence[str], treatments: Sequence[str],
                 objective_logistic: bool, design: Design | None = None) -> PlanScorer:
    """The scorer of ``booster`` for ``plans``: a plan learner's (``design`` None: the plan
    design over ``treatments``), or any booster over ``design``, whose columns after the
    patient features may depend only on the option and the patient's condition."""
    plans = tuple(plans)
    if design is None:
        def design(frame: pd.DataFrame, names: np.ndarray) -> np.ndarray:
            return plan_design(frame, names, treatments)
    words = max(1, -(-len(plans) // WORD))
    f = len(FEATURE_NAMES)
    # the option columns of every (condition, option): the design itself, on rows whose only
    # feature is the condition's one-hot
    n_codes = len(CONDITIONS) + 1
    frame = pd.DataFrame(np.zeros((n_codes * len(plans), f), np.float32),
                         columns=list(FEATURE_NAMES))
    for c, condition in enumerate(CONDITIONS):
        frame.loc[c * len(plans):(c + 1) * len(plans) - 1, f"condition={condition}"] = 1.0
    plan_part = np.asarray(design(frame, np.tile(np.asarray(plans, dtype=object), n_codes)),
                           np.float32)[:, f:].reshape(n_codes, len(plans), -1)
    feature, threshold, default_left, left, right, value, mask_row, roots = ([] for _ in range(8))
    masks: list[np.ndarray] = []
    start = 0
    for tree in booster_trees(booster):
        lc = np.asarray(tree["left_children"], np.int64)
        rc = np.asarray(tree["right_children"], np.int64)
        split = np.asarray(tree["split_indices"], np.int32)
        cond = np.asarray(tree["split_conditions"], np.float32)
        roots.append(start)
        for node in range(len(lc)):
            leaf = lc[node] == -1
            feature.append(split[node])
            threshold.append(cond[node])
            default_left.append(tree["default_left"][node])
            left.append(-1 if leaf else start + lc[node])
            right.append(-1 if leaf else start + rc[node])
            value.append(cond[node] if leaf else 0.0)
            if not leaf and split[node] >= f:
                goes_left = plan_part[:, :, split[node] - f] < cond[node]  # (codes, P)
                masks.append(_pack(goes_left, words))
                mask_row.append(len(masks) - 1)
            else:
                mask_row.append(-1)
        start += len(lc)
    left_masks = (np.stack(masks, axis=1) if masks
                  else np.zeros((n_codes, 0, words), np.uint64))
    scorer = PlanScorer(
        plans, words, objective_logistic, 0.0, np.asarray(feature, np.int32),
        np.asarray(threshold, np.float32), np.asarray(default_left, np.uint8),
        np.asarray(left, np.int64), np.asarray(right, np.int64),
        np.asarray(value, np.float32), np.asarray(mask_row, np.int64),
        np.asarray(roots, np.int64), np.ascontiguousarray(left_masks))
    return _with_offset(scorer, booster, plan_part)


def _with_offset(scorer: PlanScorer, booster: Any, plan_part: np.ndarray) -> PlanScorer:
    """The base margin, measured: xgboost's margin of one design row minus the leaves' sum."""
    f = len(FEATURE_NAMES)
    row = np.concatenate([np.zeros(f, np.float32), plan_part[-1, 0]])[None, :]
    margin = float(booster.inplace_predict(row.astype(np.float32), validate_features=False,
                                           predict_type="margin")[0])
    eligible = np.zeros((1, len(scorer.plans)), bool)
    eligible[0, 0] = True
    leaves = scorer.margins(np.zeros((1, f), np.float32), np.array([len(CONDITIONS)]),
                            eligible)[0, 0]
    return PlanScorer(**{**scorer.__dict__, "offset": margin - float(leaves)})


_LOCK = threading.Lock()


def cached_scorer(model: Any, plans: Sequence[str], treatments: Sequence[str]) -> PlanScorer:
    """The scorer of a plan model for ``plans``, built once per model and plan list."""
    return booster_scorer(model, model.booster_, plans, treatments)


def booster_scorer(owner: Any, booster: Any, options: Sequence[str], treatments: Sequence[str],
                   design: Design | None = None, role: str = "booster") -> PlanScorer:
    """The scorer of ``booster`` for ``options`` (:func:`build_scorer`), built once and kept
    on ``owner`` (the model that holds the booster) per ``role`` (which of the owner's
    boosters: "booster", "companion") and option list."""
    key = (role, tuple(options))
    with _LOCK:
        cache = owner.__dict__.setdefault("_plan_scorers", {})
        if key not in cache:
            cache[key] = build_scorer(booster, key[1], treatments, _logistic(booster), design)
        return cache[key]


def _logistic(booster: Any) -> bool:
    import json

    config = json.loads(booster.save_config())
    return config["learner"]["objective"]["name"] == "binary:logistic"
