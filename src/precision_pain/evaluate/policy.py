"""Treatment policies and their value: from a ground truth, or off-policy from observed data.

A *policy* is an ``(n, k)`` matrix: row i gives the probability that patient i
gets each of the k treatments (one-hot for a deterministic recommender, a
distribution for usual care or a random choice). Everything below is a pure
function of such matrices, so every policy is valued by the same code.

With a ground truth (the synthetic cohort) a policy's value per patient is
``sum_t policy[i, t] * truth[i, t]``. Without one, :func:`ope_terms` gives the
per-patient terms of three off-policy estimators from the logged treatment
``T_i``, outcome ``Y_i``, outcome-model predictions ``mu[i, t]`` and propensities
``e[i, t] = P(T = t | x_i)``, with weight ``w_i = policy[i, T_i] / max(e[i, T_i], clip)``:

- direct method (DM): ``sum_t policy[i, t] * mu[i, t]``;
- inverse propensity weighting (IPW): ``w_i * Y_i`` (and its self-normalized form);
- doubly robust (AIPW): ``DM_i + w_i * (Y_i - mu[i, T_i])``, unbiased when either
  the outcome models or the propensities are right.

Expected trials until a first response (independent trials, tried in a given
order, ineligible options skipped) is ``sum_k prod_{j<k} (1 - p_j)`` over the
patient's options, and P(response within m trials) is ``1 - prod_{j<=m} (1 - p_j)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ZERO_REGRET = 1e-9  # regret below this counts as none (floating-point noise)


def wide(long: pd.DataFrame, column: str, ids: Sequence[str], treatments: Sequence[str]
         ) -> np.ndarray:
    """(len(ids), len(treatments)) matrix of ``column`` from a long (patient, treatment) table."""
    table = long.pivot_table(index="patient_id", columns="treatment", values=column,
                             aggfunc="first", observed=True)
    return table.reindex(index=list(ids), columns=list(treatments)).to_numpy(dtype=float)


def one_hot(choice: np.ndarray, k: int) -> np.ndarray:
    """Deterministic policy from column indices (-1 = no treatment: an all-zero row)."""
    choice = np.asarray(choice)
    out = np.zeros((len(choice), k))
    rows = np.flatnonzero(choice >= 0)
    out[rows, choice[rows]] = 1.0
    return out


def best_choice(value: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Per row, the column index of the highest value among eligible columns (-1 if none)."""
    masked = np.where(eligible, value, -np.inf)
    best = np.argmax(masked, axis=1)
    return np.where(eligible.any(axis=1), best, -1)


def best_single_treatment(value: np.ndarray, eligible: np.ndarray) -> int:
    """Column with the highest mean value among those eligible for every row (-1 if none)."""
    universal = eligible.all(axis=0)
    if not universal.any():
        return -1
    means = np.where(universal, np.nanmean(value, axis=0), -np.inf)
    return int(np.argmax(means))


def uniform_eligible(eligible: np.ndarray) -> np.ndarray:
    """A random eligible treatment, each with equal probability."""
    counts = eligible.sum(axis=1, keepdims=True)
    return np.divide(eligible.astype(float), counts, out=np.zeros(eligible.shape),
                     where=counts > 0)


def policy_value(policy: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Per-patient expected outcome under ``policy`` (zero-probability cells may be NaN)."""
    return np.where(policy > 0, policy * np.nan_to_num(outcome), 0.0).sum(axis=1)


def regret_summary(regret: np.ndarray) -> dict[str, float]:
    """Mean, median, 90th percentile and share with zero regret."""
    regret = np.asarray(regret, dtype=float)
    return {"mean": float(regret.mean()), "median": float(np.median(regret)),
            "p90": float(np.percentile(regret, 90)),
            "share_zero": float((regret <= ZERO_REGRET).mean())}


# ------------------------------------------------------------------------- trial and error
def list_ranks(order: Sequence[str], treatments: Sequence[str], n: int) -> np.ndarray:
    """(n, k) ranks of a fixed order for everyone; treatments not listed are never tried."""
    position = {name: i + 1 for i, name in enumerate(order)}
    row = np.array([position.get(t, np.inf) for t in treatments], dtype=float)
    return np.tile(row, (n, 1))


def survival_curve(p_response: np.ndarray, ranks: np.ndarray, eligible: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """S[:, m] = P(no response in the first m trials), m = 0..k, and the (n, k) tried mask."""
    tried = eligible & np.isfinite(ranks)
    order = np.argsort(np.where(tried, ranks, np.inf), axis=1, kind="stable")
    p = np.take_along_axis(np.where(tried, np.nan_to_num(p_response), 0.0), order, axis=1)
    tried_sorted = np.take_along_axis(tried, order, axis=1)
    ones = np.ones((len(p), 1))
    return np.hstack([ones, np.cumprod(1.0 - p, axis=1)]), tried_sorted


def expected_trials(p_response: np.ndarray, ranks: np.ndarray, eligible: np.ndarray
                    ) -> np.ndarray:
    """Expected number of trials until a first response, capped at the number of options."""
    survival, tried = survival_curve(p_response, ranks, eligible)
    return (survival[:, :-1] * tried).sum(axis=1)


def response_within(p_response: np.ndarray, ranks: np.ndarray, eligible: np.ndarray,
                    m: int) -> np.ndarray:
    """P(a response within the first ``m`` trials) per patient."""
    survival, _ = survival_curve(p_response, ranks, eligible)
    return 1.0 - survival[:, min(m, survival.shape[1] - 1)]


# ----------------------------------------------------------------------- off-policy value
@dataclass(frozen=True)
class Logged:
    """Observed decisions: treatment column index (-1 = not among the k), outcome, models."""

    treated: np.ndarray  # (n,) int
    outcome: np.ndarray  # (n,) float
    mu: np.ndarray  # (n, k) predicted outcome under each treatment
    propensity: np.ndarray  # (n, k) P(treatment | features)


def logged_propensity(logged: Logged) -> np.ndarray:
    """e(T_i | x_i) for the treatment each patient received (0 when outside the k)."""
    rows = np.arange(len(logged.treated))
    got = np.clip(logged.treated, 0, None)
    return np.where(logged.treated >= 0, logged.propensity[rows, got], 0.0)


def ope_terms(policy: np.ndarray, logged: Logged, clip: float) -> dict[str, np.ndarray]:
    """Per-patient terms: ``dm``, ``dr``, importance weight ``w`` and ``wy`` (= w * Y)."""
    rows = np.arange(len(logged.treated))
    got = np.clip(logged.treated, 0, None)
    received = logged.treated >= 0
    pi = np.where(received, policy[rows, got], 0.0)
    e = np.maximum(logged_propensity(logged), clip)
    w = np.where(pi > 0, pi / e, 0.0)
    mu_obs = np.where(received, logged.mu[rows, got], 0.0)
    dm = policy_value(policy, logged.mu)
    residual = np.where(w > 0, logged.outcome - mu_obs, 0.0)
    return {"dm": dm, "dr": dm + w * residual, "w": w, "wy": w * logged.outcome}


def ope_estimates(terms: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
    """DM, IPW (Horvitz-Thompson), self-normalized IPW and DR for each bootstrap weight row."""
    total = weights.sum(axis=1)
    # a bootstrap draw without any of these rows (a small subgroup) gives NaN, which
    # percentile_ci leaves out: no warning for it
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"dm": weights @ terms["dm"] / total, "ipw": weights @ terms["wy"] / total,
                "snipw": (weights @ terms["wy"]) / (weights @ terms["w"]),
                "dr": weights @ terms["dr"] / total}


def effective_sample_size(w: np.ndarray) -> float:
    """Kish's effective sample size of importance weights, (sum w)^2 / sum w^2."""
    w = np.asarray(w, dtype=float)
    denom = float(np.sum(w**2))
    return float(np.sum(w) ** 2 / denom) if denom > 0 else 0.0


def overlap_summary(logged: Logged, eligible: np.ndarray, treatments: Sequence[str],
                    clip: float) -> dict[str, object]:
    """Propensity distribution per treatment and the share of logged rows clipped at ``clip``."""
    e_obs = logged_propensity(logged)
    received = logged.treated >= 0
    per_treatment = {}
    for j, name in enumerate(treatments):
        e = logged.propensity[eligible[:, j], j]
        if e.size:
            q = np.percentile(e, [1, 5, 50, 95])
            per_treatment[name] = {"min": float(e.min()), "p01": float(q[0]), "p05": float(q[1]),
                                   "median": float(q[2]), "p95": float(q[3]),
                                   "share_below_clip": float((e < clip).mean()),
                                   "n_eligible": int(e.size)}
    return {"clip": clip, "n_logged": int(received.sum()),
            "share_logged_clipped": float((e_obs[received] < clip).mean()) if received.any()
            else float("nan"),
            "min_logged_propensity": float(e_obs[received].min()) if received.any()
            else float("nan"),
            "per_treatment": per_treatment}
